"""The tally server's addresses nobody wrote down are still the tally server's.

A Linux server has an IPv6 link-local address on every interface (and often
autoconfigured ones) that a config listing ``host.addresses: [10.20.0.10]`` and
``tally_server: [10.20.0.10]`` does not name. Anyone on the segment can reach the
server's services over it; unless sentinel counts it as its own, no rule keyed on
``tally_server`` sees a port scan or a database connection made that way. The
daemon adds the capture interfaces' own addresses to both (``sentinel.hostinfo``),
at start and when they change.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from netkit import in_netns, ip, needs_netns, send_frames, sysctl, wait_for

from sentinel.config_reader import load_config
from sentinel.hostinfo import (
    AddressLooks,
    AddressNotices,
    learnable_gateways,
    local_addresses,
    local_gateways,
    with_own_addresses,
)
from tests.conftest import REPO
from tests.support import free_port
from tests.test_daemon import SENTINEL, NotifySocket

TALLY, STRANGER = "10.20.0.10", "10.20.0.66"


def _config(tmp: Path, dev: str, port: int | None = None,
            lists: dict[str, list[str]] | None = None) -> Path:
    example = yaml.safe_load((REPO / "config.example.yaml").read_text())
    example["lists"].update(lists or {})
    cfg: dict[str, Any] = {
        "host": {"name": "tally-01", "addresses": [TALLY]},
        "state_dir": str(tmp / "state"),
        "network": {"interfaces": [dev], "home_nets": ["10.20.0.0/16"]},
        "rules": {"paths": [str(REPO / "rules")]},
        "lists": example["lists"],
        "schedules": example["schedules"],
        "outputs": {"journal": {"path": "alerts.jsonl", "key_file": str(tmp / "j.key")},
                    "metrics": {"listen": f"127.0.0.1:{port or free_port()}"}},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_addresses_the_config_does_not_list_join_host_addresses_and_tally_server(
        tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, "eth0"))
    ll = ipaddress.ip_address("fe80::ff:fe00:10")
    v4 = ipaddress.ip_address(TALLY)
    got, added = with_own_addresses(config, [v4, ll, ll], gateways=[])
    assert added == [ll] and got.learned_addresses == (ll,)
    assert got.host.addresses == (v4, ll)
    assert got.lists["tally_server"] == (TALLY, "fe80::ff:fe00:10")
    # every item keeps a place in the file for messages about it: the list's own
    assert len(got.list_item_marks["tally_server"]) == 2
    assert got.list_item_marks["tally_server"][1] == config.list_marks["tally_server"]
    # the other lists and the file's own config are untouched
    assert got.lists["admin_net"] == config.lists["admin_net"]
    assert config.lists["tally_server"] == (TALLY,)
    # nothing to add: the same config back
    same, none = with_own_addresses(config, [v4], gateways=[])
    assert same is config and none == []


def test_an_address_learned_keeps_the_rules_state_running(tmp_path: Path) -> None:
    """An address arriving reloads the rules with a longer tally_server list; their
    fingerprints stay, so a scan counted before the reload goes on counting after it
    (and a rogue router advertisement that makes the kernel add addresses cannot reset
    sentinel's counters that way)."""
    from sentinel.engine import Engine, load_rules
    from sentinel.events import Event

    config = load_config(_config(tmp_path, "eth0"))
    before = load_rules(config)
    learned, _ = with_own_addresses(config, [ipaddress.ip_address("fe80::ff:fe00:10")],
                                    gateways=[ipaddress.ip_address("fe80::1")])
    after = load_rules(learned)
    prints = {r.id: r.fingerprint for r in before.rules}
    assert all(prints[r.id] == r.fingerprint for r in after.rules)

    def probe(port: int, dst: str = TALLY) -> Event:
        return Event("net.connection", 1000.0 + port, "tally-01", "network", {
            "proto": "tcp", "src_ip": STRANGER, "src_port": 50000, "dst_ip": dst,
            "dst_port": port, "direction": "inbound", "src_internal": True,
            "dst_internal": True, "iface": "eth0", "tcp_flags": "S", "probe": False,
            "midstream": False})

    engine = Engine(before, host="tally-01", storm=None)
    for port in range(1, 15):  # 14 ports: one short of the port scan
        assert not [a for a in engine.process(probe(port))
                    if a.rule == "port-scan-of-tally-server"]
    engine.swap(after)
    # the 15th port, over the learned address: the same scan, now crossing
    crossed = [a for a in engine.process(probe(15, "fe80::ff:fe00:10"))
               if a.rule == "port-scan-of-tally-server"]
    assert len(crossed) == 1 and crossed[0].count == 15


def test_a_learned_address_is_taken_in_place_by_the_running_network_source(
        tmp_path: Path) -> None:
    """A reload that only learned an address rebuilds no part (a new capture would leave
    packets unseen while it starts, and lose its flows): the running source counts the
    address as the host's from the next packet on. An address written into the file is
    a change of the parts, as before."""
    from sentinel.metrics import Metrics
    from sentinel.parts import Parts, parts_differ, take_own_addresses
    from sentinel.sources.net.source import NetworkSource

    config = load_config(_config(tmp_path, "eth0"))
    new = ipaddress.ip_address("fd00:20::10")
    learned, _ = with_own_addresses(config, [new], gateways=[])
    assert not parts_differ(config, learned)
    source = NetworkSource(config, Metrics())
    before = source.ends.info(new.packed)
    assert before == ("fd00:20::10", False, False)
    take_own_addresses(Parts([source], None, None), learned)  # type: ignore[arg-type]
    assert source.ends.info(new.packed) == ("fd00:20::10", True, False)
    assert source.ends.info(ipaddress.ip_address(TALLY).packed)[1] is True
    # and gone again: the next reload without it
    take_own_addresses(Parts([source], None, None), config)  # type: ignore[arg-type]
    assert source.ends.info(new.packed)[1] is False
    # written by hand, the address is the operator's change: the parts are rebuilt
    import dataclasses
    written = dataclasses.replace(config, host=dataclasses.replace(
        config.host, addresses=(*config.host.addresses, new)))
    assert parts_differ(config, written)


def test_a_config_without_a_tally_server_list_gets_only_host_addresses(
        tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"host: {{name: t, addresses: [{TALLY}]}}\nstate_dir: {tmp_path}\n")
    config = load_config(path)
    got, _ = with_own_addresses(config, [ipaddress.ip_address("fd00:20::10")],
                                gateways=[ipaddress.ip_address("fe80::1")])
    assert "tally_server" not in got.lists and "gateway_ip" not in got.lists
    assert [str(a) for a in got.host.addresses] == [TALLY, "fd00:20::10"]


def test_default_route_next_hops_join_the_gateway_list(tmp_path: Path) -> None:
    """An IPv6 router is known by its link-local address, which no config names: the
    default routes' next hops join gateway_ip, so a neighbour advertisement claiming
    one for another MAC is the gateway spoofed."""
    config = load_config(_config(tmp_path, "eth0"))
    router, listed = ipaddress.ip_address("fe80::1"), ipaddress.ip_address("10.20.0.1")
    got, added = with_own_addresses(config, [], gateways=[listed, router, router])
    assert added == [] and got.learned_gateways == (router,)
    assert got.lists["gateway_ip"] == ("10.20.0.1", "fe80::1")
    assert got.list_item_marks["gateway_ip"][1] == config.list_marks["gateway_ip"]
    assert got.host.addresses == config.host.addresses
    # more default routes of one IP version than a site has gateways: router
    # advertisements from others, none of them learned (the other version still is)
    flood = [ipaddress.ip_address(f"fe80::{i}") for i in range(1, 40)]
    assert learnable_gateways([listed, *flood]) == [listed]
    assert learnable_gateways(flood[:2]) == flood[:2]
    same, _ = with_own_addresses(config, [], gateways=[listed, *flood])
    assert same is config


class Segment:
    """The tally server and a stranger on one segment, IPv6 left as Linux sets it up
    (link-local addresses on), ``tag`` keeping parallel runs apart."""

    def __init__(self) -> None:
        tag = f"oa{os.getpid() % 100000}"
        self.tally, self.other = f"{tag}-tally", f"{tag}-other"
        self.dev = f"{tag}t"
        self.tally_ll = "fe80::ff:fe00:10"  # from the MAC below (EUI-64)
        self.other_ll = "fe80::ff:fe00:66"

    def create(self) -> None:
        self.destroy()
        for ns in (self.tally, self.other):
            ip("netns", "add", ns)
            for key in ("all", "default"):
                # the link-local address usable at once; no solicitations on the wire
                sysctl(ns, f"net.ipv6.conf.{key}.accept_dad", "0")
                sysctl(ns, f"net.ipv6.conf.{key}.router_solicitations", "0")
                sysctl(ns, f"net.ipv6.conf.{key}.addr_gen_mode", "0")
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", self.dev, "netns", self.tally, "address", "02:00:00:00:00:10",
           "type", "veth", "peer", "name", "eth0", "netns", self.other, "address",
           "02:00:00:00:00:66")
        ip("-n", self.tally, "addr", "add", f"{TALLY}/16", "dev", self.dev)
        ip("-n", self.other, "addr", "add", f"{STRANGER}/16", "dev", "eth0")
        ip("-n", self.tally, "link", "set", self.dev, "up")
        ip("-n", self.other, "link", "set", "eth0", "up")
        for ns, dev, addr in ((self.tally, self.dev, self.tally_ll),
                              (self.other, "eth0", self.other_ll)):
            # the kernel adds a link-local address once the link has its carrier
            wait_for(lambda ns=ns, dev=dev, addr=addr: addr in subprocess.run(
                ["ip", "-n", ns, "-6", "addr", "show", "dev", dev], capture_output=True,
                text=True, check=True).stdout or None, 10, f"{addr} on {ns}")

    def destroy(self) -> None:
        for ns in (self.tally, self.other):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


