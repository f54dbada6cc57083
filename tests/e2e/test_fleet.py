"""A fleet against a real three-node Alertmanager cluster.

Twenty sentinels (``sentinel replay --deliver`` processes, each with its own
config, host, site, state dir and its own capture of a different mix of
attacks) send every alert to all three nodes, as the HA guide asks. One real
webhook receiver sits behind the cluster. The cluster must notify each
(site, rule) exactly once although each alert reached every node, and killing
the node that does the notifying halfway through must change nothing that was
delivered, nor stop what comes after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet
from scapy.utils import wrpcap

from tests.e2e.alertmanager_cluster import PEER_TIMEOUT, Cluster, Node, WebhookReceiver, wait_for

pytestmark = pytest.mark.slow

SITES = 20
BATCH = 5  # replays at once: two cores cope, the cluster still sees concurrent senders
GROUP_WAIT = 1.0
GROUP_INTERVAL = 1.0
T0 = 1_707_890_400.0

TALLY, GW, DNS_IP = "10.20.0.10", "10.20.0.1", "10.20.0.2"
M_TALLY, M_GW, M_ROGUE, M_PEER = ("02:00:00:00:00:10", "02:00:00:00:00:01",
                                  "02:00:00:00:00:66", "02:00:00:00:00:50")

AM_CONFIG = f"""\
route:
  receiver: soc
  group_by: [site, alertname]
  group_wait: {GROUP_WAIT:g}s
  group_interval: {GROUP_INTERVAL:g}s
  repeat_interval: 1h
receivers:
  - name: soc
    webhook_configs:
      - url: RECEIVER/notify
        send_resolved: false
"""

RULES = """\
rules:
  - id: tally-db-unauthorized-access
    title: "Tally database reached from {src_ip}"
    severity: critical
    kind: net.connection
    match: {dst_ip: {in: tally_server}, dst_port: 5432, src_ip: {not_in: app_server}}
  - id: gateway-arp-spoof
    title: someone else claims the gateway
    severity: critical
    kind: net.arp
    match: {sender_ip: {in: gateway_ip}, sender_mac: {not_in: gateway_mac}}
  - id: ssh-from-outside-admin-net
    title: "SSH to the tally server from {src_ip}"
    severity: high
    kind: net.connection
    match: {dst_ip: {in: tally_server}, dst_port: 22, src_ip: {not_cidr: admin_net}}
  - id: outbound-unexpected-destination
    title: "the tally server connected to {dst_ip}"
    severity: high
    kind: net.connection
    match: {direction: outbound, dst_internal: false, dst_ip: {not_in: central_servers}}
  - id: dns-unapproved-domain
    title: "DNS query for {qname}"
    severity: medium
    kind: net.dns
    match: {is_response: false, qname: {not_domain_in: allowed_domains}}
  - id: tally-synack-unoffered-port
    title: the tally server answered on a port it does not offer
    severity: medium
    kind: net.tcp_synack
    match: {src_ip: {in: tally_server}, src_port: {not_in: tally_services}}
"""

LISTS = """\
lists:
  tally_server: [10.20.0.10]
  app_server: [10.20.0.11]
  gateway_ip: [10.20.0.1]
  gateway_mac: ["02:00:00:00:00:01"]
  admin_net: [10.20.1.0/28]
  central_servers: [203.0.113.50]
  allowed_domains: [kpu.go.id]
  tally_services: [22, 443, 5432]
