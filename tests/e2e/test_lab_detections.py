"""Every detection of the rule pack, performed live against `sentinel run` in the lab.

Real connections, DNS queries, ARP frames and file edits on the reference site;
each alert must reach the right webhook(s) with a valid signature (checked by the
independent ``standardwebhooks`` package), and at the end the journal verifies,
Prometheus has seen ``sentinel_alerts_total`` move and Alertmanager holds the
alerts it was sent.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.l2 import ARP, Ether

from tests.e2e.lab import TALLY, Lab, needs_lab, wait_for
from tests.sources.net.netkit import send_frames

ATTACKER_MAC = "02:00:00:00:00:66"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    needs_lab()
    with Lab(tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def expect(lab: Lab, rule: str, severity: str, to: str,
           where: Callable[[dict[str, Any]], bool] = lambda a: True) -> dict[str, Any]:
    """The alert of ``rule`` arrives, signed, at exactly the receivers in ``to``
    (``b`` the supervisory body, ``m`` the ministry; empty: the journal only)."""
    named = {"b": lab.bawaslu, "m": lab.ministry}
    if to:
        alerts = [lab.wait_alert(named[n], rule, where=where) for n in to]
    else:
        alerts = [journal_alert(lab, rule, where)]
    assert all(a["severity"] == severity for a in alerts), alerts
    if set(named) - set(to):
        # an absence means something only once an alert raised later has arrived
        marker(lab)
    for n, r in named.items():
        if n not in to:
            assert not [a for a in lab.alerts_at(r) if a["rule"] == rule and where(a)], (
                f"{rule} reached {n}")
    return alerts[0]


_MARKERS = itertools.count(1)


def marker(lab: Lab) -> None:
    """An alert every receiver takes (critical, network), raised now and waited for at
    both: each lane delivers in order, so once it has arrived, any alert routed to that
    receiver before it has arrived too, and a missing one was not routed there."""
    src = f"10.20.6.{next(_MARKERS)}"
    connect_from(lab, "attacker", TALLY, 5432, src=src)
    for receiver in (lab.bawaslu, lab.ministry):
        lab.wait_alert(receiver, "tally-db-unauthorized-access",
                       where=lambda a: a["event"]["src_ip"] == src)


def journal_alert(lab: Lab, rule: str, where: Callable[[dict[str, Any]], bool],
                  timeout: float = 20.0) -> dict[str, Any]:
    import json

    def find() -> dict[str, Any] | None:
        for line in (lab.state / "alerts.jsonl").read_text().splitlines():
            a = json.loads(line)["alert"]
            if a["rule"] == rule and where(a):
                return dict(a)
        return None
    return wait_for(find, timeout, f"{rule} in the journal")


def connect_from(lab: Lab, host: str, dst: str, port: int, src: str | None = None) -> None:
    def go() -> None:
        with socket.socket() as s:
            s.settimeout(1)
            if src:
                s.bind((src, 0))
            # a refused or unanswered SYN is still a connection attempt
            with contextlib.suppress(OSError):
                s.connect((dst, port))
    lab.on(host, go)


def dns_query(name: str, qtype: str = "A") -> None:
    """From the tally server (the test's own namespace) to the site resolver."""
    q = bytes(DNS(id=7, rd=1, qd=DNSQR(qname=name, qtype=qtype)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(q, ("10.20.0.2", 53))


def arp_reply(lab: Lab, ip: str, mac: str) -> None:
    frame = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=2, hwsrc=mac, psrc=ip, hwdst="ff:ff:ff:ff:ff:ff", pdst=ip)
    send_frames(lab.net.ns("attacker"), "eth0", [bytes(frame)])


# -- network detections -----------------------------------------------------------


def test_1_tally_db_reached_by_a_stranger(lab: Lab) -> None:
    connect_from(lab, "attacker", TALLY, 5432)
    a = expect(lab, "tally-db-unauthorized-access", "critical", "bm")
    assert a["event"]["src_ip"] == "10.20.0.66"
    assert a["event"]["dst_port"] == 5432


def test_1_app_server_reaching_the_db_is_normal(lab: Lab) -> None:
    connect_from(lab, "app", TALLY, 5432)
    connect_from(lab, "attacker", TALLY, 5432, src="10.20.5.7")  # a marker after it
    expect(lab, "tally-db-unauthorized-access", "critical", "bm",
           where=lambda a: a["event"]["src_ip"] == "10.20.5.7")
    assert not [a for a in lab.alerts_at(lab.bawaslu)
                if a["rule"] == "tally-db-unauthorized-access"
                and a["event"]["src_ip"] == "10.20.0.11"]


def test_2_ssh_from_outside_the_admin_network(lab: Lab) -> None:
    connect_from(lab, "client", TALLY, 22)
    a = expect(lab, "ssh-from-outside-admin-net", "high", "bm")
    assert a["event"]["src_ip"] == "10.20.0.50"


def test_3_outbound_to_a_destination_not_allowed(lab: Lab) -> None:
    connect_from(lab, "tally", "198.51.100.23", 443)
    a = expect(lab, "tally-outbound-unexpected-destination", "high", "bm")
    assert a["event"]["direction"] == "outbound"
    assert a["event"]["dst_ip"] == "198.51.100.23"


def test_3_outbound_to_an_unexpected_internal_host(lab: Lab) -> None:
    connect_from(lab, "tally", "10.20.0.66", 8000)
    a = expect(lab, "tally-outbound-unexpected-internal", "medium", "m")
    assert a["event"]["dst_ip"] == "10.20.0.66"


def test_4_dns_name_outside_the_allowed_domains(lab: Lab) -> None:
    dns_query("www.kpu.go.id")  # allowed: must not alert
    dns_query("results.evil-mirror.example")
    a = expect(lab, "dns-query-outside-allowed-domains", "medium", "m")
    assert a["event"]["qname"] == "results.evil-mirror.example"
    # the allowed name was asked first: had it alerted, that alert would be here by now
    assert not [x for x in lab.alerts_at(lab.ministry)
                if x["rule"] == "dns-query-outside-allowed-domains"
                and x["event"]["qname"] == "www.kpu.go.id"]


def test_4_dns_tunnel_long_label(lab: Lab) -> None:
    dns_query("a" * 60 + ".t.tunnel.example")
    a = expect(lab, "dns-tunnel-long-label", "high", "bm")
    assert a["event"]["qname"].startswith("a" * 60)


def test_5_port_scan_of_the_tally_server(lab: Lab) -> None:
    for port in range(1000, 1020):
        connect_from(lab, "attacker", TALLY, port)
    a = expect(lab, "port-scan-of-tally-server", "high", "bm")
    assert a["count"] >= 15


def test_5_host_sweep_seen_as_arp_requests(lab: Lab) -> None:
    frames = [bytes(Ether(src=ATTACKER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=ATTACKER_MAC, psrc="10.20.0.66", pdst=f"10.20.2.{i}")) for i in range(1, 31)]
    send_frames(lab.net.ns("attacker"), "eth0", frames)
    a = expect(lab, "arp-sweep", "high", "bm")
    assert a["count"] >= 25


def test_6_gateway_address_claimed_by_another_mac(lab: Lab) -> None:
    arp_reply(lab, "10.20.0.1", ATTACKER_MAC)
    a = expect(lab, "arp-gateway-spoofed", "critical", "bm")
    assert a["event"]["sender_mac"] == ATTACKER_MAC


def test_6_an_address_changing_mac(lab: Lab) -> None:
    arp_reply(lab, "10.20.0.77", "02:00:00:00:00:77")
    arp_reply(lab, "10.20.0.77", "02:00:00:00:07:77")
    a = expect(lab, "arp-address-changed-mac", "medium", "m")
    assert a["event"]["sender_mac"] == "02:00:00:00:07:77"


def test_7_cleartext_admin_protocol(lab: Lab) -> None:
    # an accepted telnet session (a SYN answered by a reset sends no credentials: that
    # is the scan rules' business): the tally server's admin telnets out to a host
    def listen() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 23))
        s.listen(4)
        return s

    srv = lab.on("gw", listen)
    try:
        connect_from(lab, "tally", "198.51.100.23", 23)
        a = expect(lab, "cleartext-admin-protocol", "high", "bm")
        assert a["event"]["dst_port"] == 23 and a["event"]["kind"] == "net.established"
    finally:
        srv.close()


