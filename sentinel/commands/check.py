"""`sentinel check`: validate the configuration and every rule, then run every rule's examples."""

from __future__ import annotations

import argparse
import json
import sys

from sentinel.commands import add_config_arg, subparser
from sentinel.config_reader import load_config
from sentinel.located import ProblemError

EXIT_OK = 0
EXIT_ERROR = 2


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


def _fail(exc: ProblemError, fmt: str) -> int:
    print(exc.render(fmt, snippets=True), file=sys.stderr)
    return EXIT_ERROR


def run(args: argparse.Namespace) -> int:
    # imported here: the engine brings the logging and metrics stacks, and the CLI
    # registers every command's parser at each start
    from sentinel.engine import check_examples, load_rules

    try:
        config = load_config(args.config)
        rules = load_rules(config)
    except ProblemError as exc:
        return _fail(exc, args.format)
    from sentinel.i18n import languages_in_use, local_iso, schedule_text

    problems = rules.check_texts(languages_in_use(config)) + check_examples(rules)
    if problems:
        return _fail(ProblemError(problems), args.format)
    for warning in config.warnings:  # suspect on this host, not invalid: exit stays 0
        if args.format == "text":
            print(warning, file=sys.stderr)
    examples = rules.example_count()
    tz = config.display_zone()
    if args.format == "json":
        print(json.dumps({"ok": True, "config": str(config.source), "rules": len(rules),
                          "files": len(rules.files), "examples": examples,
                          "digest": rules.digest(), "timezone": config.timezone,
                          "schedules": {n: [{"start": local_iso(w.start.timestamp(), tz),
                                             "end": local_iso(w.end.timestamp(), tz)}
                                            for w in ws] for n, ws in config.schedules.items()},
                          "warnings": [w.as_dict() for w in config.warnings]}))
    else:
        print(f"{config.source}: OK")
        for name, ws in config.schedules.items():  # in the display zone, as the site plans
            print(f"{name}: {schedule_text(ws, tz)}")
        print(f"{len(rules)} rules from {len(rules.files)} files OK, {examples} examples passed")
    return EXIT_OK
