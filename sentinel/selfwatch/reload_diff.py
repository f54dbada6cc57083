"""What a reload changed: rules added, removed, disabled or changed; config keys changed.

A rule switched off (``enabled: false``) or deleted, a list widened, a webhook
dropped: each is as good as beating a detection, so every reload that changes
anything is an alert (:func:`reload_alert`) and the next attestation lists it.

A reload the daemon made itself because the server's own addresses or gateways
changed (:data:`LEARNED_KEYS`, with the config file and the rules as they were)
changed nothing anyone wrote: it is :func:`addresses_alert`, for information, not
a high (or, during counting, critical) alert at every boot that autoconfigures an
address.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import yaml

from sentinel.alert import Alert
from sentinel.config import Config
from sentinel.engine import RuleSet
from sentinel.selfwatch.alerts import (
    ADDRESSES_CHANGED,
    RELOAD_CHANGED,
    TAG,
    in_schedule,
    self_alert,
)

#: Config fields that are bookkeeping, not settings.
# where values sit in the file (an edit above them moves them), and what check warns:
# not what sentinel does
_SKIP = {"source", "list_marks", "list_item_marks", "warnings"}
#: The keys the daemon changes itself, from the kernel's addresses and routes.
LEARNED_KEYS = frozenset({"host.addresses", "lists.tally_server", "lists.gateway_ip",
                          "learned_addresses", "learned_gateways"})


def config_digest(path: Path) -> str:
    """sha256 of the config file's bytes ("" when unreadable)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


def config_changes(old: Any, new: Any, where: str = "") -> list[str]:
    """Dotted names of the config keys whose values differ (secrets compared, never shown)."""
    if dataclasses.is_dataclass(old) and type(old) is type(new):
        out: list[str] = []
        for f in dataclasses.fields(old):
            if f.name in _SKIP:
                continue
            sub = f"{where}.{f.name}" if where else f.name
            out += config_changes(getattr(old, f.name), getattr(new, f.name), sub)
        return out
    if where == "fim.paths":
        # sentinel's own files are added by the daemon (a key made since the last load
        # is one more); they are not the operator's config
        old, new = _operator_paths(old), _operator_paths(new)
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{where}.{k}"
            if k not in old or k not in new:
                out.append(sub)
            else:
                out += config_changes(old[k], new[k], sub)
        return out
    if (isinstance(old, tuple) and isinstance(new, tuple) and len(old) == len(new)
            and any(dataclasses.is_dataclass(x) for x in old)):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += config_changes(a, b, f"{where}[{i}]")
        return out
    return [] if old == new else [where]


def _operator_paths(paths: Any) -> Any:
    return tuple(p for p in paths if p.tags != (TAG,))


def _disabled_ids(files: tuple[Path, ...]) -> set[str]:
    """Ids of rules present in ``files`` with ``enabled: false``."""
    out: set[str] = set()
    for f in files:
        try:
            doc = yaml.safe_load(f.read_bytes())
        except (OSError, yaml.YAMLError):
            continue
        rules = doc.get("rules") if isinstance(doc, dict) else None
        for r in rules if isinstance(rules, list) else ():
            if isinstance(r, dict) and r.get("enabled") is False and isinstance(r.get("id"), str):
                out.add(r["id"])
    return out


def rule_changes(old: RuleSet, new: RuleSet) -> dict[str, list[str]]:
    """``{"added", "removed", "disabled", "changed"}`` rule ids, each sorted."""
    before = {r.id: r.fingerprint for r in old}
    after = {r.id: r.fingerprint for r in new}
    gone = set(before) - set(after)
    disabled = gone & _disabled_ids(new.files)
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(gone - disabled),
        "disabled": sorted(disabled),
        "changed": sorted(i for i in set(before) & set(after) if before[i] != after[i]),
    }


def reload_summary(old_config: Config, new_config: Config, old_rules: RuleSet,
                   new_rules: RuleSet, old_digest: str, new_digest: str) -> dict[str, Any] | None:
    """What changed, with old and new digests; None when nothing did."""
    rules = rule_changes(old_rules, new_rules)
    keys = config_changes(old_config, new_config)
    if not keys and not any(rules.values()) and old_rules.digest() == new_rules.digest():
        return None
    return {
        "rules_added": rules["added"], "rules_removed": rules["removed"],
        "rules_disabled": rules["disabled"], "rules_changed": rules["changed"],
        "config_keys_changed": keys,
        "rules_digest_old": old_rules.digest(), "rules_digest_new": new_rules.digest(),
        "config_digest_old": old_digest, "config_digest_new": new_digest,
    }