def test_8_large_outbound_transfer(lab: Lab) -> None:
    chunk = b"\0" * (1 << 20)
    with socket.create_connection(("198.51.100.23", 8080), timeout=5) as s:
        for _ in range(60):  # 60 MiB: over the 50 MB in 5 minutes
            s.sendall(chunk)
    a = expect(lab, "tally-large-upload", "high", "bm")
    assert a["threshold"]["value"] >= 50_000_000
    assert a["group"] == {"dst_ip": "198.51.100.23"}


def test_9_tally_server_answering_on_a_port_it_does_not_offer(lab: Lab) -> None:
    srv = socket.socket()
    srv.bind(("0.0.0.0", 8081))
    srv.listen(1)
    try:
        connect_from(lab, "client", TALLY, 8081)
        a = expect(lab, "tally-unexpected-listening-port", "high", "bm")
        assert a["event"]["src_port"] == 8081
    finally:
        srv.close()


def test_10_web_app_from_outside_the_counting_network(lab: Lab) -> None:
    connect_from(lab, "client", TALLY, 443)  # the counting network: normal
    connect_from(lab, "attacker", TALLY, 443, src="10.20.5.7")
    a = expect(lab, "tally-web-from-outside-counting-net", "medium", "m")
    assert a["event"]["src_ip"] == "10.20.5.7"


