"""Hostile rule and config files (issue #15.9): each one is a positioned problem.

Alias bombs, recursive anchors, deep nesting, impossible dates, huge integers and
durations, and paths that are not regular files (/dev/zero, a FIFO) must each give
``FILE:LINE:COL: message`` and exit 2 from `sentinel check` - never a traceback, a
hang or a memory blow-up. The daemon's side (a refused reload) is in test_daemon.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.engine import load_rule_files
from sentinel.located import ProblemError

HEAD = "rules:\n  - id: r\n    title: t\n    severity: high\n    kind: net.connection\n"

#: 342 bytes that expand to 9**9 (387 million) strings without a limit.
ALIAS_BOMB = "".join(
    f"{n}: &{n} [" + ",".join([f"*{p}"] * 9 if p.strip() else ['"lol"'] * 9) + "]\n"
    for p, n in zip(" abcdefgh", "abcdefghi", strict=True)
)


def _deep_block(levels: int) -> str:
    return "rules:\n" + "".join(" " * (i + 1) + "k:\n" for i in range(levels)) + \
        " " * (levels + 1) + "x\n"


# (name, rule file text, regex of the one problem; F is the file's path)
HOSTILE: list[tuple[str, str, str]] = [
    ("impossible date", HEAD + "    match: {dst_port: 22}\n    examples:\n      match:\n"
     "        - {kind: net.connection, dst_port: 22, time: 2024-02-30T00:00:00+07:00}\n",
     r"F:9:54: '2024-02-30T00:00:00\+07:00' is not a valid timestamp \(day is out of range"),
    ("alias bomb", ALIAS_BOMB, r"F:\d+:\d+: aliases expand to more than 10000 nodes"),
    ("recursive anchor", "rules: &r [*r]\n", r"F:1:8: an alias refers to a node that contains"),
    ("5,000-deep flow nesting", "rules: " + "[" * 5000 + "]" * 5000 + "\n",
     r"F:1:\d+: (nested more than 64 levels|YAML syntax error: exceeded maximum nesting)"),
    ("deep block nesting", _deep_block(500), r"F:65:65: nested more than 64 levels deep"),
    ("5,000-digit integer", HEAD + "    match: {dst_port: " + "9" * 5000 + "}\n",
     r"F:6:23: '9{37}\.\.\.' is an integer of more than 4300 digits"),
    ("duration of 1e20 days", HEAD + "    match: {dst_port: 22}\n"
     "    suppress: {period: " + "1" + "0" * 20 + "d}\n",
     r"F:7:24: rule 'r': suppress.period: duration '10+d' is too long; valid: at most 3650d"),
    ("5,000-digit duration", HEAD + "    match: {dst_port: 22}\n"
     "    suppress: {period: " + "9" * 5000 + "s}\n",
     r"F:7:24: rule 'r': suppress.period: duration '9+s' is too long"),
]


@pytest.mark.parametrize(("name", "text", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_rule_file_is_a_positioned_problem(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    f = tmp_path / "hostile.yaml"
    f.write_text(text)
    with pytest.raises(ProblemError) as info:
        load_rule_files([f])
    problems = [str(p).replace(str(f), "F") for p in info.value.problems]
    assert len(problems) == 1, problems
    assert re.match(expected, problems[0]), problems[0]


def test_alias_bomb_stays_small(tmp_path: Path) -> None:
    """Refused before it grows: in a fresh process, peak memory rises by under 50 MiB."""
    f = tmp_path / "bomb.yaml"
    f.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 420
    code = ("import resource, sys\nfrom pathlib import Path\n"
            "from sentinel.engine import load_rule_files\n"
            "from sentinel.located import ProblemError\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    load_rule_files([Path(sys.argv[1])])\nexcept ProblemError:\n    pass\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    done = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 50 * 1024  # KiB


def test_dev_zero_as_a_rule_file_is_refused() -> None:
    with pytest.raises(ProblemError) as info:
        load_rule_files([Path("/dev/zero")])
    assert [str(p) for p in info.value.problems] == [
        "/dev/zero:1:1: is a device or socket, not a regular file; give a file"]


def test_fifo_as_a_rule_file_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "rules.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ProblemError) as info:
        load_rule_files([fifo])
    assert [str(p) for p in info.value.problems] == [
        f"{fifo}:1:1: is a FIFO, not a regular file; give a file"]


def test_oversized_rule_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "big.yaml"
    with f.open("wb") as out:
        out.truncate(8 * 2**20 + 1)  # sparse: no need to write 8 MiB
    with pytest.raises(ProblemError, match=r"big.yaml:1:1: is 8388609 bytes; at most 8388608"):
        load_rule_files([f])


# -- `sentinel check`: exit 2, positioned, no traceback, no hang ------------------------

def _check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sentinel", "check", "-c", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)


def _config(tmp: Path, rule_path: str) -> Path:
    cfg = tmp / "config.yaml"
    cfg.write_text(f"host: {{name: t, addresses: [10.20.0.10]}}\nstate_dir: {tmp}\n"
                   f"rules: {{paths: ['{rule_path}']}}\n")
    return cfg


@pytest.mark.parametrize(("name", "text", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_check_reports_hostile_rule_file_and_exits_2(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    f = tmp_path / "hostile.yaml"
    f.write_text(text)
    done = _check(_config(tmp_path, str(f)))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(expected.replace("F:", re.escape(str(f)) + ":"), done.stderr), done.stderr


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_check_refuses_a_rule_path_that_is_not_a_regular_file(tmp_path: Path,
                                                              special: str) -> None:
    path = special
    if special == "fifo":
        path = str(tmp_path / "rules.yaml")
        os.mkfifo(path)
    done = _check(_config(tmp_path, path))  # the timeout of _check catches a hang
    assert done.returncode == 2
    assert f"{path}:1:1: is a " in done.stderr and "not a regular file" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("name", "text"), [
    ("alias bomb", ALIAS_BOMB.replace("a: &a", "lists: {x: [1]}\na: &a")),
    ("impossible date", "schedules:\n  s: [{start: 2024-02-30T00:00:00+07:00,"
                        " end: 2024-03-01T00:00:00+07:00}]\n"),
    ("duration of 1e20 days", "fim:\n  rescan_interval: 100000000000000000000d\n"),
    ("5,000-digit size", "network:\n  buffer_size: " + "9" * 5000 + "\n"),
])
def test_check_reports_hostile_config_and_exits_2(tmp_path: Path, name: str, text: str) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    done = _check(cfg)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert re.match(re.escape(str(cfg)) + r":\d+:\d+: ", done.stderr), done.stderr


def test_check_refuses_a_fifo_as_the_config(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    done = _check(fifo)
    assert done.returncode == 2
    assert f"{fifo}:1:1: is a FIFO, not a regular file" in done.stderr
