"""`sentinel run` as a real process: notify protocol, reloads, signals, clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel.notify import Notifier
from tests.support import free_port, wait_for

SENTINEL = str(Path(sys.executable).with_name("sentinel"))




class NotifySocket:
    """A datagram socket standing in for systemd's notify socket. Like systemd, it
    reads every datagram as it comes (a thread), so the daemon's queue never fills."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._read = 0  # messages already looked at by wait_for
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._drain, name="notify-socket", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._closed:
            try:
                msg = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self.messages.append(msg)
                self._cond.notify_all()

    def wait_for(self, state: str, timeout: float = 30.0) -> list[str]:
        """Wait for a datagram not looked at before that carries ``state``; fail after
        ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while self._read < len(self.messages):
                    msg = self.messages[self._read]
                    self._read += 1
                    if state in msg.split("\n"):
                        return list(self.messages)
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no {state} within {timeout}s; got {self.messages}")
                self._cond.wait(left)

    def close(self) -> None:
        self._closed = True
        self._thread.join(timeout=2)
        self.sock.close()


def write_config(path: Path, state: Path, port: int, extra: str = "") -> None:
    rules = path.parent / "rules"
    rules.mkdir(exist_ok=True)
    path.write_text(
        f"host: {{name: test-host, addresses: [10.20.0.10]}}\n"
        f"state_dir: {state}\n"
        f"rules: {{paths: [rules], reload_debounce: 200ms}}\n"
        f"outputs:\n  metrics: {{listen: '127.0.0.1:{port}'}}\n{extra}"
    )


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return str(r.read().decode())


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return None


def stop_in_time(proc: subprocess.Popen[str], timeout: float) -> int:
    """The exit code of a daemon sent SIGTERM; one still running after ``timeout`` is
    made to dump its threads (SIGABRT, with PYTHONFAULTHANDLER) and the test fails
    with where each one was."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"no exit {timeout:.0f} s after SIGTERM; its threads:\n{err[-30000:]}")


def wait_metric(port: int, name: str, want: float, timeout: float = 20.0,
                at_least: bool = False) -> None:
    """Poll the endpoint until ``name`` equals ``want`` (or reaches it, ``at_least``)."""
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        try:
            got = metric(scrape(port), name)
        except OSError:  # an endpoint moving to this port at a reload is not there yet
            time.sleep(0.1)
            continue
        if got == want or (at_least and got is not None and got >= want):
            return
        time.sleep(0.1)
    pytest.fail(f"{name} = {got}, wanted {want}")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], NotifySocket, Path, int]]:
    notify = NotifySocket(tmp_path / "notify.sock")
    cfg = tmp_path / "config.yaml"
    port = free_port()
    write_config(cfg, tmp_path / "state", port)
    # PYTHONFAULTHANDLER: a daemon that hangs dumps its threads at SIGABRT (stop_in_time)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000",
           "PYTHONFAULTHANDLER": "1"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        [SENTINEL, "run", "-c", str(cfg)], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        yield proc, notify, cfg, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        notify.close()


def test_a_notify_socket_nobody_reads_never_blocks_the_daemon(tmp_path: Path) -> None:
    """A datagram queue that is full (the reader fell behind: 10 datagrams by default)
    blocks a plain send; sentinel's main loop must not hang on a watchdog ping, so
    each send gives up after SEND_WAIT and says it could not go."""
    from sentinel.notify import SEND_WAIT

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "notify.sock")})
        qlen = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
        sent = [notifier.watchdog() for _ in range(qlen + 5)]
        t0 = time.monotonic()
        assert notifier.stopping() is False  # the queue is full: it could not go
        assert time.monotonic() - t0 < SEND_WAIT + 1.0
        assert sent[:qlen] == [True] * qlen and not any(sent[qlen + 1:])
    finally:
        sock.close()