def reload_alert(config: Config, summary: dict[str, Any], now: float) -> Alert:
    """High; critical while a named schedule (e.g. counting) is open."""
    open_now = in_schedule(config, now)
    parts = [f"{len(summary[k])} rule(s) {k.split('_')[1]}"
             for k in ("rules_removed", "rules_disabled", "rules_added", "rules_changed")
             if summary[k]]
    if summary["config_keys_changed"]:
        parts.append(f"config keys changed: {', '.join(summary['config_keys_changed'][:8])}")
    what = "; ".join(parts) or "rule files changed"
    names = [*summary["rules_removed"], *summary["rules_disabled"]]
    description = (f"A reload changed what sentinel detects: {what}."
                   + (f" No longer detecting: {', '.join(names)}." if names else "")
                   + (f" During schedule {', '.join(open_now)}." if open_now else ""))
    indonesian = (
        f"Aturan atau konfigurasi sentinel berubah: {what}",
        f"Sebuah pemuatan ulang mengubah apa yang dideteksi sentinel: {what}."
        + (f" Tidak lagi mendeteksi: {', '.join(names)}." if names else "")
        + (f" Selama jadwal {', '.join(open_now)}." if open_now else ""))
    return self_alert(config, RELOAD_CHANGED, f"sentinel's rules or config changed: {what}",
                      "critical" if open_now else "high", now, "reload", description,
                      indonesian, schedules_open=open_now, **summary)


def learned_only(summary: dict[str, Any]) -> bool:
    """Did only the server's own addresses or gateways change (the file and rules did not)?"""
    return (summary["config_digest_old"] == summary["config_digest_new"] != ""
            and summary["rules_digest_old"] == summary["rules_digest_new"]
            and not any(summary[k] for k in ("rules_added", "rules_removed", "rules_disabled",
                                             "rules_changed"))
            and set(summary["config_keys_changed"]) <= LEARNED_KEYS)


def addresses_alert(old: Config, new: Config, summary: dict[str, Any], now: float) -> Alert:
    """Info: the addresses and gateways the daemon learned changed, nothing else."""
    def diff(before: tuple[Any, ...], after: tuple[Any, ...]) -> tuple[list[str], list[str]]:
        a, b = {str(x) for x in before}, {str(x) for x in after}
        return sorted(b - a), sorted(a - b)

    added, removed = diff(old.learned_addresses, new.learned_addresses)
    gw_added, gw_removed = diff(old.learned_gateways, new.learned_gateways)
    parts = [f"{label} {', '.join(xs)}" for label, xs in (
        ("addresses added:", added), ("addresses gone:", removed),
        ("gateways added:", gw_added), ("gateways gone:", gw_removed)) if xs]
    what = "; ".join(parts) or "learned addresses changed"
    id_parts = [f"{label} {', '.join(xs)}" for label, xs in (
        ("alamat bertambah:", added), ("alamat hilang:", removed),
        ("gateway bertambah:", gw_added), ("gateway hilang:", gw_removed)) if xs]
    id_what = "; ".join(id_parts) or "alamat yang dipelajari berubah"
    description = (
        f"The kernel changed the tally server's own addresses or default routes ({what});"
        " sentinel now counts them as the server's and its gateway's, and nothing in its"
        " config or rules changed. Expected after boot (IPv6 autoconfiguration) or a"
        " renumbering. Unexpected, it follows someone on the segment: a rogue router"
        " advertisement has a critical alert of its own. Check first: `ip addr` and"
        " `ip route` on the server.")
    indonesian = (
        f"Alamat milik server penghitungan suara berubah: {id_what}",
        f"Kernel mengubah alamat atau rute default milik server penghitungan suara"
        f" ({id_what}); sentinel kini menghitungnya sebagai milik server dan gateway-nya,"
        " dan tidak ada yang berubah dalam konfigurasi atau aturannya. Wajar setelah boot"
        " (konfigurasi otomatis IPv6) atau penomoran ulang. Jika tidak terduga, ini akibat"
        " pihak lain di segmen: iklan router palsu memiliki peringatan kritis tersendiri."
        " Periksa terlebih dahulu: `ip addr` dan `ip route` di server.")
    return self_alert(new, ADDRESSES_CHANGED,
                      f"The tally server's own addresses changed: {what}", "info", now,
                      "addresses", description, indonesian, addresses_added=added,
                      addresses_removed=removed, gateways_added=gw_added,
                      gateways_removed=gw_removed, **summary)
