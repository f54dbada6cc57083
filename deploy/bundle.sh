#!/usr/bin/env bash
# Build an offline install bundle of sentinel: everything a tally server with no
# internet needs, in one signed tarball.
#
#   deploy/bundle.sh --sign-key KEY.pem [--out DIR]
#
# Run it on a machine with internet and the same Debian release and CPU as the
# tally servers (the wheels are built for this machine's Python). KEY.pem is an
# Ed25519 private key (openssl genpkey -algorithm ed25519 -out KEY.pem); give
# the tally sites its public key by another channel than the bundle.
#
# It writes, under DIR (default: dist/):
#   sentinel-VERSION-bundle.tar.gz    wheels/ (sentinel and every dependency),
#                                     requirements.txt (each wheel pinned with its
#                                     sha256), rules/, deploy/, config.example.yaml,
#                                     README.md, SHA256SUMS and SHA256SUMS.sig
#   sentinel-VERSION-bundle.pub       the public key, to hand out separately
#
# On the tally server, as root, with no network:
#   tar xzf sentinel-VERSION-bundle.tar.gz && cd sentinel-VERSION-bundle
#   openssl pkeyutl -verify -pubin -inkey KEY.pub -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig
#   sha256sum --strict -c SHA256SUMS
#   deploy/install.sh          # installs from wheels/ with pip --no-index --require-hashes
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$SRC/dist"
KEY=""
PYTHON="${PYTHON:-python3}"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --sign-key) KEY="${2:?--sign-key needs a file}"; shift 2 ;;
    --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bundle.sh: unknown argument '$1'; valid: --sign-key KEY.pem, --out DIR" >&2; exit 2 ;;
  esac
done
if [[ -z "$KEY" || ! -r "$KEY" ]]; then
  echo "bundle.sh: --sign-key KEY.pem is required (an Ed25519 private key; make one with:" \
       "openssl genpkey -algorithm ed25519 -out KEY.pem)" >&2
  exit 2
fi

VERSION="$(cd "$SRC" && "$PYTHON" -c 'import re,pathlib; print(re.search(r"__version__ = \"([^\"]+)\"", pathlib.Path("sentinel/__init__.py").read_text()).group(1))')"
NAME="sentinel-$VERSION-bundle"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
B="$WORK/$NAME"
mkdir -p "$B/wheels"
say() { printf '==> %s\n' "$*"; }

say "wheels of sentinel and every dependency"
"$PYTHON" -m pip wheel --quiet --wheel-dir "$B/wheels" "$SRC"

say "requirements.txt: every wheel pinned with its sha256"
for whl in "$B"/wheels/*.whl; do
  file="$(basename "$whl")"
  name="${file%%-*}"
  rest="${file#*-}"
  version="${rest%%-*}"
  printf '%s==%s --hash=sha256:%s\n' "$name" "$version" "$(sha256sum "$whl" | cut -d' ' -f1)"
done > "$B/requirements.txt"

say "rule pack, deploy/, example config"
cp -R "$SRC/rules" "$B/rules"
cp -R "$SRC/deploy" "$B/deploy"
cp "$SRC/config.example.yaml" "$SRC/README.md" "$B/"
find "$B" -name __pycache__ -prune -exec rm -rf {} +

say "SHA256SUMS, signed"
(cd "$B" && find . -type f ! -name SHA256SUMS ! -name SHA256SUMS.sig -printf '%P\n' \
  | LC_ALL=C sort | xargs -d '\n' sha256sum > SHA256SUMS)
openssl pkeyutl -sign -inkey "$KEY" -rawin -in "$B/SHA256SUMS" -out "$B/SHA256SUMS.sig"
openssl pkey -in "$KEY" -pubout -out "$OUT/$NAME.pub"

tar -C "$WORK" -czf "$OUT/$NAME.tar.gz" "$NAME"
say "$OUT/$NAME.tar.gz ($(du -h "$OUT/$NAME.tar.gz" | cut -f1), $(ls "$B/wheels" | wc -l) wheels)"
say "public key: $OUT/$NAME.pub (hand it to the sites separately)"
