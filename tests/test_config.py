"""Configuration: the example loads; every bad config gives exit 2 and FILE:LINE:COL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.cli import main
from sentinel.config_reader import load_config
from sentinel.located import ProblemError
from tests.conftest import REPO


def where(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """1-based line and column of the nth occurrence of ``needle`` in ``text``."""
    idx = -1
    for _ in range(nth):
        idx = text.index(needle, idx + 1)
    line = text.count("\n", 0, idx) + 1
    col = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return line, col


# (name, config text, the offending token, message fragment)
BAD: list[tuple[str, str, str, str]] = [
    ("unknown top key", "netwrok:\n  interfaces: [eth0]\n", "netwrok",
     "unknown key 'netwrok' in the config; valid keys: host, state_dir"),
    ("unknown nested key", "network:\n  interface: [eth0]\n", "interface",
     "unknown key 'interface' in network; valid keys: interfaces, home_nets"),
    ("interfaces not a list", "network:\n  interfaces: eth0\n", "eth0",
     "network.interfaces must be a list, got a string"),
    ("bad interface name", "network:\n  interfaces: [eth0, 'a/b']\n", "'a/b'",
     "is not an interface name"),
    ("bad CIDR", "network:\n  home_nets: [10.20.0.0/16, 10.20.0.0/33]\n", "10.20.0.0/33",
     "network.home_nets[1]: '10.20.0.0/33' is not a network in CIDR notation"),
    ("bad IPv6 CIDR", "network:\n  home_nets: ['2001:db8::/129']\n", "'2001",
     "is not a network in CIDR notation"),
    ("bad host address", "host:\n  addresses: [10.20.0.300]\n", "10.20.0.300",
     "host.addresses[0]: '10.20.0.300' is not an IP address"),
    ("host name wrong type", "host:\n  name: [a, b]\n", "[a, b]",
     "host.name must be a string, got a list"),
    ("duration with words", "fim:\n  rescan_interval: 1 hour\n", "1 hour",
     "fim.rescan_interval: bad duration '1 hour'; valid: a number with a unit ms, s, m, h, d"),
    ("duration bad unit", "network:\n  flow_timeout: 30x\n", "30x",
     "network.flow_timeout: bad duration '30x'"),
    ("duration without unit", "fim:\n  rescan_interval: 3600\n", "3600",
     "fim.rescan_interval: bad duration an integer"),
    ("zero duration", "network:\n  flow_interval: 0s\n", "0s",
     "network.flow_interval: duration must be greater than zero"),
    ("listen without port", "outputs:\n  metrics:\n    listen: '127.0.0.1'\n", "'127.0.0.1'",
     "outputs.metrics.listen: '127.0.0.1' is not a listen address; valid: HOST:PORT"),
    ("listen port too big", "outputs:\n  metrics:\n    listen: '127.0.0.1:70000'\n", "'127",
     "is not a listen address"),
    ("listen on a name", "outputs:\n  metrics:\n    listen: 'example.org:9917'\n", "'example",
     "is not a listen address"),
    ("bad URL scheme",
     "outputs:\n  webhooks:\n    - name: a\n      url: ftp://soc.example/x\n", "ftp://",
     "outputs.webhooks[0].url: 'ftp://soc.example/x' is not a URL; valid: https://"),
    ("URL without host", "outputs:\n  webhooks:\n    - name: a\n      url: 'https://'\n",
     "'https://'", "is not a URL"),
    ("URL with credentials",
     "outputs:\n  webhooks:\n    - name: a\n      url: https://u:p@soc.example/\n", "https://u",
     "credentials in the URL are not allowed"),
    ("missing secret env",
     "outputs:\n  webhooks:\n    - name: a\n      url: https://soc.example/\n"
     "      secret_env: SENTINEL_TEST_NOT_SET_ANYWHERE\n", "SENTINEL_TEST_NOT_SET",
     "environment variable SENTINEL_TEST_NOT_SET_ANYWHERE is not set"),
    ("missing secret file",
     "outputs:\n  webhooks:\n    - name: a\n      url: https://soc.example/\n"
     "      secret_file: /nonexistent/secret\n", "/nonexistent",
     "outputs.webhooks[0].secret_file: cannot read /nonexistent/secret: No such file"),
    ("secret env and file",
     "outputs:\n  webhooks:\n    - name: a\n      url: https://soc.example/\n"
     "      secret_env: X\n      secret_file: /x\n", "/x",
     "give secret_env or secret_file, not both"),
    ("YAML unclosed bracket", "network:\n  interfaces: [eth0\n", "",
     "YAML syntax error"),
    ("YAML bad indentation", "network:\n  interfaces: [eth0]\n home_nets: []\n", "home_nets",
     "YAML syntax error: expected <block end>, but found '<block mapping start>'"
     " (while parsing a block mapping); check the indentation"),
    ("duplicate key", "network:\n  interfaces: [eth0]\n  interfaces: [eth1]\n", "interfaces",
     "duplicate key 'interfaces' (first at line 2)"),
    ("bad severity",
     "outputs:\n  webhooks:\n    - name: a\n      url: https://soc.example/\n"
     "      min_severity: urgent\n", "urgent",
     "min_severity is 'urgent'; valid: critical, high, medium, low, info"),
    ("bad format",
     "outputs:\n  webhooks:\n    - name: a\n      url: https://soc.example/\n"
     "      format: xml\n", "xml", "format is 'xml'; valid: json, alertmanager"),
    ("webhook without url", "outputs:\n  webhooks:\n    - name: a\n", "name: a",
     "outputs.webhooks[0] is missing required key 'url'"),
    ("relative fim path", "fim:\n  paths:\n    - {path: opt/tally}\n", "opt/tally",
     "fim path 'opt/tally' must be absolute"),
    ("fim tags not a list", "fim:\n  paths:\n    - {path: /opt, tags: 7}\n", "7}",
     "fim.paths[0].tags must be a list, got an integer"),
    ("schedule without timezone",
     "schedules:\n  counting:\n    - {start: '2024-02-14T13:00:00', end: '2024-02-15T13:00:00Z'}\n",
     "'2024-02-14", "schedules.counting[0].start: '2024-02-14T13:00:00' has no timezone"),
    ("schedule end before start",
     "schedules:\n  counting:\n"
     "    - {start: '2024-02-15T13:00:00Z', end: '2024-02-14T13:00:00Z'}\n",
     "'2024-02-14", "schedules.counting[0]: end must be after start"),
    ("snaplen out of range", "network:\n  snaplen: 10\n", "10",
     "network.snaplen must be in 64..65535, got 10"),
    ("rules path missing", "rules:\n  paths: [no-such-rules/]\n", "no-such-rules/",
     "does not exist; give a rule file or a folder of *.yaml rule files"),
    ("list item mapping", "lists:\n  admins: [{a: 1}]\n", "{a: 1}",
     "lists.admins[0] must be a string or number"),
    ("bad fsync policy", "outputs:\n  journal:\n    fsync: sometimes\n", "sometimes",
     "outputs.journal.fsync is 'sometimes'; valid: record, interval, none"),
    ("bad rotate size", "outputs:\n  journal:\n    rotate_size: lots\n", "lots",
     "outputs.journal.rotate_size: bad size 'lots'"),
    ("basic auth plain password",
     "outputs:\n  metrics:\n    basic_auth:\n      users: {prom: hunter2}\n", "hunter2",
     "outputs.metrics.basic_auth.users.prom: not a bcrypt hash"),
    ("duplicate webhook names",
     "outputs:\n  webhooks:\n    - {name: a, url: 'https://x.example/'}\n"
     "    - {name: a, url: 'https://y.example/'}\n", "{name: a, url: 'https://y",
     "outputs.webhooks[1]: duplicate name 'a' (first at line 3)"),
    ("json webhook with many urls",
     "outputs:\n  webhooks:\n    - name: a\n      url: ['https://x.example/', 'https://y.example/']\n",
     "['https", "a json webhook takes one URL"),
    ("empty file", "", "", "the config file is empty"),
    ("top level not a mapping", "- a\n- b\n", "- a", "the config must be a mapping, got a list"),
]


def run_check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    code = main(["check", "-c", str(cfg)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("name", "text", "token", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_reported_at_its_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
    name: str, text: str, token: str, message: str,
) -> None:
    code, err = run_check(tmp_path, text, capsys)
    assert code == 2
    cfg = tmp_path / "config.yaml"
    if name == "YAML unclosed bracket":
        line, col = 3, 1  # the parser notices at the end of the input
    elif token == "":
        line, col = 1, 1
    else:
        line, col = where(text, token, 2 if name == "duplicate key" else 1)
    assert f"{cfg}:{line}:{col}: " in err, err
    assert message in err, err
    assert "Traceback" not in err


def test_all_errors_of_a_file_are_reported_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "network:\n  interfaces: eth0\n  home_nets: [300.0.0.0/8]\n"
        "fim:\n  rescan_interval: soon\nbogus: 1\n"
    )
    code, err = run_check(tmp_path, text, capsys)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith(str(tmp_path))]
    assert len(lines) == 4, err
    assert [ln.split(": ")[0].rsplit(":", 2)[1:] for ln in lines] == [
        ["2", "15"], ["3", "15"], ["5", "20"], ["6", "1"]]


def test_unreadable_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["check", "-c", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"{missing}:1:1: file not found"


def test_secret_value_never_in_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTINEL_TEST_SECRET", "not-a-whsec-hunter2")
    text = ("outputs:\n  webhooks:\n    - name: a\n      url: https://soc.example/\n"
            "      secret_env: SENTINEL_TEST_SECRET\n")
    code, err = run_check(tmp_path, text, capsys)
    assert code == 2
    assert "is not a webhook secret" in err
    assert "hunter2" not in err


def test_example_config_loads(example_secrets: dict[str, str]) -> None:
    cfg = load_config(REPO / "config.example.yaml")
    assert cfg.host.name == "tally-01"
    assert [str(a) for a in cfg.host.addresses] == ["10.20.0.10"]
    assert [w.name for w in cfg.outputs.webhooks] == ["bawaslu", "ministry-csirt"]
    assert cfg.outputs.webhooks[1].include_tags == ("network",)
    assert cfg.outputs.metrics.listen == ("127.0.0.1", 9917)
    assert cfg.fim.rescan_interval == 3600
    tags = {str(p.path): p.tags for p in cfg.fim.paths}
    assert tags["/opt/tally/bin"] == ("tally-binaries",)
    assert tags["/etc/shadow"] == ("accounts",)
    assert cfg.rules.paths == (REPO / "rules",)
    assert "hunter" not in repr(cfg)
    assert example_secrets["SENTINEL_BAWASLU_SECRET"] not in repr(cfg)


def test_relative_paths_resolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "conf" / "myrules").mkdir(parents=True)
    cfg = tmp_path / "conf" / "config.yaml"
    cfg.write_text("state_dir: /var/lib/x\nrules: {paths: [myrules]}\n"
                   "outputs: {journal: {path: j/alerts.jsonl}}\n")
    monkeypatch.chdir("/")
    c = load_config(cfg)
    assert c.rules.paths == (tmp_path / "conf" / "myrules",)
    assert c.in_state(c.outputs.journal.path) == Path("/var/lib/x/j/alerts.jsonl")


def test_check_exit_2_without_traceback_as_a_process(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("network: {home_nets: [nonsense]}\n")
    proc = subprocess.run([sys.executable, "-m", "sentinel", "check", "-c", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{cfg}:1:23: network.home_nets[0]: 'nonsense'")
    assert "Traceback" not in proc.stderr


def test_problem_error_lists_every_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("a: 1\nb: 2\n")
    with pytest.raises(ProblemError) as exc:
        load_config(cfg)
    assert len(exc.value.problems) == 2


def test_check_warns_at_a_capture_interface_absent_on_this_host(tmp_path: Path) -> None:
    """Issue #14.4: positioned at the entry, a warning only (exit 0), listed in JSON too."""
    cfg = tmp_path / "config.yaml"
    text = (f"host: {{name: t, addresses: [10.20.0.10]}}\nstate_dir: {tmp_path}\n"
            "network:\n  interfaces: [lo, nosuchif9]\n")
    cfg.write_text(text)
    done = subprocess.run([sys.executable, "-m", "sentinel", "check", "-c", str(cfg)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    line, col = where(text, "nosuchif9")
    assert done.stderr.startswith(
        f"{cfg}:{line}:{col}: warning: network.interfaces[1]: there is no interface"
        " 'nosuchif9' on this host"), done.stderr
    assert "'lo'" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "sentinel", "check", "-c", str(cfg),
                           "--format", "json"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0
    warnings = json.loads(done.stdout)["warnings"]
    assert [(w["line"], w["col"]) for w in warnings] == [(line, col)]