# -- file detections ------------------------------------------------------------------


def test_11_tally_binary_modified(lab: Lab) -> None:
    binary = lab.path("opt/tally/bin/tally-server")
    binary.write_bytes(b"\x7fELF tally server build 1 (patched)\n")
    a = expect(lab, "tally-binary-tampered", "critical", "bm",
               where=lambda a: a["event"]["path"] == str(binary))
    assert a["event"]["kind"] == "fim.modified"
    assert a["event"]["offline"] is False


def test_12_tally_config_changed(lab: Lab) -> None:
    conf = lab.path("etc/tally/tally.conf")
    conf.write_text("mode = recount\n")
    a = expect(lab, "tally-config-changed", "high", "b",
               where=lambda a: a["event"]["path"] == str(conf))
    assert "content" in a["event"]["changed"]


def test_13_result_export_modified_but_new_results_are_normal(lab: Lab) -> None:
    results = lab.path("var/lib/tally/results")
    (results / "tps-0002.json").write_text('{"votes": 2}\n')
    old = results / "tps-0001.json"
    old.write_text('{"votes": 1000}\n')
    a = expect(lab, "tally-results-altered", "critical", "bm",
               where=lambda a: a["event"]["path"] == str(old))
    assert a["event"]["sha256_before"] != a["event"]["sha256_after"]
    assert not [x for x in lab.alerts_at(lab.bawaslu)
                if x["event"].get("path") == str(results / "tps-0002.json")]


def test_14_accounts_changed(lab: Lab) -> None:
    passwd = lab.path("etc/passwd")
    passwd.write_text(passwd.read_text() + "backdoor:x:0:0::/root:/bin/sh\n")
    expect(lab, "accounts-changed", "high", "b",
           where=lambda a: a["event"]["path"] == str(passwd))


def test_15_ssh_authorized_keys_changed(lab: Lab) -> None:
    keys = lab.path("root/.ssh/authorized_keys")
    keys.write_text(keys.read_text() + "ssh-ed25519 AAAA intruder\n")
    expect(lab, "ssh-access-changed", "high", "b",
           where=lambda a: a["event"]["path"] == str(keys))


