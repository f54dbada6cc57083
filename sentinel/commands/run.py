"""`sentinel run`: the daemon in the foreground."""

from __future__ import annotations

import argparse

from sentinel.commands import add_config_arg, subparser


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparser(
        sub,
        "run",
        "run the daemon in the foreground (systemd Type=notify)",
        "Run the monitoring daemon in the foreground: capture, file integrity, rules and"
        " alert delivery.\nSIGHUP (or an edit of the config or a rule file) reloads;"
        " SIGTERM/SIGINT drain and stop.\nExit 0 on a clean stop, 2 on a bad config at start.",
        "sentinel run -c /etc/sentinel/config.yaml",
    )
    add_config_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sentinel.daemon import run_daemon

    return run_daemon(args.config)
