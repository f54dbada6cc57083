"""One module per `sentinel` subcommand; see :mod:`sentinel.cli`."""

from __future__ import annotations

import argparse
from pathlib import Path

from sentinel.config import DEFAULT_CONFIG


def add_config_arg(p: argparse.ArgumentParser) -> None:
    """The ``-c CONFIG`` option every command shares."""
    p.add_argument(
        "-c", "--config", type=Path, default=DEFAULT_CONFIG, metavar="CONFIG",
        help=f"configuration file (default: {DEFAULT_CONFIG})",
    )


def subparser(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    summary: str,
    description: str,
    example: str,
) -> argparse.ArgumentParser:
    """A subcommand parser whose --help says what it does and shows an example."""
    p: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return p
