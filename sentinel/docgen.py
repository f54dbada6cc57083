"""A man page and a bash completion, generated from the command line's own parser.

``python -m sentinel.docgen man`` prints ``sentinel.1`` (roff), ``python -m
sentinel.docgen bash`` prints a bash completion script. Both walk the argparse
tree that ``sentinel`` itself parses with, so they cannot drift from the CLI:
a new command, action or option appears in both at the next build.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from sentinel import __version__


@dataclass(frozen=True)
class Command:
    """One node of the command tree: ``sentinel``, ``sentinel baseline``, ``… init``."""

    path: tuple[str, ...]
    parser: argparse.ArgumentParser
    help: str
    options: tuple[argparse.Action, ...]
    children: tuple[Command, ...] = field(default=())


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:  # type: ignore[type-arg]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("sentinel",),
         help_text: str = "") -> Command:
    """The command tree below ``parser``, in the order ``--help`` lists it."""
    options = tuple(a for a in parser._actions
                    if not isinstance(a, argparse._SubParsersAction))
    children: list[Command] = []
    sub = _subparsers(parser)
    if sub is not None:
        helps = {a.dest: a.help or "" for a in sub._choices_actions}
        for name, child in sub.choices.items():
            children.append(walk(child, (*path, name), helps.get(name, "")))
    return Command(path, parser, help_text, options, tuple(children))


def _all(cmd: Command) -> Iterator[Command]:
    yield cmd
    for child in cmd.children:
        yield from _all(child)


def _roff(text: str) -> str:
    """Escape text for roff: backslashes, and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _option_usage(action: argparse.Action) -> str:
    if not action.option_strings:
        return action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    flags = ", ".join(action.option_strings)
    if action.nargs == 0:
        return flags
    meta = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    if action.choices:
        meta = "|".join(str(c) for c in action.choices)
    return f"{flags} {meta}"


def _options(cmd: Command) -> list[str]:
    out: list[str] = []
    for action in cmd.options:
        if action.help == argparse.SUPPRESS:
            continue
        out += [".TP", "\\fB" + _roff(_option_usage(action)) + "\\fR",
                _roff(action.help or "")]
    return out


def man_page(root: Command, date: str = "") -> str:
    """The roff source of sentinel(1)."""
    out = [
        f'.TH SENTINEL 1 "{date}" "sentinel {__version__}" "sentinel manual"',
        ".SH NAME",
        "sentinel \\- security monitoring for election tally servers",
        ".SH SYNOPSIS",
        ".B sentinel",
        "\\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        _roff(root.parser.description or ""),
        ".SH OPTIONS",
    ]
    out += _options(root)
    out.append(".SH COMMANDS")
    for cmd in _all(root):
        if cmd is root:
            continue
        out.append(".SS " + _roff(" ".join(cmd.path)))
        usage = cmd.parser.format_usage().removeprefix("usage: ").strip()
        out += [".nf", _roff(usage), ".fi"]
        out.append(_roff(cmd.parser.description or cmd.help))
        out += _options(cmd)
        if cmd.parser.epilog:
            out += [".PP", ".nf", _roff(cmd.parser.epilog), ".fi"]
    out += [
        ".SH EXIT STATUS",
        "0 success; 1 findings (drift, a tampered journal); 2 an error (bad config or rule"
        " file, unreadable input), reported as FILE:LINE:COL: message.",
        ".SH FILES",
        ".TP", "/etc/sentinel/config.yaml", "the configuration (\\-c default)",
        ".TP", "/etc/sentinel/rules/", "the rule pack",
        ".TP", "/var/lib/sentinel/", "baseline, journal and delivery spool",
    ]
    return "\n".join(out) + "\n"


def _words(cmd: Command) -> list[str]:
    words = [name for a in cmd.options for name in a.option_strings]
    words += [c.path[-1] for c in cmd.children]
    return words


def bash_completion(root: Command) -> str:
    """A bash completion script for ``sentinel``: commands, actions, options, files."""
    cases = []
    for cmd in _all(root):
        key = " ".join(cmd.path[1:])
        takes_file = [name for a in cmd.options for name in a.option_strings
                      if a.nargs != 0 and not a.choices]
        choices = {name: [str(c) for c in a.choices] for a in cmd.options
                   for name in a.option_strings if a.choices}
        lines = [f'    "{key}")', f'      words="{" ".join(_words(cmd))}"',
                 f'      file_opts="{" ".join(takes_file)}"']
        for name, values in choices.items():
            lines.append(f'      [[ $prev == "{name}" ]] && words="{" ".join(values)}"'
                         " && file_opts=''")
        lines.append("      ;;")
        cases.append("\n".join(lines))
    body = "\n".join(cases)
    return f"""# bash completion for sentinel (generated by python -m sentinel.docgen bash)
_sentinel() {{
  local cur prev words file_opts path="" i w
  cur="${{COMP_WORDS[COMP_CWORD]}}"
  prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  # the command path so far: the words before the cursor that are not options
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${{COMP_WORDS[i]}}"
    case "$w" in -*) continue ;; esac
    case " $(_sentinel_children "$path") " in
      *" $w "*) path="${{path:+$path }}$w" ;;
    esac
  done
  case "$path" in
{body}
  esac
  if [[ " $file_opts " == *" $prev "* ]]; then
    COMPREPLY=($(compgen -f -- "$cur"))
    return
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
_sentinel_children() {{
  case "$1" in
{_children_cases(root)}
  esac
}}
complete -o default -F _sentinel sentinel
"""


def _children_cases(root: Command) -> str:
    rows = []
    for cmd in _all(root):
        names = " ".join(c.path[-1] for c in cmd.children)
        rows.append(f'    "{" ".join(cmd.path[1:])}") echo "{names}" ;;')
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    from sentinel.cli import build_parser

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] not in (["man"], ["bash"]):
        print("usage: python -m sentinel.docgen man|bash", file=sys.stderr)
        return 2
    root = walk(build_parser())
    sys.stdout.write(man_page(root) if args[0] == "man" else bash_completion(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
