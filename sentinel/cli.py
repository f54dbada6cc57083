"""The `sentinel` command line: parse, call, print, exit code (CONTRACT §1).

Each subcommand lives in ``sentinel/commands/<name>.py`` with a ``register``
function that adds its parser and sets ``func``; ``func(args)`` returns the exit
code. A command is listed here only once it works.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from sentinel import __version__, loglevel
from sentinel.located import ProblemError

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "run", "check", "replay", "baseline", "journal", "delivery", "attest", "report",
)

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one clear line, as every sentinel error does."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sentinel",
        description="Security monitoring for election tally servers: watches network traffic"
        " and file integrity, matches YAML rules, and delivers signed alerts.",
        epilog="example: sentinel check -c /etc/sentinel/config.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sentinel {__version__}")
    parser.add_argument("--log-level", choices=tuple(loglevel.LEVELS),
                        help="what the log shows: debug, info (default), warning or error;"
                        f" also the environment variable {loglevel.ENV_LEVEL}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"sentinel.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_level:
        os.environ[loglevel.ENV_LEVEL] = args.log_level
    try:
        loglevel.level_from_env()
    except ValueError as exc:
        print(f"sentinel: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        code: int = args.func(args)
    except ProblemError as exc:
        print(exc.render(getattr(args, "format", "text")), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
