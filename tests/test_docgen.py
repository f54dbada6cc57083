"""The man page and the bash completion follow the CLI's own parser."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel.cli import build_parser
from sentinel.docgen import _all, walk
from tests.conftest import REPO


def _generate(kind: str, tmp_path: Path) -> Path:
    out = tmp_path / ("sentinel.1" if kind == "man" else "sentinel.bash")
    proc = subprocess.run([sys.executable, "-m", "sentinel.docgen", kind], cwd=REPO,
                          capture_output=True, text=True, check=True, timeout=60)
    out.write_text(proc.stdout)
    return out


def test_man_page_renders_cleanly_and_names_every_command_and_option(tmp_path: Path) -> None:
    if shutil.which("man") is None:
        pytest.skip("man is not installed (CI installs man-db)")
    page = _generate("man", tmp_path)
    proc = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True,
                          text=True, env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin"},
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    text = proc.stdout
    for cmd in _all(walk(build_parser())):
        assert " ".join(cmd.path) in text
        for action in cmd.options:
            for flag in action.option_strings:
                assert flag in text, (cmd.path, flag)


def _complete(script: Path, *words: str) -> list[str]:
    words_arr = " ".join(f"'{w}'" for w in words)
    bash = (f"source {script}; COMP_WORDS=({words_arr}); COMP_CWORD={len(words) - 1};"
            ' _sentinel; printf "%s\\n" "${COMPREPLY[@]}"')
    proc = subprocess.run(["bash", "-c", bash], capture_output=True, text=True, check=True,
                          timeout=30)
    return [w for w in proc.stdout.splitlines() if w]


def test_bash_completion_completes_commands_actions_options_and_choices(
        tmp_path: Path) -> None:
    script = _generate("bash", tmp_path)
    assert _complete(script, "sentinel", "bas") == ["baseline"]
    assert set(_complete(script, "sentinel", "baseline", "")) >= {"init", "verify"}
    assert "--events" in _complete(script, "sentinel", "baseline", "verify", "--")
    assert set(_complete(script, "sentinel", "check", "--format", "")) == {"text", "json"}
    # an option that takes a file completes file names
    (tmp_path / "site.yaml").write_text("")
    got = _complete(script, "sentinel", "check", "-c", str(tmp_path / "si"))
    assert got == [str(tmp_path / "site.yaml")]


def test_every_subcommand_is_in_the_completion(tmp_path: Path) -> None:
    script = _generate("bash", tmp_path)
    offered = set(_complete(script, "sentinel", ""))
    names = {cmd.path[1] for cmd in walk(build_parser()).children}
    assert names <= offered
