"""Fixtures for the attestation tests: a site config under the test's tmp_path."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from sentinel.config import Config
from sentinel.config_reader import load_config


@pytest.fixture
def site(tmp_path: Path) -> Callable[..., Config]:
    """Write a config under ``tmp_path`` (state in ``tmp_path/state``) and load it."""

    def make(schedules: str = "", attest: str = "", webhooks: str = "") -> Config:
        state = tmp_path / "state"
        state.mkdir(exist_ok=True)
        (tmp_path / "rules").mkdir(exist_ok=True)
        text = textwrap.dedent(f"""\
            host: {{name: tally-01, addresses: [10.20.0.10]}}
            state_dir: {state}
            fim:
              paths: [{{path: {tmp_path / 'opt'}, tags: [tally-binaries]}}]
              key_file: baseline.key
            rules: {{paths: [rules/]}}
            """)
        if schedules:
            text += "schedules:\n" + textwrap.indent(textwrap.dedent(schedules), "  ")
        if attest:
            text += "attest:\n" + textwrap.indent(textwrap.dedent(attest), "  ")
        if webhooks:
            text += "outputs:\n  webhooks:\n" + textwrap.indent(textwrap.dedent(webhooks), "    ")
        cfg = tmp_path / "config.yaml"
        cfg.write_text(text)
        return load_config(cfg)

    return make
