#!/usr/bin/env bash
# Install or upgrade sentinel from this checkout on a Debian server, as root.
#
#   deploy/install.sh              install into / and start it under systemd
#   deploy/install.sh --upgrade    upgrade an installed sentinel to this checkout:
#                                  new package, unit files and rule pack (the old
#                                  pack kept as a backup, the difference shown),
#                                  config and secrets kept, `sentinel check`
#                                  before the restart (a failing check restores
#                                  the old pack and restarts nothing)
#   deploy/install.sh --root DIR   stage the unit, users, dirs and config under
#                                  DIR (image builds, tests); no venv, no systemctl;
#                                  the check uses $SENTINEL_BIN when set
#   deploy/install.sh --venv DIR   put the venv at DIR (default /opt/sentinel);
#                                  with --root, build it there too
#
# From an offline bundle (deploy/bundle.sh), the venv is installed from the
# bundle's wheels/ with pip --no-index --require-hashes: no network is used.
#
# What it does (deploy/README.md explains each step):
#   1. a venv at /opt/sentinel with sentinel installed from this checkout
#   2. the unit, sysusers and tmpfiles files under /etc/systemd, /etc/sysusers.d,
#      /etc/tmpfiles.d; then systemd-sysusers and systemd-tmpfiles --create
#   3. /etc/sentinel/config.yaml and /etc/sentinel/rules/ from the examples,
#      and an empty /etc/sentinel/secrets.env, only where absent: an existing
#      config, rule set or secrets file is never overwritten (--upgrade
#      replaces the rule pack, never the config or the secrets)
#   4. with systemd as PID 1: daemon-reload, `sentinel check`, and when the
#      config is valid, enable --now (--upgrade: restart); otherwise how to run
#      it in the foreground
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT=/
VENV=""
UPGRADE=0

usage() {
  # the comment block at the top of this file, up to its first command
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --root=*) ROOT="${1#--root=}"; shift ;;
    --venv) VENV="${2:?--venv needs a directory}"; shift 2 ;;
    --upgrade) UPGRADE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument '$1'; valid: --upgrade, --root DIR, --venv DIR," \
         "--help" >&2
       exit 2 ;;
  esac
done

if [[ $EUID -ne 0 ]]; then
  echo "install.sh: run as root (it creates a system user and root-owned files)" >&2
  exit 2
fi
ROOT="$(realpath -m "$ROOT")"
R="${ROOT%/}"   # prefix for paths: "" for /
say() { printf '==> %s\n' "$*"; }

# 1. the venv, the man page and the shell completion ----------------------------
if [[ -z "$R" || -n "$VENV" ]]; then
  VENV="${VENV:-/opt/sentinel}"
  python3 -m venv "$VENV"
  if [[ -d "$SRC/wheels" ]]; then
    say "venv $VENV from the bundle's wheels (offline, every hash checked)"
    "$VENV/bin/pip" install --quiet --no-index --find-links "$SRC/wheels" \
      --require-hashes -r "$SRC/requirements.txt"
  else
    say "venv $VENV from $SRC"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet --upgrade "$SRC"
  fi
  say "man page sentinel(1) and bash completion"
  mkdir -p "$R/usr/local/share/man/man1" "$R/usr/share/bash-completion/completions"
  "$VENV/bin/python" -m sentinel.docgen man > "$R/usr/local/share/man/man1/sentinel.1"
  "$VENV/bin/python" -m sentinel.docgen bash > "$R/usr/share/bash-completion/completions/sentinel"
else
  say "--root: skipping the venv (its scripts would name $R/opt/sentinel; --venv DIR builds one)"
fi

# 2. unit, user, directories ---------------------------------------------------
say "unit, sysusers and tmpfiles under $ROOT"
install -D -m 0644 "$SRC/deploy/systemd/sentinel.service" "$R/etc/systemd/system/sentinel.service"
install -D -m 0644 "$SRC/deploy/systemd/sentinel.sysusers" "$R/etc/sysusers.d/sentinel.conf"
install -D -m 0644 "$SRC/deploy/systemd/sentinel.tmpfiles" "$R/etc/tmpfiles.d/sentinel.conf"
mkdir -p "$R/etc"
systemd-sysusers --root="$ROOT" sentinel.conf
systemd-tmpfiles --root="$ROOT" --create sentinel.conf
GID="$(awk -F: '$1 == "sentinel" {print $3}' "$R/etc/group")"
if [[ -z "$GID" ]]; then
  echo "install.sh: systemd-sysusers did not create the group 'sentinel'" >&2
  exit 1
fi

# 3. config, rules, secrets: only where absent ----------------------------------
if [[ -e "$R/etc/sentinel/config.yaml" ]]; then
  say "keeping the existing /etc/sentinel/config.yaml"
else
  say "config /etc/sentinel/config.yaml from config.example.yaml: edit the EDIT lines"
  install -m 0640 -o 0 -g "$GID" "$SRC/config.example.yaml" "$R/etc/sentinel/config.yaml"
