"""sentinel's own files, watched without the operator listing them (tag ``sentinel-self``).

Whoever can edit sentinel's config, rules, keys, unit file or code can blind
it. These paths are added to ``fim.paths`` by :func:`with_own_files` wherever
the config is loaded for file integrity (the daemon, ``baseline init`` and
``verify``), so a change to them is an ordinary FIM event, alerted by the
rule ``sentinel-own-file-changed`` (rules/80-self.yaml):

* the config file, every rule file or folder (``rules.paths``);
* key files outside the state dir (the baseline's, the journal's, the
  attestation pair); those inside it are not watched (the state dir never is),
  but a swapped HMAC key breaks the baseline's signature and the journal's
  chain, and a swapped attestation key no longer matches the published one;
* the systemd unit and its drop-in folder, where they exist;
* the installed ``sentinel`` package, all of it, ``__pycache__`` included
  (site-packages or dist-packages, where the installer compiled it): a
  planted ``.pyc`` with the source's timestamp runs instead of the source.
  From a source tree (an editable install) only its files outside
  ``__pycache__`` are watched, one by one: Python rewrites ``__pycache__``
  there at the first import of every edited module, and would alert.

A path the operator already lists keeps the operator's entry (and tags).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import sentinel
from sentinel.config import Config, FimPath
from sentinel.keys import key_path
from sentinel.selfwatch.alerts import TAG

#: Where the unit and its drop-ins live on Debian and other systemd systems.
UNIT_PATHS = (
    Path("/etc/systemd/system/sentinel.service"),
    Path("/etc/systemd/system/sentinel.service.d"),
    Path("/lib/systemd/system/sentinel.service"),
    Path("/usr/lib/systemd/system/sentinel.service"),
)


def package_dir() -> Path:
    return Path(sentinel.__file__).resolve().parent


def own_files(config: Config) -> list[FimPath]:
    """The entries for sentinel's own files (missing unit paths left out)."""
    files: list[Path] = [config.source]
    files += config.rules.paths
    for source in (config.fim.key, config.outputs.journal.key):
        p = key_path(source, config.state_dir)
        if p is not None:
            files.append(p)
    attest = config.in_state(config.attest.key_file)
    files += [attest, attest.with_suffix(".pub")]
    files += [u for u in UNIT_PATHS if os.path.lexists(u)]
    state = Path(os.path.abspath(config.state_dir))
    out: list[FimPath] = []
    seen: set[Path] = set()
    for f in files:
        a = Path(os.path.abspath(f))
        # a key not made yet is not an entry: it would be a "missing path" warning at every
        # start, and the config's own files always exist
        # and one in the state dir is not either: FIM never watches the state dir, and a
        # key made there at first start would change fim.paths at the next reload
        if a not in seen and os.path.lexists(a) and not _under(a, state):
            seen.add(a)
            out.append(FimPath(a, recursive=True, tags=(TAG,)))
    out += [p for p in package_entries() if p.path not in seen]
    return out


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def package_entries(pkg: Path | None = None) -> list[FimPath]:
    """The installed package as one entry; a source tree's files one by one."""
    pkg = pkg or package_dir()
    if any(part in ("site-packages", "dist-packages") for part in pkg.parts):
        return [FimPath(pkg, recursive=True, tags=(TAG,))]
    out = []
    for root, dirs, files in os.walk(pkg):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        out += [FimPath(Path(root, f), recursive=False, tags=(TAG,)) for f in sorted(files)
                if not f.endswith(".pyc")]
    return out


def with_own_files(config: Config) -> Config:
    """``config`` with sentinel's own files added to ``fim.paths``."""
    listed = {p.path for p in config.fim.paths}
    add = tuple(p for p in own_files(config) if p.path not in listed)
    fim = dataclasses.replace(config.fim, paths=config.fim.paths + add)
    return dataclasses.replace(config, fim=fim)