def test_16_new_cron_entry(lab: Lab) -> None:
    cron = lab.path("etc/cron.d/update")
    cron.write_text("* * * * * root /tmp/x\n")
    expect(lab, "persistence-cron-or-service", "high", "b",
           where=lambda a: a["event"]["path"] == str(cron))


def test_17_new_setuid_file(lab: Lab) -> None:
    f = lab.path("var/lib/tally/results/helper")
    f.write_bytes(b"#!/bin/sh\n")
    f.chmod(0o4755)
    expect(lab, "new-executable-or-setuid", "critical", "bm",
           where=lambda a: a["event"]["path"] == str(f))


def test_18_permissions_changed(lab: Lab) -> None:
    conf = lab.path("etc/tally/tally.conf")
    conf.chmod(0o666)
    a = expect(lab, "file-permissions-changed", "medium", "",
               where=lambda a: a["event"]["path"] == str(conf))
    assert a["event"]["mode_after"].endswith("666")


# -- the evidence trail -------------------------------------------------------------------


def test_journal_prometheus_and_alertmanager_agree(lab: Lab) -> None:
    """Runs after the scenarios: the journal verifies, Prometheus counted the alerts and
    Alertmanager holds the high and critical ones."""
    res = lab.journal_verify()
    assert res.returncode == 0, res.stdout + res.stderr
    seen = lab.prometheus.wait_for(
        'sentinel_alerts_total{rule="tally-db-unauthorized-access"}',
        lambda r: bool(r) and max(r.values()) >= 1)
    assert seen
    crit = lab.prometheus.wait_for('sum(sentinel_alerts_total{severity="critical"})',
                                   lambda r: bool(r) and max(r.values()) >= 5)
    assert crit

    def held() -> set[str]:
        return {a["labels"]["alertname"] for a in lab.alertmanager.alerts()}

    wait_for(lambda: {"tally-db-unauthorized-access", "tally-binary-tampered",
                      "ssh-from-outside-admin-net"} <= held(), 30, "alerts in Alertmanager")
    one = next(a for a in lab.alertmanager.alerts()
               if a["labels"]["alertname"] == "tally-db-unauthorized-access")
    assert one["labels"]["host"] == "tally-01"
    assert one["labels"]["severity"] == "critical"
    assert one["labels"]["site"] == "lab"
    assert all(r.signature_ok for r in [*lab.bawaslu.delivered(), *lab.ministry.delivered()])


def test_sentinel_check_passes_on_the_lab_config(lab: Lab) -> None:
    proc = subprocess.run([str(Path(sys.executable).with_name("sentinel")), "check", "-c",
                           str(lab.config)], env={**os.environ, **lab.daemon.env},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_contract_metric_is_exported_and_moved(lab: Lab) -> None:
    """After the scenarios, the running daemon's exposition has every metric of
    CONTRACT §6, and those the scenarios exercise have moved."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{lab.metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            name = series.split("{", 1)[0]
            samples[name] = samples.get(name, 0.0) + float(value)
    moved = ["sentinel_events_total", "sentinel_alerts_total", "sentinel_packets_total",
             "sentinel_fim_watched_files", "sentinel_rules_loaded",
             "sentinel_deliveries_total", "sentinel_rule_eval_seconds_count",
             "sentinel_build_info"]
    present = ["sentinel_packets_dropped_total", "sentinel_decode_errors_total",
               "sentinel_fim_rescans_total", "sentinel_config_reloads_total",
               "sentinel_config_last_reload_success", "sentinel_delivery_queue_depth",
               "sentinel_delivery_oldest_pending_seconds", "sentinel_rule_eval_seconds_bucket"]
    for name in moved:
        assert samples.get(name, 0) > 0, f"{name} did not move"
    for name in present:
        assert name in samples, f"{name} is not exported"
    assert samples["sentinel_fim_rescans_total"] >= 1  # the startup reconciliation