@pytest.fixture
def segment() -> Iterator[Segment]:
    needs_netns()
    s = Segment()
    s.create()
    try:
        yield s
    finally:
        s.destroy()


@pytest.mark.root
def test_the_kernel_names_the_capture_interfaces_own_addresses(segment: Segment) -> None:
    mine = in_netns(segment.tally, lambda: local_addresses([segment.dev]))
    assert ipaddress.ip_address(TALLY) in mine
    assert ipaddress.ip_address(segment.tally_ll) in mine
    # only the interfaces asked for: loopback and other interfaces are not the segment's
    assert in_netns(segment.tally, lambda: local_addresses(["lo"])) == []


@pytest.mark.root
def test_the_kernel_gives_notice_of_address_and_route_changes(segment: Segment) -> None:
    """An address or a default route added in the namespace is noticed at the next look,
    without waiting for a poll; nothing new is no notice."""
    notices = in_netns(segment.tally, AddressNotices.open)
    assert notices is not None
    try:
        notices.changed()  # whatever the segment's set-up left
        assert notices.changed() is False
        ip("-n", segment.tally, "addr", "add", "fd00:20::10/64", "dev", segment.dev, "nodad")
        assert wait_for(lambda: notices.changed() or None, 5, "the address notice")
        assert notices.changed() is False
        ip("-n", segment.tally, "route", "add", "default", "via", STRANGER)
        assert wait_for(lambda: notices.changed() or None, 5, "the route notice")
        # another namespace's changes are not this one's
        ip("-n", segment.other, "addr", "add", "fd00:20::66/64", "dev", "eth0", "nodad")
        time.sleep(0.5)  # time for a notice that should not come
        assert notices.changed() is False
    finally:
        notices.close()


