"""The process behind a local connection: real processes, real sockets on loopback,
the real kernel's sock_diag and /proc; each reason a process cannot be named."""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ownerkit import Actor, connect_code, connection, listen_code, program, synack
from prometheus_client import CollectorRegistry

from sentinel.events import Event
from sentinel.metrics import Metrics
from sentinel.sources.net.owner import (
    CLOSED,
    LATE,
    OTHER_USER,
    QUEUE_FULL,
    RAW,
    UNAVAILABLE,
    ConnectionOwners,
)
from sentinel.sources.net.procs import ProcIndex

LO = "127.0.0.1"


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def owners(metrics: Metrics) -> Iterator[ConnectionOwners]:
    o = ConnectionOwners(metrics)
    o.start()
    yield o
    o.stop()


@pytest.fixture
def server() -> Iterator[socket.socket]:
    with socket.socket() as s:
        s.bind((LO, 0))
        s.listen(16)
        yield s


def outcome(metrics: Metrics, name: str) -> float:
    v = metrics.registry.get_sample_value("sentinel_connection_owner_lookups_total",
                                          {"outcome": name})
    return v or 0.0


def resolved(owners: ConnectionOwners, ev: Event) -> dict[str, object]:
    """``ev`` through the worker, as the live source sends it."""
    out: list[Event] = []
    owners.wrap(out.append)(ev)
    deadline = time.monotonic() + 5
    while not out and time.monotonic() < deadline:
        time.sleep(0.001)
    assert out, "the worker did not pass the event on"
    return out[0].to_dict()


def test_an_outbound_connection_names_its_program_pid_uid_and_command(
        owners: ConnectionOwners, server: socket.socket, tmp_path: Path,
        metrics: Metrics) -> None:
    exe = program(tmp_path, b"tally-uploader")
    actor = Actor(exe, connect_code(LO, server.getsockname()[1]), args=["--to", "vault"])
    try:
        got = resolved(owners, connection(LO, actor.port, LO, server.getsockname()[1]))
    finally:
        actor.end()
    assert got["process_exe"] == os.fsdecode(exe) and got["process_exe_b64"] is None
    assert got["process_pid"] == actor.pid and got["process_ppid"] == os.getpid()
    assert got["process_uid"] == os.getuid() and got["process_user"] == "root"
    assert str(got["process_command"]).endswith("--to vault")
    assert got["process_via"] == "socket" and got["process_unknown"] is None
    assert got["process"] == f"{os.fsdecode(exe)} (pid {actor.pid}, user root, uid 0)"
    assert outcome(metrics, "resolved") == 1


def test_a_program_with_hostile_bytes_in_its_name_is_named_losslessly(
        owners: ConnectionOwners, server: socket.socket, tmp_path: Path) -> None:
    name = b"upd\xff\nate\xe2\x80\xaetxt"  # not UTF-8, a newline, a bidi override
    exe = program(tmp_path, name)
    actor = Actor(exe, connect_code(LO, server.getsockname()[1]), args=[b"--to=\xfe\\x"])
    try:
        got = resolved(owners, connection(LO, actor.port, LO, server.getsockname()[1]))
    finally:
        actor.end()
    assert base64.b64decode(str(got["process_exe_b64"])) == exe
    assert str(got["process_exe"]).endswith("upd\\xff\nate\u202etxt")
    # the command line: a byte that is not UTF-8 and a backslash, each escaped
    assert str(got["process_command"]).endswith(" --to=\\xfe\\\\x")


def test_a_listening_port_is_named_by_the_listener_s_process(
        owners: ConnectionOwners, tmp_path: Path) -> None:
    exe = program(tmp_path, b"backdoor-4444")
    actor = Actor(exe, listen_code(LO))
    try:
        with socket.create_connection((LO, actor.port)) as c:
            got = resolved(owners, synack(LO, actor.port, LO, c.getsockname()[1]))
    finally:
        actor.end()
    assert got["process_exe"] == os.fsdecode(exe) and got["process_pid"] == actor.pid


def test_a_listener_closed_after_its_accept_is_named_by_the_accepted_socket(
        owners: ConnectionOwners, tmp_path: Path) -> None:
    """``nc -l`` closes its listener once it accepted: the SYN-ACK is then matched to
    the connection it accepted."""
    exe = program(tmp_path, b"nc-like")
    actor = Actor(exe, listen_code(LO, once=True))
    try:
        with socket.create_connection((LO, actor.port)) as c:
            deadline = time.monotonic() + 5
            # wait until the listener is gone (only the accepted socket is left)
            while time.monotonic() < deadline and _listening(actor.port):
                time.sleep(0.01)
            got = resolved(owners, synack(LO, actor.port, LO, c.getsockname()[1]))
    finally:
        actor.end()
    assert got["process_pid"] == actor.pid


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((LO, port)) == 0