"""


def _eth(src_mac: str, dst_mac: str) -> Packet:
    # explicit MACs: scapy must not look addresses up (no packet leaves this test)
    return Ether(src=src_mac, dst=dst_mac)


def _handshake(src: str, sport: int, dst: str, dport: int) -> list[Packet]:
    ms, md = (M_TALLY, M_PEER) if src == TALLY else (M_PEER, M_TALLY)
    return [_eth(ms, md) / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S"),
            _eth(md, ms) / IP(src=dst, dst=src) / TCP(sport=dport, dport=sport, flags="SA")]


#: Each attack and the rule it must raise.
ATTACKS: list[tuple[str, list[Packet]]] = [
    ("tally-db-unauthorized-access", _handshake("10.20.0.77", 41000, TALLY, 5432)),
    ("gateway-arp-spoof", [_eth(M_ROGUE, M_TALLY) / ARP(op=2, psrc=GW, hwsrc=M_ROGUE,
                                                          pdst=TALLY, hwdst=M_TALLY)]),
    ("ssh-from-outside-admin-net", _handshake("10.20.0.50", 41001, TALLY, 22)),
    ("outbound-unexpected-destination", _handshake(TALLY, 45000, "198.51.100.9", 4444)),
    ("dns-unapproved-domain", [_eth(M_TALLY, M_GW) / IP(src=TALLY, dst=DNS_IP)
                               / UDP(sport=53000, dport=53)
                               / DNS(id=7, rd=1, qd=DNSQR(qname="exfil.attacker.example"))]),
    ("tally-synack-unoffered-port", _handshake("10.20.0.50", 41002, TALLY, 8080)),
]


def site_attacks(i: int) -> list[int]:
    """A different, non-empty mix of the attacks for each of the 20 sites."""
    mask = ((i + 1) * 11) % 64  # 11 is odd: distinct non-zero masks for i < 63
    return [k for k in range(len(ATTACKS)) if mask >> k & 1]


def make_site(root: Path, i: int, urls: list[str]) -> tuple[str, Path, Path]:
    """(site name, config, pcap) of the i-th sentinel."""
    site = f"site-{i:02d}"
    home = root / site
    home.mkdir()
    packets: list[Packet] = [p for k in site_attacks(i) for p in ATTACKS[k][1]]
    for n, p in enumerate(packets):
        p.time = T0 + n * 0.5
    pcap = home / "capture.pcap"
    wrpcap(str(pcap), packets)
    cfg = home / "config.yaml"
    cfg.write_text(
        f"host: {{name: tally-{site}, addresses: [{TALLY}], site: {site},"
        f" region: region-{i % 4}}}\n"
        f"state_dir: {home / 'state'}\n"
        "network: {home_nets: [10.20.0.0/16]}\n"
        f"rules: {{paths: [{root / 'rules.yaml'}]}}\n" + LISTS +
        "outputs:\n"
        "  journal: {fsync: none}\n"
        "  webhooks:\n"
        f"    - {{name: am-cluster, format: alertmanager, url: {json.dumps(urls)},"
        " timeout: 2s, retry: {initial: 100ms, max: 1s}}\n")
    return site, cfg, pcap


def replay(sites: list[tuple[str, Path, Path]], drain: float = 30.0) -> set[tuple[str, str]]:
    """Run the sentinels BATCH at a time; the (site, rule) of every alert they printed.

    ``drain``: how long each waits for its lanes (--drain-timeout). With a node dead,
    that node's lane never drains and each replay waits all of it, the alerts staying
    spooled for it; the live nodes' lanes drain within a second or two."""
    raised: set[tuple[str, str]] = set()
    for b in range(0, len(sites), BATCH):
        procs = [(site, subprocess.Popen(
            [sys.executable, "-m", "sentinel", "replay", "-c", str(cfg), "--deliver",
             "--drain-timeout", f"{drain:g}", str(pcap)], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=cfg.parent))
            for site, cfg, pcap in sites[b:b + BATCH]]
        for site, p in procs:
            out, err = p.communicate(timeout=90)
            assert p.returncode == 0, f"{site}: {err}"
            raised |= {(site, json.loads(line)["rule"]) for line in out.splitlines()}
    return raised


def held(node: Node) -> set[tuple[str, str]]:
    return {(a["labels"]["site"], a["labels"]["alertname"]) for a in node.alerts()}


def notified(rx: WebhookReceiver) -> Counter[tuple[str, str]]:
    return Counter((lab["site"], lab["alertname"]) for lab in rx.firing())