def test_addresses_are_looked_at_on_notice_at_once_but_not_again_within_the_gap() -> None:
    """A notice after a quiet spell is looked at by the next tick; once a look found a
    change, further notices wait out the gap (short-lived prefixes advertised every
    second would otherwise make a reload and an alert every second); the poll runs
    every gap whatever comes."""
    looks = AddressLooks(0.0, 10.0)
    assert looks.due(5.0) is None
    assert looks.due(10.0) == "poll"
    looks.noticed(12.0)
    assert looks.due(12.0) == "notice"  # quiet before: at once
    looks.changed(12.0)
    looks.noticed(13.0)  # the next change, a second later
    assert looks.due(13.0) is None and looks.due(21.9) is None
    assert looks.due(22.0) == "notice"  # the gap after the change found
    looks.noticed(40.0)  # a notice that found nothing new leaves no wait behind it
    assert looks.due(40.0) == "notice"
    looks.noticed(41.0)
    assert looks.due(41.0) == "notice"
    assert looks.due(50.9) is None and looks.due(51.0) == "poll"


@pytest.mark.root
def test_the_kernel_names_the_capture_interfaces_gateways(segment: Segment) -> None:
    ip("-n", segment.tally, "route", "add", "default", "via", STRANGER)
    ip("-n", segment.tally, "-6", "route", "add", "default", "via", segment.other_ll, "dev",
       segment.dev)
    gws = in_netns(segment.tally, lambda: local_gateways([segment.dev]))
    assert gws == [ipaddress.ip_address(STRANGER), ipaddress.ip_address(segment.other_ll)]
    assert in_netns(segment.tally, lambda: local_gateways(["lo"])) == []
    # an address whose duplicate-address detection failed is not the server's own
    sysctl(segment.tally, f"net.ipv6.conf.{segment.dev}.accept_dad", "1")
    sysctl(segment.other, "net.ipv6.conf.eth0.accept_dad", "1")
    ip("-n", segment.other, "addr", "add", "fd00:20::77/64", "dev", "eth0", "nodad")
    ip("-n", segment.tally, "addr", "add", "fd00:20::77/64", "dev", segment.dev)
    wait_for(lambda: "dadfailed" in subprocess.run(
        ["ip", "-n", segment.tally, "-6", "addr", "show", "dev", segment.dev],
        capture_output=True, text=True, check=True).stdout or None, 10, "DAD to fail")
    mine = in_netns(segment.tally, lambda: local_addresses([segment.dev]))
    assert ipaddress.ip_address("fd00:20::77") not in mine
    assert ipaddress.ip_address(segment.tally_ll) in mine


