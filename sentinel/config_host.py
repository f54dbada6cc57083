"""Reads the host-activity sections of the config: ``auth``, ``devices``, ``attribution``.

Both are off unless present: reading another program's logs or the kernel's
device events is a choice a site makes (docs/config.md, "Beyond CONTRACT.md").
"""

from __future__ import annotations

import os
from pathlib import Path

from sentinel.config import AttributionConfig, AuthConfig, DeviceConfig
from sentinel.located import Checker, Node, Problem

#: How file changes can be attributed to a process.
FILE_ATTRIBUTION = ("audit", "off")

#: Subsystems the device source can report; others carry nothing about media.
DEVICE_SUBSYSTEMS = ("block", "usb", "scsi", "mmc", "nvme", "thunderbolt", "net")


def read_auth(c: Checker, node: Node, warnings: list[Problem] | None = None) -> AuthConfig:
    """The ``auth`` section; a file absent on this host is a warning in ``warnings``
    (valid: rsyslog may create it later, and the daemon reports it down until then)."""
    m = c.mapping(node, "auth", ("journal", "files"))
    if m is None:
        return AuthConfig()
    journal = c.boolean(m["journal"], "auth.journal") if "journal" in m else False
    files: list[Path] = []
    if "files" in m and (items := c.seq(m["files"], "auth.files")) is not None:
        for i, item in enumerate(items):
            text = c.string(item, f"auth.files[{i}]")
            if text is None:
                continue
            if not text.startswith("/"):
                c.error(item.mark, f"auth.files[{i}] {text!r} must be an absolute path,"
                        " e.g. /var/log/auth.log")
                continue
            files.append(Path(text))
            if warnings is not None and not os.path.lexists(text):
                warnings.append(Problem(
                    item.mark, f"warning: auth.files[{i}]: {text!r} does not exist on this"
                    " host; the daemon would report the auth source blind on it until it"
                    " appears"))
    return AuthConfig(journal=journal is True, files=tuple(files))


def read_devices(c: Checker, node: Node) -> DeviceConfig:
    m = c.mapping(node, "devices", ("enabled", "subsystems", "mounts"))
    if m is None:
        return DeviceConfig()
    enabled = c.boolean(m["enabled"], "devices.enabled") if "enabled" in m else True
    subsystems = DeviceConfig.subsystems
    names = c.strings(m["subsystems"], "devices.subsystems") if "subsystems" in m else None
    if names is not None:
        bad = [n for n in names if n not in DEVICE_SUBSYSTEMS]
        if bad:
            c.error(m["subsystems"].mark, f"devices.subsystems: {', '.join(map(repr, bad))}"
                    " is not a subsystem sentinel reports; valid: " + ", ".join(DEVICE_SUBSYSTEMS))
        subsystems = tuple(n for n in names if n in DEVICE_SUBSYSTEMS)
    mounts = c.boolean(m["mounts"], "devices.mounts") if "mounts" in m else True
    return DeviceConfig(enabled=enabled is True, subsystems=subsystems, mounts=mounts is not False)


def read_attribution(c: Checker, node: Node) -> AttributionConfig:
    m = c.mapping(node, "attribution", ("files", "connections"))
    if m is None:
        return AttributionConfig()
    files = AttributionConfig.files
    if "files" in m and (text := c.string(m["files"], "attribution.files")) is not None:
        if text in FILE_ATTRIBUTION:
            files = text
        else:
            c.error(m["files"].mark, f"attribution.files: {text!r} is not a way sentinel"
                    " attributes file changes; valid: " + ", ".join(FILE_ATTRIBUTION))
    connections = (c.boolean(m["connections"], "attribution.connections")
                   if "connections" in m else False)
    return AttributionConfig(files=files, connections=connections is True)