fi
RULES="$R/etc/sentinel/rules"
BACKUP=""
# The pack is copied whole beside the installed one (rules.new), then switched
# in by rename: never a half-copied pack, never rules/rules/ nesting.
stage_pack() {
  rm -rf "$RULES.new"
  mkdir "$RULES.new"
  cp -R "$SRC/rules/." "$RULES.new/"
  chown -R "0:$GID" "$RULES.new"
  find "$RULES.new" -type d -exec chmod 0750 {} +
  find "$RULES.new" -type f -exec chmod 0640 {} +
}
if [[ ! -e "$RULES" ]]; then
  say "rules /etc/sentinel/rules from the default rule pack"
  stage_pack
  mv "$RULES.new" "$RULES"
elif [[ $UPGRADE -eq 1 ]]; then
  BACKUP="$RULES.bak-$(date -u +%Y%m%dT%H%M%SZ)"
  while [[ -e "$BACKUP" ]]; do BACKUP="$BACKUP.1"; done
  stage_pack
  say "rule pack: what changes (diff -ru /etc/sentinel/rules <new pack>)"
  diff -ru "$RULES" "$RULES.new" || true
  extra="$(cd "$RULES" && find . -type f | sort | while read -r f; do
             [[ -e "$RULES.new/$f" ]] || echo "${f#./}"; done)"
  if [[ -n "$extra" ]]; then
    say "WARNING: not in the new pack, so no longer loaded (kept in the backup):"
    printf '%s\n' "$extra" | sed 's/^/      /'
    say "your own rules belong in a folder of their own, added to rules.paths (deploy/README.md)"
  fi
  mv "$RULES" "$BACKUP"
  mv "$RULES.new" "$RULES"
  say "rule pack replaced; the old one is ${BACKUP#"$R"}"
else
  say "keeping the existing /etc/sentinel/rules; to replace it with this version's pack:"
  say "  deploy/install.sh --upgrade   (backs the old one up and shows the difference)"
fi
if [[ -e "$R/etc/sentinel/secrets.env" ]]; then
  say "keeping the existing /etc/sentinel/secrets.env"
else
  say "secrets /etc/sentinel/secrets.env (root only): put the webhook secrets there"
  (umask 077 && cat > "$R/etc/sentinel/secrets.env" <<'EOF'
# Webhook signing secrets, one NAME=value a line, read by systemd (as root)
# into the daemon's environment. NAME is a webhook's secret_env in config.yaml.
# Values are Standard Webhooks secrets: whsec_ followed by base64 of 24-64
# random bytes, e.g.  echo "whsec_$(head -c 32 /dev/urandom | base64)"
#SENTINEL_BAWASLU_SECRET=whsec_...
#SENTINEL_MINISTRY_SECRET=whsec_...
EOF
  )
  chown 0:0 "$R/etc/sentinel/secrets.env"
fi

# 4. check, start ------------------------------------------------------------------
FOREGROUND="set -a; . /etc/sentinel/secrets.env; set +a
  setpriv --reuid=sentinel --regid=sentinel --init-groups \\
    --bounding-set=-all,+net_raw,+net_admin,+dac_read_search \\
    --inh-caps=-all,+net_raw,+net_admin,+dac_read_search \\
    --ambient-caps=-all,+net_raw,+net_admin,+dac_read_search \\
    /opt/sentinel/bin/sentinel run -c /etc/sentinel/config.yaml"

SENTINEL="${SENTINEL_BIN:-}"
if [[ -z "$SENTINEL" && -n "$VENV" ]]; then SENTINEL="$VENV/bin/sentinel"; fi

# `sentinel check` of the installed config and rules, with the secrets loaded as
# the unit will have them; 0 when valid
check() {
  (set -a && . "$R/etc/sentinel/secrets.env" && set +a &&
   "$SENTINEL" check -c "$R/etc/sentinel/config.yaml")
}

if [[ $UPGRADE -eq 1 ]]; then
  if [[ -z "$SENTINEL" ]]; then
    say "--root without SENTINEL_BIN: no sentinel to check the staged config with"
  elif check; then
    say "sentinel check: the kept config and the new rule pack are valid"
  else
    say "the kept config fails with this version (above); nothing restarted"
    if [[ -n "$BACKUP" ]]; then
      rm -rf "$RULES.failed"
      mv "$RULES" "$RULES.failed"
      mv "$BACKUP" "$RULES"
      say "the previous rule pack is back in /etc/sentinel/rules; the new one is in"
      say "  /etc/sentinel/rules.failed. Fix the config (deploy/README.md, another site),"
      say "  then run deploy/install.sh --upgrade again."
    fi
    exit 1
  fi
  if [[ -z "$R" && -d /run/systemd/system ]]; then
    systemctl daemon-reload
    systemctl restart sentinel.service
    say "restarted: systemctl status sentinel"
  else
    say "upgraded. systemd is not PID 1 here, so nothing was restarted."
  fi
  exit 0
fi

if [[ -z "$R" && -d /run/systemd/system ]]; then
  systemctl daemon-reload
  if check; then
    systemctl enable --now sentinel.service
    say "running: systemctl status sentinel; metrics on the listen address in the config"
  else
    say "the config has errors (above): fix them, then: systemctl enable --now sentinel"
    exit 1
  fi
else
  say "installed. systemd is not PID 1 here, so nothing was started."
  echo "    Check the config:   (set -a; . /etc/sentinel/secrets.env; set +a;"
  echo "                         /opt/sentinel/bin/sentinel check -c /etc/sentinel/config.yaml)"
  echo "    Run in the foreground, as the sentinel user with the unit's three capabilities:"
  echo "  $FOREGROUND"
fi