def _serve(ns: str, port: int) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET6)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        s.listen(16)
        return s

    srv = in_netns(ns, make)

    def accept() -> None:
        while True:
            try:
                srv.accept()[0].close()
            except OSError:
                return

    threading.Thread(target=accept, name=f"serve-{port}", daemon=True).start()
    return srv


def _start(segment: Segment, tmp: Path, cfg: Path
           ) -> tuple[NotifySocket, Path, Any, subprocess.Popen[bytes]]:
    """``sentinel run`` in the tally namespace: its notify socket, log path, open log
    file and process."""
    notify = NotifySocket(tmp / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    log_path = tmp / "sentinel.log"
    log = log_path.open("w")
    daemon = subprocess.Popen(["ip", "netns", "exec", segment.tally, SENTINEL, "run", "-c",
                               str(cfg)], env=env, stdout=log, stderr=subprocess.STDOUT)
    return notify, log_path, log, daemon


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_scan_and_a_database_connection_over_link_local_ipv6_are_alerts(
        segment: Segment, tmp_path: Path) -> None:
    # the journal key exists, as at an installed site: the first start makes it, and the
    # next reload then watches it, which rebuilds the sources for that reason alone
    key = tmp_path / "j.key"
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)
    notify, log_path, log, daemon = _start(segment, tmp_path, _config(tmp_path, segment.dev))
    db = _serve(segment.tally, 5432)

    def to(port: int) -> None:
        def go() -> None:
            index = socket.if_nametoindex("eth0")
            with socket.socket(socket.AF_INET6) as s, contextlib.suppress(OSError):
                s.settimeout(1)
                s.connect((segment.tally_ll, port, 0, index))
        in_netns(segment.other, go)

    def alert(rule: str, where: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            journal = tmp_path / "state" / "alerts.jsonl"
            lines = journal.read_text().splitlines() if journal.exists() else []
            return next((a for a in (json.loads(x)["alert"] for x in lines)
                         if a["rule"] == rule and where(a["event"])), None)
        return wait_for(find, 30, f"alert {rule}")

    try:
        notify.wait_for("READY=1", timeout=60)
        to(5432)  # accepted: the stranger reached the tally database
        for port in range(6000, 6020):  # refused: a port scan
            to(port)
        reached = alert("tally-db-unauthorized-access",
                        lambda e: e["src_ip"] == segment.other_ll)
        assert reached["severity"] == "critical"
        assert reached["event"]["dst_ip"] == segment.tally_ll
        assert reached["event"]["direction"] == "inbound"
        scan = alert("port-scan-of-tally-server", lambda e: e["src_ip"] == segment.other_ll)
        assert scan["severity"] == "high"

        # an address that arrives while the daemon runs (autoconfiguration, renumbering)
        # is counted within ADDRESS_CHECK seconds, through a reload
        ip("-n", segment.tally, "addr", "add", "fd00:20::10/64", "dev", segment.dev, "nodad")
        ip("-n", segment.other, "addr", "add", "fd00:20::66/64", "dev", "eth0", "nodad")
        wait_for(lambda: '"reloaded"' in log_path.read_text() or None, 40, "a reload")

        def to_new() -> None:
            with socket.socket(socket.AF_INET6) as s, contextlib.suppress(OSError):
                s.settimeout(1)
                s.connect(("fd00:20::10", 5432))
        in_netns(segment.other, to_new)
        later = alert("tally-db-unauthorized-access", lambda e: e["dst_ip"] == "fd00:20::10")
        assert later["event"]["src_ip"] == "fd00:20::66"
        # the reload is the daemon's own: information naming the address, no config change
        told = alert("sentinel-addresses-changed",
                     lambda e: e["addresses_added"] == ["fd00:20::10"])
        assert told["severity"] == "info"
        journal = (tmp_path / "state" / "alerts.jsonl").read_text()
        assert '"sentinel-config-changed"' not in journal
    finally:
        db.close()
        daemon.terminate()
        daemon.wait(timeout=20)
        log.close()
        notify.close()
    assert daemon.returncode == 0
    text = log_path.read_text()
    assert "Traceback" not in text
    learned = [json.loads(x) for x in text.splitlines()
               if x.startswith("{") and '"own_addresses_added"' in x]
    # one line at start, one when the new address joined
    assert [sorted(x["addresses"]) for x in learned] == [
        [segment.tally_ll], sorted([segment.tally_ll, "fd00:20::10"])]
    # the kernel's notice brought it in at the next tick, not the 10-second poll
    changed = [json.loads(x) for x in text.splitlines()
               if x.startswith("{") and '"own_addresses_changed"' in x]
    assert [x["via"] for x in changed] == ["notice"]
    # taken in place: the capture opened once and was never restarted for it
    started = [x for x in text.splitlines() if '"capture_started"' in x]
    assert len(started) == 1, started


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_neighbour_advertisement_claiming_the_learned_ipv6_gateway_is_gateway_spoofing(
        segment: Segment, tmp_path: Path) -> None:
    """The tally server routes IPv6 through the other host's link-local address, which
    the config does not name: sentinel learns it as the gateway, and a neighbour
    advertisement that claims it for another MAC is the critical gateway-spoofing
    alert, not the medium one for any address."""
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
    from scapy.layers.l2 import Ether

    ip("-n", segment.tally, "-6", "route", "add", "default", "via", segment.other_ll, "dev",
       segment.dev)
    # the router's own MAC is the gateway's; the config names no IPv6 gateway address
    cfg = _config(tmp_path, segment.dev, lists={"gateway_mac": ["02:00:00:00:00:66"]})
    notify, log_path, log, daemon = _start(segment, tmp_path, cfg)
    evil = "02:00:00:00:09:99"
    claim = (Ether(src=evil, dst="02:00:00:00:00:10")
             / IPv6(src=segment.other_ll, dst=segment.tally_ll)
             / ICMPv6ND_NA(tgt=segment.other_ll, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=evil))
    journal = tmp_path / "state" / "alerts.jsonl"

    def spoofed() -> dict[str, Any] | None:
        lines = journal.read_text().splitlines() if journal.exists() else []
        return next((a for a in (json.loads(x)["alert"] for x in lines)
                     if a["rule"] == "ndp-gateway-spoofed"), None)
    try:
        notify.wait_for("READY=1", timeout=60)
        send_frames(segment.other, "eth0", [bytes(claim)])
        got = wait_for(spoofed, 30, "the gateway-spoofing alert")
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
        log.close()
        notify.close()
    assert got["severity"] == "critical"
    assert (got["event"]["target_ip"], got["event"]["mac"]) == (segment.other_ll, evil)
    text = log_path.read_text()
    learned = [json.loads(x) for x in text.splitlines()
               if x.startswith("{") and '"gateways_added"' in x]
    assert [x["gateways"] for x in learned] == [[segment.other_ll]]