def test_ready_watchdog_and_clean_stop(
    daemon: tuple[subprocess.Popen[str], NotifySocket, Path, int],
) -> None:
    """READY=1 arrives, WATCHDOG=1 follows at half WATCHDOG_USEC, SIGTERM exits 0 in time."""
    proc, notify, _, port = daemon
    notify.wait_for("READY=1")
    # pings keep coming after READY: two more, each after the one before
    notify.wait_for("WATCHDOG=1", timeout=5)
    notify.wait_for("WATCHDOG=1", timeout=5)
    assert metric(scrape(port), "sentinel_build_info{version=\"0.1.0\"}") == 1.0
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    notify.wait_for("STOPPING=1", timeout=10)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 10
    out, err = proc.communicate()
    assert "Traceback" not in err
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    assert any('"event": "stopped"' in ln for ln in lines)
    assert all('"level"' in ln and '"timestamp"' in ln for ln in lines)


def test_sighup_with_broken_config_keeps_running(
    daemon: tuple[subprocess.Popen[str], NotifySocket, Path, int],
) -> None:
    """A reload with an invalid config is counted as a failure; the daemon keeps going."""
    proc, notify, cfg, port = daemon
    notify.wait_for("READY=1")
    good = cfg.read_text()
    cfg.write_text(good + "network: {home_nets: [10.0.0.0/99]}\n")
    # the edit itself may trigger a reload too (the config file is watched)
    proc.send_signal(signal.SIGHUP)
    wait_metric(port, 'sentinel_config_reloads_total{result="failure"}', 1.0, at_least=True)
    assert metric(scrape(port), "sentinel_config_last_reload_success") == 0.0
    assert proc.poll() is None
    cfg.write_text(good)
    proc.send_signal(signal.SIGHUP)
    wait_metric(port, "sentinel_config_last_reload_success", 1.0)
    assert metric(scrape(port), 'sentinel_config_reloads_total{result="success"}') >= 1.0
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    _, err = proc.communicate()
    assert "Traceback" not in err