def test_a_connection_whose_process_exited_says_the_socket_was_closed(
        owners: ConnectionOwners, server: socket.socket, metrics: Metrics) -> None:
    code = connect_code(LO, server.getsockname()[1]).replace("sys.stdin.read()", "")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, timeout=30)
    got = resolved(owners, connection(LO, int(p.stdout), LO, server.getsockname()[1]))
    assert got["process_unknown"] == CLOSED and got["process_pid"] is None
    assert got["process"] == f"not known ({CLOSED}; socket of user root, uid 0)"
    assert outcome(metrics, "socket_closed") == 1


def test_a_udp_sender_is_named(owners: ConnectionOwners, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind((LO, 0))
        code = ("import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                f"s.sendto(b'x',({LO!r},{sink.getsockname()[1]}))\n"
                "print(s.getsockname()[1],flush=True)\nsys.stdin.read()\n")
        actor = Actor(program(tmp_path, b"dns-tunnel"), code)
        try:
            got = resolved(owners, connection(LO, actor.port, LO, sink.getsockname()[1],
                                              proto="udp"))
        finally:
            actor.end()
    assert got["process_pid"] == actor.pid


def test_an_ipv6_connection_is_named(owners: ConnectionOwners, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET6) as srv:
        srv.bind(("::1", 0))
        srv.listen()
        actor = Actor(program(tmp_path, b"six"), connect_code("::1", srv.getsockname()[1]))
        try:
            got = resolved(owners, connection("::1", actor.port, "::1", srv.getsockname()[1]))
        finally:
            actor.end()
    assert got["process_pid"] == actor.pid


def test_a_crafted_probe_is_not_looked_up(owners: ConnectionOwners, metrics: Metrics) -> None:
    got = resolved(owners, connection(LO, 40000, LO, 80, probe=True, tcp_flags="F"))
    assert got["process_unknown"] == RAW and outcome(metrics, "raw_packet") == 1


def test_inbound_and_transit_connections_pass_untouched(owners: ConnectionOwners) -> None:
    ev = connection("10.20.5.7", 40000, "10.20.0.10", 22)
    ev.fields["direction"] = "inbound"
    got = resolved(owners, ev)
    assert "process_unknown" not in got and "process" not in got


def test_a_full_queue_sends_the_event_on_at_once_unattributed(metrics: Metrics) -> None:
    owners = ConnectionOwners(metrics, queue_size=1)  # worker not started: nothing drains
    out: list[Event] = []
    owners.submit(connection(LO, 1, LO, 2), out.append)
    owners.submit(connection(LO, 3, LO, 4), out.append)
    assert len(out) == 1 and out[0].fields["src_port"] == 3
    assert out[0].fields["process_unknown"] == QUEUE_FULL
    assert outcome(metrics, "queue_full") == 1


def test_a_lookup_past_its_deadline_says_so(metrics: Metrics, server: socket.socket,
                                            tmp_path: Path) -> None:
    ticks = itertools.count()  # every reading of the clock is a second later
    owners = ConnectionOwners(metrics, deadline=0.5, clock=lambda: float(next(ticks)))
    actor = Actor(program(tmp_path, b"slow"), connect_code(LO, server.getsockname()[1]))
    try:
        (got,) = owners.resolve([connection(LO, actor.port, LO, server.getsockname()[1])])
    finally:
        actor.end()
    assert got["process_unknown"] == LATE and got["process_uid"] == 0
    assert outcome(metrics, "deadline") == 1


def test_a_flood_of_misses_costs_at_most_one_full_proc_pass_per_interval() -> None:
    now = [100.0]
    index = ProcIndex(scan_interval=0.1, clock=lambda: now[0])
    nowhere = 2**40  # an inode no process holds: every search is a whole pass
    stopped = [index.find([nowhere], deadline=float("inf")).stopped for _ in range(200)]
    assert "budget" in stopped
    passes = index.full_scans
    assert all(s == "budget" for s in stopped[stopped.index("budget"):])
    now[0] += 0.1  # one interval later: one more whole pass is allowed, not more
    assert index.find([nowhere], deadline=float("inf")).stopped is None
    assert index.full_scans == passes + 1
    assert passes >= 1  # the budget at start is at least one whole pass


def test_after_pids_wrap_the_newest_process_is_searched_first(tmp_path: Path) -> None:
    """A /proc laid out as after a wrap past pid_max: the kernel gave pid 7 last, so 7
    is the newest, though pids 32000 and 31000 are larger. The search reads 7 first
    and stops there; the older processes' descriptors are never read."""
    for pid, inode in ((7, 111), (31000, 222), (32000, 333)):
        (tmp_path / str(pid) / "fd").mkdir(parents=True)
        os.symlink(f"socket:[{inode}]", tmp_path / str(pid) / "fd" / "3")
    (tmp_path / "loadavg").write_text("0.10 0.20 0.30 1/90 7\n")
    index = ProcIndex(str(tmp_path))
    got = index.find([111], deadline=float("inf"))
    assert got.found == {111: (7, 3)} and got.stopped is None
    assert index.owner(222) is None and index.owner(333) is None  # never read
    # without the kernel's word, the largest pid is taken as the newest
    (tmp_path / "loadavg").unlink()
    index = ProcIndex(str(tmp_path))
    assert index.find([111], deadline=float("inf")).found == {111: (7, 3)}
    assert index.owner(333) == (32000, 3) and index.owner(222) == (31000, 3)


def test_another_user_s_process_is_not_named_without_cap_sys_ptrace(
        server: socket.socket) -> None:
    """Root without CAP_SYS_PTRACE (setpriv drops it) cannot read the fds of a process of
    user nobody: the event says so, with the socket's uid from sock_diag."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run processes as another user and drop a capability")
    nobody = Actor(sys.executable, connect_code(LO, server.getsockname()[1]),
                   prefix=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
    probe = (
        "import json,sys,time\n"
        "from prometheus_client import CollectorRegistry\n"
        "from sentinel.metrics import Metrics\n"
        "from sentinel.events import Event\n"
        "from sentinel.sources.net.owner import ConnectionOwners\n"
        "o=ConnectionOwners(Metrics(CollectorRegistry()))\n"
        f"ev=Event('net.connection',0,'h','network',{{'proto':'tcp','src_ip':{LO!r},"
        f"'src_port':{nobody.port},'dst_ip':{LO!r},'dst_port':{server.getsockname()[1]},"
        "'direction':'outbound'})\n"
        "print(json.dumps(o.resolve([ev])[0]))\n")
    try:
        p = subprocess.run(["setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace",
                            sys.executable, "-c", probe], capture_output=True, text=True,
                           timeout=60, check=True)
    finally:
        nobody.end()
    got = json.loads(p.stdout.splitlines()[-1])  # the log lines come first
    assert got["process_unknown"] == OTHER_USER
    assert got["process_uid"] == 65534 and got["process_user"] == "nobody"
    assert got["process_pid"] is None


def test_no_sock_diag_socket_is_a_down_component_said_once_and_recovered() -> None:
    """A real failure to open the netlink socket: no file descriptor left (RLIMIT_NOFILE
    lowered in a child). Down, one log line, events say why; up again once it opens."""
    script = (
        "import os,resource,time,json\n"
        "from prometheus_client import CollectorRegistry\n"
        "from sentinel.metrics import Metrics\n"
        "from sentinel.events import Event\n"
        "from sentinel.sources.net import owner as o\n"
        "o.REOPEN_EVERY = 0.05\n"
        "c = o.ConnectionOwners(Metrics(CollectorRegistry()))\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "free = os.dup(0); os.close(free)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (free, hard))\n"
        "c.start()\n"
        "down = c.alive()\n"
        "ev = Event('net.connection',0,'h','network',{'proto':'tcp','src_ip':'127.0.0.1',"
        "'src_port':1,'dst_ip':'127.0.0.1','dst_port':2,'direction':'outbound'})\n"
        "why = c.resolve([ev])[0]['process_unknown']\n"
        "for _ in range(5): c.resolve([ev]); time.sleep(0.06)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))\n"
        "end = time.monotonic() + 10\n"
        "while not c.alive() and time.monotonic() < end: time.sleep(0.02)\n"
        "print(json.dumps([down, why, c.alive()]))\n"
        "c.stop()\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60, check=True)
    lines = p.stdout.splitlines()
    assert json.loads(lines[-1]) == [False, UNAVAILABLE, True]
    assert sum("connections_owner_down" in x for x in lines) == 1  # once, not per retry
    assert sum("connections_owner_up" in x for x in lines) == 1


def test_replay_never_looks_up_an_owner(tmp_path: Path, metrics: Metrics) -> None:
    """A capture file is not this moment's host: even with attribution.connections on,
    its connections carry no process fields and nothing is looked up."""
    from netkit import write_pcap
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from sentinel.config_reader import load_config
    from sentinel.sources.net import iter_pcap_events

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"host: {{name: tally-01, addresses: [127.0.0.1]}}\nstate_dir: {tmp_path}\n"
                   "attribution: {connections: true}\n")
    config = load_config(cfg)
    assert config.attribution.connections
    with socket.socket() as srv:  # a live socket with these very addresses exists
        srv.bind((LO, 0))
        srv.listen()
        syn = Ether() / IP(src=LO, dst=LO) / TCP(sport=40001, dport=srv.getsockname()[1],
                                                 flags="S")
        pcap = write_pcap(tmp_path / "syn.pcap", 1, [(1.0, bytes(syn))])
        events = [e for e in iter_pcap_events([pcap], config, metrics)
                  if e.kind == "net.connection"]
    assert len(events) == 1 and events[0].fields["direction"] == "local"
    assert not {k for k in events[0].fields if k.startswith("process")}
    assert metrics.registry.get_sample_value("sentinel_connection_owner_lookups_total",
                                             {"outcome": "resolved"}) is None


UNIT_LIKE = """
import json, os, sys, time
from prometheus_client import CollectorRegistry
from sentinel.events import Event
from sentinel.metrics import Metrics
from sentinel.sources.net.owner import ConnectionOwners
sport, dport, holder = (int(x) for x in sys.argv[1:4])
o = ConnectionOwners(Metrics(CollectorRegistry()))
ev = Event("net.connection", 0, "h", "network", {"proto": "tcp", "src_ip": "127.0.0.1",
           "src_port": sport, "dst_ip": "127.0.0.1", "dst_port": dport,
           "direction": "outbound"})
got = o.resolve([ev])[0]
print(json.dumps([os.path.exists(f"/proc/{holder}"), got]))
"""


@pytest.mark.parametrize("ptrace", [False, True])
def test_as_the_unit_runs_only_cap_sys_ptrace_lets_another_user_s_process_be_named(
        server: socket.socket, ptrace: bool) -> None:
    """The unit's view, reproduced: a non-root user with its capabilities (net_raw,
    net_admin, dac_read_search) and a /proc mounted as ProtectProc=invisible and
    ProcSubset=pid mount it. A root process's connection is hidden, /proc/PID and all;
    with CAP_SYS_PTRACE added it is named."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a /proc and run as another user")
    caps = "+net_raw,+net_admin,+dac_read_search" + (",+sys_ptrace" if ptrace else "")
    with socket.create_connection(server.getsockname()) as c:
        p = subprocess.run(
            ["unshare", "-m", "sh", "-c",
             'mount -t proc -o hidepid=invisible,subset=pid proc /proc && exec "$@"', "sh",
             "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             f"--inh-caps={caps}", f"--ambient-caps={caps}", sys.executable, "-c", UNIT_LIKE,
             str(c.getsockname()[1]), str(server.getsockname()[1]), str(os.getpid())],
            capture_output=True, text=True, timeout=60, check=True)
    seen, got = json.loads(p.stdout.splitlines()[-1])
    assert seen is ptrace
    if ptrace:
        assert got["process_pid"] == os.getpid() and got["process_unknown"] is None
    else:
        assert got["process_unknown"] == OTHER_USER and got["process_uid"] == 0


def test_a_reload_that_turns_connection_owners_on_rebuilds_the_network_source(
        tmp_path: Path) -> None:
    import dataclasses

    from sentinel.config import AttributionConfig
    from sentinel.config_reader import load_config
    from sentinel.parts import parts_differ
    from sentinel.sources.net.source import NetworkSource

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"host: {{name: tally-01, addresses: [127.0.0.1]}}\nstate_dir: {tmp_path}\n"
                   "network: {interfaces: [lo]}\n")
    off = load_config(cfg)
    on = dataclasses.replace(off, attribution=AttributionConfig(connections=True))
    assert parts_differ(off, on)
    assert NetworkSource(off, Metrics(CollectorRegistry())).owners is None
    assert NetworkSource(on, Metrics(CollectorRegistry())).owners is not None


def test_connection_owners_without_live_capture_is_a_check_warning(tmp_path: Path) -> None:
    from sentinel.config_reader import load_config

    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"host: {{name: tally-01, addresses: [127.0.0.1]}}\nstate_dir: {tmp_path}\n"
                   "attribution: {connections: true}\n")
    (warning,) = load_config(cfg).warnings
    assert str(warning).startswith(f"{cfg}:3:")
    assert "no network.interfaces to capture on" in str(warning)