def settle(rx: WebhookReceiver, nodes: int) -> None:
    """Wait out the window in which a duplicate could still be sent.

    The node at position p notifies only after group_wait + p x peer_timeout,
    and only what the gossiped notification log lacks; past that (plus a
    group_interval and a margin for a loaded machine) a duplicate would have
    arrived. Polls so that one fails at once.
    """
    deadline = time.monotonic() + GROUP_WAIT + (nodes - 1) * PEER_TIMEOUT \
        + 2 * GROUP_INTERVAL + 3.0
    while time.monotonic() < deadline:
        dup = {k: n for k, n in notified(rx).items() if n > 1}
        assert not dup, f"notified more than once: {dup}"
        time.sleep(0.2)


def test_every_alert_notified_once_by_the_cluster_and_a_dead_node_changes_nothing(
        tmp_path: Path) -> None:
    with WebhookReceiver() as rx, \
            Cluster(tmp_path / "am", AM_CONFIG.replace("RECEIVER", rx.url)) as nodes:
        (tmp_path / "rules.yaml").write_text(RULES)
        sites = [make_site(tmp_path, i, [n.url for n in nodes]) for i in range(SITES)]
        first, second = sites[:SITES // 2], sites[SITES // 2:]

        raised1 = replay(first)
        # the captures hold what each site was meant to see
        assert raised1 == {(s, ATTACKS[k][0]) for i, (s, _, _) in enumerate(first)
                           for k in site_attacks(i)}
        for n in nodes:  # every sentinel reached every node itself, before it exited
            assert held(n) == raised1, f"node {n.url} lacks alerts replay --deliver printed"
        wait_for("a notification for every first-half alert",
                 lambda: set(notified(rx)) == raised1)
        settle(rx, len(nodes))
        assert notified(rx) == dict.fromkeys(raised1, 1)
        before = rx.received()

        victim = Cluster.sender(nodes)  # the node that has been notifying
        victim.kill()
        survivors = [n for n in nodes if n is not victim]
        # each node's place in the sending order (how long it waits before notifying what
        # the others have not) comes from the members it counts; a count-out landing while
        # a group waits moves the survivors' places under it, and both can notify (seen
        # once on a loaded machine). A dead node, not a dying one: the second half starts
        # once both survivors count it out.
        for n in survivors:
            wait_for(f"alertmanager on {n.port} to count the killed node out",
                     lambda n=n: len(n.status()["cluster"]["peers"]) == len(nodes) - 1)

        raised2 = replay(second, drain=8.0)
        assert raised2 == {(s, ATTACKS[k][0]) for i, (s, _, _) in enumerate(second, SITES // 2)
                           for k in site_attacks(i)}
        for n in survivors:
            assert held(n) == raised1 | raised2, f"node {n.url}"
        wait_for("a notification for every alert of the fleet",
                 lambda: set(notified(rx)) == raised1 | raised2, timeout=40)
        settle(rx, len(nodes))
        assert notified(rx) == dict.fromkeys(raised1 | raised2, 1)
        # what was delivered before the kill is untouched, and nothing after it
        # repeats an alert of the first half
        after = rx.received()
        assert after[:len(before)] == before
        assert not {(lab["site"], lab["alertname"]) for _, n in after[len(before):]
                    for lab in (a["labels"] for a in n["alerts"])} & raised1


def test_replay_deliver_has_sent_every_alert_when_it_exits(tmp_path: Path) -> None:
    """``--deliver`` waits for the spool to drain: an alert printed is an alert sent."""
    with Cluster(tmp_path / "am", AM_CONFIG.replace("RECEIVER", "http://127.0.0.1:9"),
                 size=1) as (node,):
        (tmp_path / "rules.yaml").write_text(RULES)
        site = make_site(tmp_path, 28, [node.url])  # (28 + 1) * 11 % 64 == 63: all six
        raised = replay([site])
        assert len(raised) == len(ATTACKS)
        assert held(node) == raised


# -- the heartbeat: the central side sees a sentinel go ------------------------

HEARTBEAT_AM_CONFIG = """\
route:
  receiver: soc
  group_by: [site, alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    # docs/fleet.md: each host's always-firing heartbeat goes to the dead man's
    # switch; its resolve means the host's sentinel stopped talking
    - matchers: ['alertname="sentinel-heartbeat"']
      receiver: deadman
      group_by: [host]
      group_wait: 0s
      group_interval: 1s
      repeat_interval: 1h
receivers:
  - name: soc
  - name: deadman
    webhook_configs:
      - url: RECEIVER/deadman
        send_resolved: true
"""


def _sentinel(root: Path, host: str, urls: list[str]) -> subprocess.Popen[str]:
    """A real `sentinel run` that only delivers: its heartbeat every second."""
    from tests.test_daemon import NotifySocket

    home = root / host
    home.mkdir()
    (home / "rules").mkdir()
    cfg = home / "config.yaml"
    cfg.write_text(
        f"host: {{name: {host}, addresses: [{TALLY}], site: {host}}}\n"
        f"state_dir: {home / 'state'}\n"
        f"rules: {{paths: [{home / 'rules'}]}}\n"
        "outputs:\n"
        "  metrics: {enabled: false}\n"
        "  webhooks:\n"
        f"    - {{name: am-cluster, format: alertmanager, url: {json.dumps(urls)},"
        " heartbeat: 1s, resend_interval: 1s, resolve_after: 4s,"
        " timeout: 2s, retry: {initial: 100ms, max: 1s}}\n")
    notify = NotifySocket(home / "notify.sock")
    try:
        env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
        proc = subprocess.Popen([sys.executable, "-m", "sentinel", "run", "-c", str(cfg)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        notify.wait_for("READY=1")
    finally:
        notify.close()
    return proc


def _heartbeats(rx: WebhookReceiver, status: str) -> set[str]:
    return {a["labels"]["host"] for p, n in rx.received() if p == "/deadman"
            for a in n["alerts"] if a["status"] == status
            and a["labels"]["alertname"] == "sentinel-heartbeat"}


def test_the_central_side_sees_a_dead_sentinel_go_by_its_heartbeat(tmp_path: Path) -> None:
    """Two sentinels heartbeat to a three-node cluster; one is killed (no goodbye): the
    dead man's switch receiver gets its heartbeat resolved, the other's stays firing."""
    with WebhookReceiver() as rx, \
            Cluster(tmp_path / "am", HEARTBEAT_AM_CONFIG.replace("RECEIVER", rx.url)) as nodes:
        urls = [n.url for n in nodes]
        procs = {h: _sentinel(tmp_path, h, urls) for h in ("tally-a", "tally-b")}
        try:
            wait_for("both heartbeats firing at the dead man's switch",
                     lambda: _heartbeats(rx, "firing") == {"tally-a", "tally-b"})
            for n in nodes:  # every node holds both: any one of them can tell
                wait_for(f"node {n.url} to hold both heartbeats", lambda n=n: {
                    a["labels"]["host"] for a in n.alerts()
                    if a["labels"]["alertname"] == "sentinel-heartbeat"
                    and a["status"]["state"] == "active"} == {"tally-a", "tally-b"})
            assert _heartbeats(rx, "resolved") == set()
            procs["tally-a"].kill()  # a crash, a pulled plug: nothing is sent on the way out
            procs["tally-a"].wait(timeout=10)
            wait_for("tally-a's heartbeat resolved at the dead man's switch",
                     lambda: _heartbeats(rx, "resolved") == {"tally-a"}, timeout=40)
            still = {a["labels"]["host"] for a in nodes[0].alerts()
                     if a["labels"]["alertname"] == "sentinel-heartbeat"
                     and a["status"]["state"] == "active"}
            assert still == {"tally-b"}
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.terminate()
                    p.wait(timeout=20)
                p.communicate()
