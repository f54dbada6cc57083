"""rules/README.md: every YAML example in it loads against config.example.yaml and its
examples pass, and together they show every rule key, operator and transform."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sentinel.config_reader import load_config
from sentinel.engine import check_examples, load_rule_files
from sentinel.engine.conditions import OPERATORS
from sentinel.engine.fields import TRANSFORMS
from sentinel.engine.rules import RULE_KEYS
from tests.conftest import REPO

README = REPO / "rules" / "README.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_documented_rules_load_and_their_examples_pass(
    tmp_path: Path, block: str, example_secrets: dict[str, str]
) -> None:
    config = load_config(REPO / "config.example.yaml")
    path = tmp_path / "doc.yaml"
    path.write_text(block, encoding="utf-8")
    rules = load_rule_files([path], config.lists, config.list_marks, config.schedules)
    assert len(rules) >= 1
    assert check_examples(rules) == []


def test_documentation_shows_every_feature() -> None:
    text = "\n".join(BLOCKS)
    missing_keys = [k for k in RULE_KEYS if k != "enabled" and not re.search(rf"\b{k}:", text)]
    missing_ops = [op for op in OPERATORS if not re.search(rf"\b{op}:", text)]
    missing_tf = [t for t in TRANSFORMS if f"|{t}" not in text]
    assert (missing_keys, missing_ops, missing_tf) == ([], [], [])
    assert all(k in text for k in ("repeat:", "events:", "{i}", "$conf_dirs", "not:", "any_of:",
                                   "all_of:",
                                   "distinct:", "sum:", "group_by:", "{offline?"))
