"""Each host detection of the election rule pack (90-host-*.yaml) fires on its attack.

Logins: the records sshd, sudo and login write (in rsyslog's default RFC 3339 form,
at the reference site's times) are appended to an auth.log that the auth source
itself follows; its events go through the pack with config.example.yaml's lists and
schedule. tests/sources/auth/test_auth_sshd_live.py shows a real sshd writing such
records. Devices: kernel uevents in the form the kernel sends (a USB device cannot
be attached here) go through the device source, with a directory shaped like sysfs
for what it reads about the stick.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
from scenariokit import EXAMPLE_CONFIG

from sentinel.config import AuthConfig, Config
from sentinel.config_reader import load_config
from sentinel.engine import Engine, load_rules
from sentinel.events import Event
from sentinel.metrics import Metrics
from sentinel.selfwatch.mounts import Mount, parse_mountinfo
from sentinel.sources.auth import AuthSource
from sentinel.sources.device import DeviceSource
from sentinel.sources.device.source import MountEvents
from sentinel.sources.device.uevent import DeviceFacts
from tests.conftest import EXAMPLE_SECRETS
from tests.support import wait_for

DAY = "2024-02-14T14:{:02d}:{:02d}.000000+07:00"  # inside the counting window
EVE = "2024-02-13T10:{:02d}:{:02d}.000000+07:00"  # the day before


def line(when: str, i: int, prog: str, msg: str) -> str:
    return f"{when.format(i // 60, i % 60)} tally-01 {prog}: {msg}"


def sshd(when: str, i: int, msg: str) -> str:
    return line(when, i, "sshd[812]", msg)


KEY = " ssh2: ED25519 SHA256:q0e4xHhJ0rZ3K2mYQ5o8h7Q7b0m3dVb1YF6sV9Wc2xk"

#: rule -> the auth.log lines of its attack
AUTH_SCENARIOS: dict[str, list[str]] = {
    "auth-password-guessing-from-source": [
        sshd(EVE, 10 * i, f"Failed password for invalid user admin{i} from 10.20.0.66"
             f" port {40000 + i} ssh2") for i in range(12)],
    "auth-password-guessing-for-user": [
        sshd(EVE, 100 * i, f"Failed password for operator from 10.20.1.{i + 1} port 40000 ssh2")
        for i in range(10)],
    "auth-root-login": [
        sshd(EVE, 0, "Accepted publickey for root from 10.20.1.5 port 50022" + KEY)],
    "auth-login-outside-admin-net": [
        sshd(EVE, 0, "Accepted publickey for operator from 10.20.0.66 port 50022" + KEY)],
    "auth-login-after-failures": [
        *(sshd(EVE, i, f"Failed password for operator from 10.20.1.5 port {40000 + i} ssh2")
          for i in range(6)),
        sshd(EVE, 30, "Accepted password for operator from 10.20.1.5 port 40100 ssh2")],
    "auth-login-during-counting-unlisted-account": [
        sshd(DAY, 0, "Accepted publickey for intern from 10.20.1.5 port 50022" + KEY)],
    "auth-privilege-refused": [
        line(EVE, 0, "sudo", "operator : 3 incorrect password attempts ; TTY=pts/0 ;"
             " PWD=/home/operator ; USER=root ; COMMAND=/bin/bash")],
}

#: what must not fire: the same server's ordinary day
NORMAL_DAY = [
    sshd(DAY, 0, "Accepted publickey for operator from 10.20.1.5 port 50022" + KEY),
    line(DAY, 5, "sudo", "operator : TTY=pts/0 ; PWD=/home/operator ; USER=root ;"
         " COMMAND=/usr/bin/systemctl status tally"),
    sshd(DAY, 60, "Failed password for operator from 10.20.1.5 port 50100 ssh2"),
    sshd(DAY, 70, "Accepted password for operator from 10.20.1.5 port 50101 ssh2"),
]


@pytest.fixture(scope="module")
def config() -> Config:
    with pytest.MonkeyPatch.context() as mp:
        for k, v in EXAMPLE_SECRETS.items():
            mp.setenv(k, v)
        return load_config(EXAMPLE_CONFIG)


def _through_auth_source(config: Config, tmp: Path, lines: list[str]) -> list[str]:
    """The rules that fire when the auth source reads ``lines`` appended to an auth.log."""
    log = tmp / "auth.log"
    log.write_text("")
    src = AuthSource(dataclasses.replace(config, auth=AuthConfig(files=(log,))), Metrics())
    events: list[Event] = []
    lock = threading.Lock()

    def emit(ev: Event) -> None:
        with lock:
            events.append(ev)

    src.start(emit)
    try:
        with log.open("a") as f:
            f.write("".join(x + "\n" for x in lines))
        wait_for(lambda: len(events) >= len(lines), 10.0, "the source to read every line")
    finally:
        src.stop()
    engine = Engine(load_rules(config), host="tally-01")
    return [a.rule for ev in events for a in engine.process(ev)]


@pytest.mark.parametrize("rule", sorted(AUTH_SCENARIOS))
def test_login_attack_raises_its_alert(config: Config, tmp_path: Path, rule: str) -> None:
    fired = _through_auth_source(config, tmp_path, AUTH_SCENARIOS[rule])
    assert rule in fired


def test_an_ordinary_admin_session_raises_nothing(config: Config, tmp_path: Path) -> None:
    assert _through_auth_source(config, tmp_path, NORMAL_DAY) == []


_STICK = (b"/devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/host6/target6:0:0/6:0:0:0/"
          b"block/sdb")
_USB_DEV = b"/devices/pci0000:00/0000:00:14.0/usb1/1-1"


def _uevent(action: bytes, devpath: bytes, *env: bytes) -> bytes:
    return b"\0".join([action + b"@" + devpath, b"ACTION=" + action, b"DEVPATH=" + devpath,
                       *env, b"SEQNUM=4521", b""])


#: rule -> the kernel's events of its attack (a stick: the USB device, then its disk)
DEVICE_SCENARIOS: dict[str, list[bytes]] = {
    "device-usb-attached": [
        _uevent(b"add", _USB_DEV, b"SUBSYSTEM=usb", b"DEVNAME=bus/usb/001/002",
                b"DEVTYPE=usb_device", b"PRODUCT=781/5567/100")],
    "device-removable-storage": [
        _uevent(b"add", _STICK, b"SUBSYSTEM=block", b"MAJOR=8", b"MINOR=16",
                b"DEVNAME=sdb", b"DEVTYPE=disk"),
        _uevent(b"add", _STICK + b"/sdb1", b"SUBSYSTEM=block", b"DEVNAME=sdb1",
                b"DEVTYPE=partition")],
}


def _sysfs(root: Path) -> None:
    usb = root / _USB_DEV.decode().lstrip("/")
    disk = root / _STICK.decode().lstrip("/")
    (disk / "sdb1").mkdir(parents=True)
    (disk / "removable").write_text("1\n")
    (usb / "idVendor").write_text("0781\n")
    (usb / "manufacturer").write_text("SanDisk\n")
    (usb / "product").write_text("Cruzer Blade\n")


@pytest.mark.parametrize("rule", sorted(DEVICE_SCENARIOS))
def test_device_attack_raises_its_alert_and_only_once(config: Config, tmp_path: Path,
                                                      rule: str) -> None:
    _sysfs(tmp_path)
    cfg = dataclasses.replace(config, devices=dataclasses.replace(config.devices, enabled=True))
    src = DeviceSource(cfg, Metrics())
    src.facts = DeviceFacts(tmp_path)
    events: list[Event] = []
    src._emit = events.append
    for data in DEVICE_SCENARIOS[rule]:
        src.handle(data, 1707894000.0)  # 2024-02-14 14:00 +07:00: counting
    engine = Engine(load_rules(config), host="tally-01")
    alerts = [a for ev in events for a in engine.process(ev)]
    assert [a.rule for a in alerts] == [rule]
    assert alerts[0].severity == {"device-usb-attached": "high",
                                  "device-removable-storage": "critical"}[rule]


def test_a_stick_mounted_raises_its_alert(config: Config, tmp_path: Path) -> None:
    """The mount table gains the stick's partition (mountinfo as the kernel writes it)."""
    _sysfs(tmp_path)
    blk = tmp_path / "class" / "block"
    blk.mkdir(parents=True)
    (blk / "sdb1").symlink_to(tmp_path / _STICK.decode().lstrip("/") / "sdb1")
    base = "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
    events: list[tuple[str, dict[str, object]]] = []
    mounts = MountEvents(lambda k, f: events.append((k, f)), sys_root=tmp_path)
    mounts._changed(*_diff(base, base + "41 22 8:17 / /media/usb0 rw,nosuid shared:2 - vfat"
                           " /dev/sdb1 rw,fmask=0022\n"))
    engine = Engine(load_rules(config), host="tally-01")
    fired = [a for k, f in events for a in engine.process(Event(k, 1707894000.0, "tally-01",
                                                                 "device", f))]
    assert [(a.rule, a.severity) for a in fired] == [("device-removable-mounted", "critical")]


def _diff(old: str, new: str) -> tuple[list[Mount], list[Mount]]:
    a, b = parse_mountinfo(old), parse_mountinfo(new)
    return [m for i, m in b.items() if i not in a], [m for i, m in a.items() if i not in b]


HOST_SCENARIOS = {*AUTH_SCENARIOS, *DEVICE_SCENARIOS, "device-removable-mounted"}