def test_config_edit_triggers_reload(
    daemon: tuple[subprocess.Popen[str], NotifySocket, Path, int],
) -> None:
    """Saving the config file reloads it without a signal."""
    proc, notify, cfg, port = daemon
    notify.wait_for("READY=1")
    cfg.write_text(cfg.read_text() + "lists: {admins: [10.20.1.0/28]}\n")
    wait_metric(port, 'sentinel_config_reloads_total{result="success"}', 1.0, at_least=True)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_bad_config_at_start_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("state_dir: /tmp/x\noutputs: {metrics: {listen: nowhere}}\n")
    proc = subprocess.run([SENTINEL, "run", "-c", str(cfg)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{cfg}:2:29: outputs.metrics.listen: 'nowhere'")
    assert "Traceback" not in proc.stderr


def test_notifier_abstract_socket() -> None:
    """An ``@name`` NOTIFY_SOCKET is an abstract-namespace socket."""
    name = f"sentinel-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(5)
        n = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000"})
        assert n.watchdog_interval == 1.0
        assert n.ready("up")
        assert s.recv(100) == b"READY=1\nSTATUS=up"


def test_notifier_without_systemd_is_silent() -> None:
    n = Notifier({})
    assert not n.enabled
    assert n.watchdog_interval is None
    assert not n.ready()


def test_version() -> None:
    proc = subprocess.run([SENTINEL, "--version"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0
    assert proc.stdout.strip() == "sentinel 0.1.0"


def test_daemon_attests_on_start(tmp_path: Path) -> None:
    """With an attestation key in place, the daemon writes a signed attestation at start."""
    notify = NotifySocket(tmp_path / "notify.sock")
    cfg = tmp_path / "config.yaml"
    state = tmp_path / "state"
    write_config(cfg, state, free_port())
    keygen = subprocess.run([SENTINEL, "attest", "keygen", "-c", str(cfg)],
                            capture_output=True, text=True, timeout=60)
    assert keygen.returncode == 0, keygen.stderr
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    proc = subprocess.Popen([SENTINEL, "run", "-c", str(cfg)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        notify.wait_for("READY=1")
        deadline = time.monotonic() + 20
        while not list((state / "attestations").glob("*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        written = sorted((state / "attestations").glob("*"))
        assert written, "no attestation written at start"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        notify.close()
    pub = next(state.glob("attest.pub"))
    verify = subprocess.run([SENTINEL, "attest", "verify", str(state / "attestations"),
                             "--pubkey", str(pub)], capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_stop_flushes_open_suppression_periods(tmp_path: Path) -> None:
    """SIGTERM mid-period: the folded repeats still reach the journal as a summary."""
    watched = tmp_path / "watched"
    watched.mkdir()
    target = watched / "result.json"
    target.write_text("v0\n")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yaml").write_text(
        "rules:\n"
        "  - id: watched-file-changed\n"
        "    title: '{path} changed'\n"
        "    severity: high\n"
        "    kind: fim.modified\n"
        "    match: {path_tags: w}\n"
        "    suppress: {key: path, period: 1h}\n")
    cfg = tmp_path / "config.yaml"
    state = tmp_path / "state"
    port = free_port()
    write_config(cfg, state, port, f"fim:\n  paths: [{{path: {watched}, tags: [w]}}]\n")
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    proc = subprocess.Popen([SENTINEL, "run", "-c", str(cfg)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    journal = state / "alerts.jsonl"

    def alerts() -> list[dict[str, object]]:
        if not journal.exists():
            return []
        return [json.loads(line)["alert"] for line in journal.read_text().splitlines()]

    try:
        notify.wait_for("READY=1")
        for i in range(1, 4):
            target.write_text(f"v{i}\n")
            # the next write only once this change is an event of its own
            wait_metric(port, 'sentinel_events_total{kind="fim.modified",source="fim"}', i,
                        at_least=True)
        wait_for(lambda: len(alerts()) == 1, 10, "the first alert in the journal")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
    got = [(a["rule"], a["count"], bool(a.get("summary"))) for a in alerts()]
    assert got == [("watched-file-changed", 1, False), ("watched-file-changed", 3, True)]


def test_baseline_init_refuses_while_the_daemon_watches(tmp_path: Path) -> None:
    """A new baseline is never swapped in under a running daemon: init says to stop it."""
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "f").write_text("x\n")
    cfg = tmp_path / "config.yaml"
    write_config(cfg, tmp_path / "state", free_port(),
                 f"fim:\n  paths: [{{path: {watched}, tags: [w]}}]\n")
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    proc = subprocess.Popen([SENTINEL, "run", "-c", str(cfg)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        notify.wait_for("READY=1")
        busy = subprocess.run([SENTINEL, "baseline", "init", "-c", str(cfg)],
                              capture_output=True, text=True, timeout=60)
        assert busy.returncode == 2
        assert "in use by the running daemon" in busy.stderr
        assert "Traceback" not in busy.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        notify.close()
    done = subprocess.run([SENTINEL, "baseline", "init", "-c", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_missing_watched_path_is_logged_and_picked_up_when_it_appears(tmp_path: Path) -> None:
    """A configured path that does not exist yet is a warning, not a failure; once it
    appears (in a folder that exists), its files are reported live."""
    missing = tmp_path / "opt" / "tally" / "bin"
    (tmp_path / "opt" / "tally").mkdir(parents=True)
    cfg = tmp_path / "config.yaml"
    port = free_port()
    write_config(cfg, tmp_path / "state", port,
                 f"fim:\n  paths: [{{path: {missing}, tags: [tally-binaries]}}]\n")
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    proc = subprocess.Popen([SENTINEL, "run", "-c", str(cfg)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        notify.wait_for("READY=1")
        missing.mkdir(parents=True)
        (missing / "tally-server").write_text("build 1\n")
        wait_metric(port, 'sentinel_events_total{kind="fim.created",source="fim"}', 1,
                    at_least=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        notify.close()
    out, _ = proc.communicate()
    warned = [json.loads(ln) for ln in out.splitlines() if "fim_path_missing" in ln]
    assert [w["path"] for w in warned] == [str(missing)]
    assert warned[0]["level"] == "warning"
    assert warned[0]["detail"] == "watched for; reported as created when it appears"


def test_second_daemon_on_the_same_state_dir_exits_2_clearly(
    daemon: tuple[subprocess.Popen[str], NotifySocket, Path, int], tmp_path: Path,
) -> None:
    """A second `sentinel run` on a state dir in use says so in one line and exits 2
    (no traceback, no restart loop), and the first goes on."""
    proc, notify, _, _ = daemon
    notify.wait_for("READY=1")
    other = tmp_path / "other.yaml"
    write_config(other, tmp_path / "state", free_port())
    second = subprocess.run([SENTINEL, "run", "-c", str(other)], capture_output=True,
                            text=True, timeout=60)
    assert second.returncode == 2
    assert second.stderr.startswith("sentinel: cannot start: ")
    assert "in use" in second.stderr or "lock" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr
    assert proc.poll() is None


GOOD_RULE = ("rules:\n  - id: ssh-in\n    title: t\n    severity: high\n    kind: net.connection\n"
             "    match: {dst_port: 22}\n")


def _hostile_rules() -> list[tuple[str, str]]:
    from tests.engine.test_rule_hostile import HOSTILE

    return [(name, text) for name, text, _ in HOSTILE]


@pytest.mark.parametrize(("name", "text"), _hostile_rules(), ids=[n for n, _ in _hostile_rules()])
def test_hostile_rule_file_at_reload_is_refused_and_old_rules_keep_running(
    daemon: tuple[subprocess.Popen[str], NotifySocket, Path, int], name: str, text: str,
) -> None:
    """Issue #15.9: a refused reload, counted; the daemon lives on with its old rule."""
    proc, notify, cfg, port = daemon
    rules = cfg.parent / "rules"
    notify.wait_for("READY=1")
    (rules / "a.yaml").write_text(GOOD_RULE)
    proc.send_signal(signal.SIGHUP)
    wait_metric(port, "sentinel_rules_loaded", 1.0)
    (rules / "b.yaml").write_text(text)
    proc.send_signal(signal.SIGHUP)
    wait_metric(port, 'sentinel_config_reloads_total{result="failure"}', 1.0, at_least=True)
    assert proc.poll() is None
    text_now = scrape(port)
    assert metric(text_now, "sentinel_rules_loaded") == 1.0
    assert metric(text_now, "sentinel_config_last_reload_success") == 0.0
    proc.send_signal(signal.SIGTERM)
    assert stop_in_time(proc, 20) == 0
    _, err = proc.communicate()
    assert "Traceback" not in err
    # and the same file at start is a clean exit 2, not a crash loop
    again = subprocess.run([SENTINEL, "run", "-c", str(cfg)], capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 2
    assert again.stderr.startswith(f"{rules / 'b.yaml'}:"), again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_rule_path_that_is_not_a_regular_file_is_a_refused_reload(
    daemon: tuple[subprocess.Popen[str], NotifySocket, Path, int], special: str,
) -> None:
    """/dev/zero or a FIFO named as a rule path: refused at once, never read or waited on."""
    proc, notify, cfg, port = daemon
    notify.wait_for("READY=1")
    path = special
    if special == "fifo":
        path = str(cfg.parent / "pipe.yaml")
        os.mkfifo(path)
    cfg.write_text(cfg.read_text().replace("paths: [rules]", f"paths: [rules, '{path}']"))
    proc.send_signal(signal.SIGHUP)
    wait_metric(port, 'sentinel_config_reloads_total{result="failure"}', 1.0, at_least=True)
    # the main loop still answers: a later good reload goes through
    cfg.write_text(cfg.read_text().replace(f", '{path}'", ""))
    proc.send_signal(signal.SIGHUP)
    wait_metric(port, "sentinel_config_last_reload_success", 1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def _healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_reload_to_a_metrics_port_another_process_holds_is_refused(
    daemon: tuple[subprocess.Popen[str], NotifySocket, Path, int],
) -> None:
    """Issue #15.12: the new endpoint is bound beside the old; a taken port refuses the reload,
    the old endpoint keeps serving; once the port is free the same reload goes through."""
    proc, notify, cfg, port = daemon
    notify.wait_for("READY=1")
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    good = cfg.read_text()
    cfg.write_text(good.replace(f"127.0.0.1:{port}", f"127.0.0.1:{taken}"))
    proc.send_signal(signal.SIGHUP)
    wait_metric(port, 'sentinel_config_reloads_total{result="failure"}', 1.0, at_least=True)
    assert proc.poll() is None
    assert _healthz(port) == 200
    holder.close()
    proc.send_signal(signal.SIGHUP)
    wait_metric(taken, "sentinel_config_last_reload_success", 1.0)
    with pytest.raises(OSError):
        scrape(port)  # the old endpoint let go of its port
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    _, err = proc.communicate()
    assert "Traceback" not in err


@pytest.mark.parametrize("what", ["journal key is a directory", "journal key too short"])
def test_reload_with_a_key_that_cannot_be_used_is_refused(
    daemon: tuple[subprocess.Popen[str], NotifySocket, Path, int], what: str,
) -> None:
    """A journal key that cannot be read is a refused reload; the old sink keeps the journal."""
    proc, notify, cfg, port = daemon
    notify.wait_for("READY=1")
    key = cfg.parent / "bad.key"
    if what == "journal key is a directory":
        key.mkdir()
    else:
        key.write_text("short\n")
        key.chmod(0o600)
    cfg.write_text(cfg.read_text() + f"  journal: {{path: other.jsonl, key_file: {key}}}\n")
    proc.send_signal(signal.SIGHUP)
    wait_metric(port, 'sentinel_config_reloads_total{result="failure"}', 1.0, at_least=True)
    assert proc.poll() is None
    assert _healthz(port) == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_reload_whose_new_source_fails_to_start_keeps_the_old_sources(
    daemon: tuple[subprocess.Popen[str], NotifySocket, Path, int], tmp_path: Path,
) -> None:
    """A FIM source that cannot start (its key is a directory) is a refused reload, and the
    previous file watching is started again (the fim component is up)."""
    proc, notify, cfg, port = daemon
    notify.wait_for("READY=1")
    watched = tmp_path / "watched"
    watched.mkdir()
    base = cfg.read_text()
    cfg.write_text(base + f"fim: {{paths: ['{watched}']}}\n")
    proc.send_signal(signal.SIGHUP)
    wait_metric(port, "sentinel_config_last_reload_success", 1.0)
    wait_metric(port, 'sentinel_component_up{component="fim"}', 1.0)
    badkey = tmp_path / "fim.key"
    badkey.mkdir()
    cfg.write_text(base + f"fim: {{paths: ['{watched}'], baseline: b2.db,"
                          f" key_file: {badkey}}}\n")
    proc.send_signal(signal.SIGHUP)
    wait_metric(port, 'sentinel_config_reloads_total{result="failure"}', 1.0, at_least=True)
    assert proc.poll() is None
    wait_metric(port, 'sentinel_component_up{component="fim"}', 1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    _, err = proc.communicate()
    assert "Traceback" not in err or "reload_rejected" in err


@contextlib.contextmanager
def _namespace(tag: str) -> Iterator[str]:
    """A network namespace of the test's own, its loopback up; deleted afterwards."""
    from tests.sources.net.netkit import ip, needs_netns

    needs_netns()
    ns = f"snt-{os.getpid()}-{tag}"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    ip("netns", "add", ns)
    try:
        ip("-n", ns, "link", "set", "lo", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def test_absent_capture_interface_is_down_in_health_and_metrics_until_it_appears(
    tmp_path: Path,
) -> None:
    """Issue #14.4: with interfaces: [an absent one], /healthz is 503 naming it and
    sentinel_component_up{component="network"} is 0; both recover once it exists.
    The daemon runs in a network namespace the test creates (its interface, its loopback)."""
    from tests.sources.net.netkit import in_netns, ip

    ghost = f"gh{os.getpid() % 10**6}"
    with _namespace("cap") as ns:
        notify = NotifySocket(tmp_path / "notify.sock")
        cfg = tmp_path / "config.yaml"
        port = free_port()
        write_config(cfg, tmp_path / "state", port, f"network: {{interfaces: [{ghost}]}}\n")
        env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
        proc = subprocess.Popen(["ip", "netns", "exec", ns, SENTINEL, "run", "-c", str(cfg)],
                                env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            notify.wait_for("READY=1")

            def health() -> tuple[int, dict[str, object]]:
                def get() -> tuple[int, dict[str, object]]:
                    url = f"http://127.0.0.1:{port}/healthz"
                    try:
                        with urllib.request.urlopen(url, timeout=5) as r:
                            return int(r.status), json.loads(r.read())
                    except urllib.error.HTTPError as exc:
                        return int(exc.code), json.loads(exc.read())
                return in_netns(ns, get)

            def up(component: str) -> float | None:
                return metric(in_netns(ns, lambda: scrape(port)),
                              f'sentinel_component_up{{component="{component}"}}')

            wait_for(lambda: up("network") == 0.0, what="network component down")
            status, body = health()
            assert status == 503
            assert body["down"] == ["network", f"network:{ghost}"]
            assert metric(in_netns(ns, lambda: scrape(port)),
                          f'sentinel_capture_up{{iface="{ghost}"}}') == 0.0
            # a veth pair inside the namespace: no traffic leaves it
            ip("-n", ns, "link", "add", ghost, "type", "veth", "peer", "name", f"{ghost}p")
            ip("-n", ns, "link", "set", f"{ghost}p", "up")
            ip("-n", ns, "link", "set", ghost, "up")
            wait_for(lambda: up("network") == 1.0, what="network component up again")
            assert health()[0] == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
            out, err = proc.communicate()
            assert "Traceback" not in err
            events = [json.loads(ln).get("event") for ln in out.splitlines()
                      if ln.startswith("{")]
            # one line per change of state, however many retries came between
            assert events.count("capture_down") == 1
            assert events.count("capture_recovered") == 1
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            notify.close()


@pytest.mark.root
def test_a_reload_restarts_only_the_sources_whose_config_changed(tmp_path: Path) -> None:
    """An edit of network.home_nets reopens the capture and leaves file watching alone; an
    edit of the FIM paths restarts file watching and leaves the capture open (reopening
    it would leave packets unseen while it starts). A FIM path that does not exist is
    logged at each start of file watching, which is how the test counts them; a reload
    that changes nothing (the config watch's beside SIGHUP's) restarts nothing."""
    from tests.sources.net.netkit import ip

    dev = f"sr{os.getpid() % 10**6}"
    with _namespace("src") as ns:
        ip("-n", ns, "link", "add", dev, "type", "veth", "peer", "name", f"{dev}p")
        ip("-n", ns, "link", "set", f"{dev}p", "up")
        ip("-n", ns, "link", "set", dev, "up")
        notify = NotifySocket(tmp_path / "notify.sock")
        cfg = tmp_path / "config.yaml"
        port = free_port()

        def configure(home: str, fim: list[Path]) -> None:
            paths = ", ".join(f"'{p}'" for p in fim)
            write_config(cfg, tmp_path / "state", port,
                         f"network: {{interfaces: [{dev}], home_nets: [{home}]}}\n"
                         f"fim: {{paths: [{paths}]}}\n")

        log_path = tmp_path / "sentinel.log"

        def logged() -> list[dict[str, Any]]:
            return [json.loads(ln) for ln in log_path.read_text().splitlines()
                    if ln.startswith("{") and ln.endswith("}")]

        def count(event: str) -> int:
            return [x["event"] for x in logged()].count(event)

        configure("10.20.0.0/16", [tmp_path / "absent-1"])
        env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
        with log_path.open("w") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, SENTINEL, "run", "-c",
                                     str(cfg)], env=env, text=True, stdout=log,
                                    stderr=subprocess.STDOUT)
            try:
                notify.wait_for("READY=1")
                configure("10.30.0.0/16", [tmp_path / "absent-1"])  # the network's part
                proc.send_signal(signal.SIGHUP)
                wait_for(lambda: count("capture_started") == 2, what="the capture reopened")
                configure("10.30.0.0/16", [tmp_path / "absent-1", tmp_path / "absent-2"])
                proc.send_signal(signal.SIGHUP)  # the FIM's part
                wait_for(lambda: any(x.get("path", "").endswith("absent-2") for x in logged()),
                         what="file watching restarted")
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=20) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=10)
                notify.close()
        assert "Traceback" not in log_path.read_text()
        # at start, and again for the home_nets edit only
        assert count("capture_started") == 2
        missing = [Path(x["path"]).name for x in logged() if x["event"] == "fim_path_missing"]
        # at start, and again (both paths) for the FIM edit only
        assert missing == ["absent-1", "absent-1", "absent-2"]
