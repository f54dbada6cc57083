"""YAML with positions, and problems reported as ``FILE:LINE:COL: message``.

Config and rule files are parsed into :class:`Node` trees that remember where
every key and value stood (1-based line and column), so that validation can
point at the offending text. A :class:`Checker` collects every problem of a
file before anything is reported.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True, slots=True)
class Mark:
    """A position in a file, 1-based."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file."""

    mark: Mark
    message: str
    rule_id: str | None = None

    def __str__(self) -> str:
        prefix = f"rule {self.rule_id!r}: " if self.rule_id else ""
        return f"{self.mark}: {prefix}{self.message}"

    def snippet(self) -> str:
        """The offending source line with a caret under the column, or ''."""
        try:  # the file may be the problem itself: /dev/zero, a FIFO, 8 GiB
            lines = read_bounded(Path(self.mark.file)).decode("utf-8", errors="replace")
        except ProblemError:
            return ""
        rows = lines.splitlines()
        if not 1 <= self.mark.line <= len(rows):
            return ""
        text = rows[self.mark.line - 1]
        return f"  {text}\n  {' ' * (self.mark.col - 1)}^"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.mark.file,
            "line": self.mark.line,
            "col": self.mark.col,
            "rule": self.rule_id,
            "message": self.message,
        }


class ProblemError(Exception):
    """Raised with every problem found in one or more input files."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def render(self, fmt: str = "text", snippets: bool = False) -> str:
        if fmt == "json":
            return json.dumps({"ok": False, "errors": [p.as_dict() for p in self.problems]})
        out = []
        for p in self.problems:
            out.append(str(p))
            if snippets and (s := p.snippet()):
                out.append(s)
        return "\n".join(out)


@dataclass(slots=True)
class Node:
    """A YAML value with its position; mappings also keep their keys' positions."""

    value: Any  # dict[str, Node] | list[Node] | str | int | float | bool | None
    mark: Mark
    key_marks: dict[str, Mark] = field(default_factory=dict)

    def plain(self) -> Any:
        """The value with positions stripped, recursively."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


def _mark(file: str, m: Any) -> Mark:
    """The 1-based position of a yaml mark (pure or libyaml), or 1:1 without one."""
    if m is None:
        return Mark(file, 1, 1)
    return Mark(file, m.line + 1, m.column + 1)


_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Limits on hostile input. A config or rule file is written by a person: these are
#: far above any real one, and far below what would exhaust the daemon.
MAX_FILE_BYTES = 8 * 2**20
#: Nesting deeper than this is refused before the (recursive) composer sees it.
MAX_DEPTH = 64
#: Nodes that aliases may add beyond the document's own: a billion-laughs bomb of a
#: few hundred bytes expands to millions; a real file reuses an anchor a few times.
MAX_ALIAS_NODES = 10_000


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.loader_cls = yaml.SafeLoader
        # one loader for the whole file: building one per node cost more than the parse
        self.loader = yaml.SafeLoader("")
        # aliases make the composed tree a graph: a node met again is an alias's expansion
        self._seen: set[int] = set()
        self._open: set[int] = set()
        self._alias_nodes = 0

    def build(self, node: yaml.Node) -> Node:
        mark = _mark(self.file, node.start_mark)
        key = id(node)
        if key in self._open:
            msg = "an alias refers to a node that contains it (a recursive anchor); not allowed"
            raise ProblemError([Problem(mark, msg)])
        if key in self._seen:
            self._alias_nodes += 1
            if self._alias_nodes > MAX_ALIAS_NODES:
                msg = (f"aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?);"
                       " write the values out or use fewer nested aliases")
                raise ProblemError([Problem(mark, msg)])
        self._seen.add(key)
        if not isinstance(node, yaml.ScalarNode):
            self._open.add(key)
            try:
                return self._build(node, mark)
            finally:
                self._open.discard(key)
        return self._build(node, mark)

    def _build(self, node: yaml.Node, mark: Mark) -> Node:
        if isinstance(node, yaml.MappingNode):
            # SafeLoader resolves merge keys ("<<") via flatten_mapping
            self.loader.flatten_mapping(node)
            out: dict[str, Node] = {}
            keys: dict[str, Mark] = {}
            for k, v in node.value:
                kmark = _mark(self.file, k.start_mark)
                kval = self._scalar(k) if isinstance(k, yaml.ScalarNode) else None
                if not isinstance(kval, str | int | float | bool):
                    self.problems.append(Problem(kmark, "mapping keys must be plain scalars"))
                    continue
                key = str(kval)
                if key in out:
                    self.problems.append(
                        Problem(kmark, f"duplicate key {key!r} (first at line {keys[key].line})")
                    )
                    continue
                out[key] = self.build(v)
                keys[key] = kmark
            return Node(out, mark, keys)
        if isinstance(node, yaml.SequenceNode):
            return Node([self.build(v) for v in node.value], mark)
        assert isinstance(node, yaml.ScalarNode)
        return Node(self._scalar(node), mark)

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            return node.value
        except (ValueError, OverflowError) as exc:
            # a timestamp that is no date (2024-02-30), an integer past Python's digit
            # limit: the YAML looks right but the value cannot exist
            shown = node.value if len(node.value) <= 40 else node.value[:37] + "..."
            what = ("an integer of more than 4300 digits" if "digits" in str(exc)
                    else f"not a valid {node.tag.rsplit(':', 1)[-1]} ({exc})")
            self.problems.append(Problem(_mark(self.file, node.start_mark),
                                         f"{shown!r} is {what}"))
            return node.value


def parse(text: str, file: str) -> Node:
    """Parse one YAML document into a :class:`Node`; raise ProblemError on any fault."""
    try:
        _check_depth(text, file)
        try:  # libyaml when present (about 10x faster); same nodes and marks
            root = yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:  # the pure parser's wording, which the messages below expect
            root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = _mark(file, exc.problem_mark or exc.context_mark)
        what = exc.problem or "YAML syntax error"
        ctx = f" ({exc.context})" if exc.context else ""
        if "block" in what or "\t" in what or "tab" in what:
            ctx += "; check the indentation (spaces, not tabs; siblings at the same column)"
        raise ProblemError([Problem(mark, f"YAML syntax error: {what}{ctx}")]) from None
    except yaml.YAMLError as exc:
        raise ProblemError([Problem(Mark(file, 1, 1), f"YAML error: {exc}")]) from None
    if root is None:
        return Node(None, Mark(file, 1, 1))
    builder = _Builder(file)
    node = builder.build(root)
    if builder.problems:
        raise ProblemError(builder.problems)
    return node


def _check_depth(text: str, file: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, from the parser's flat event stream.

    The composer and the builder recurse once per level: 5,000 levels would end in
    a RecursionError instead of a positioned problem."""
    for loader in (_FAST_LOADER, yaml.SafeLoader):
        depth = 0
        try:
            for event in yaml.parse(text, Loader=loader):
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                    if depth > MAX_DEPTH:
                        msg = (f"nested more than {MAX_DEPTH} levels deep; a config or rule"
                               " file needs far fewer")
                        raise ProblemError([Problem(_mark(file, event.start_mark), msg)])
                elif isinstance(event, yaml.CollectionEndEvent):
                    depth -= 1
            return
        except yaml.YAMLError:
            # libyaml may stop early (its own depth limit, a syntax error); the pure
            # parser is iterative and sees as far as the error: the composer reports it
            continue


def read_bounded(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or ProblemError.

    Opened without blocking and checked with fstat before reading, so that a FIFO
    (which would hang the open or the read), a device such as /dev/zero (which never
    ends) or a huge file is refused instead of read."""
    file = str(path)
    where = Mark(file, 1, 1)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise ProblemError([Problem(where, "file not found")]) from None
    except PermissionError:
        raise ProblemError([Problem(where, "permission denied")]) from None
    except OSError as exc:
        raise ProblemError([Problem(where, f"cannot read: {exc.strerror}")]) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ProblemError([Problem(where, "is a directory, expected a file")])
        if not stat.S_ISREG(st.st_mode):
            what = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or socket"
            raise ProblemError([Problem(where, f"is {what}, not a regular file; give a file")])
        if st.st_size > limit:
            raise ProblemError([Problem(where, f"is {st.st_size} bytes; at most {limit} bytes"
                                        " are read")])
        with os.fdopen(fd, "rb", closefd=False) as f:
            # the size may grow between fstat and read: read one byte past the limit
            blob = f.read(limit + 1)
    except OSError as exc:
        raise ProblemError([Problem(where, f"cannot read: {exc.strerror}")]) from None
    finally:
        os.close(fd)
    if len(blob) > limit:
        raise ProblemError([Problem(where, f"is larger than {limit} bytes, the most read")])
    return blob


def load(path: Path) -> Node:
    """Read and parse a YAML file; unreadable files are problems too."""
    file = str(path)
    blob = read_bounded(path)
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProblemError(
            [Problem(Mark(file, 1, 1), f"not UTF-8 text (byte {exc.start})")]
        ) from None
    return parse(text, file)


#: Past this a duration is a typo or an attack: added to a time it overflows.
MAX_DURATION = 3650 * 86400.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30,
}


def parse_duration(text: str) -> float | None:
    """``30s``, ``5m``, ``1h``, ``1h30m``, ``250ms``, ``2d`` -> seconds; None if invalid."""
    text = text.strip()
    if not text:
        return None
    pos = 0
    total = 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        return None
    return total


def parse_size(text: str) -> int | None:
    """``64MiB``, ``10MB``, ``4096`` -> bytes; None if invalid."""
    m = _SIZE.fullmatch(text.strip())
    if not m or len(m.group(1)) > 18:  # more digits than any real size; int() may refuse
        return None
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]


def type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


class Checker:
    """Collects problems while reading a :class:`Node` tree.

    Each reader returns the converted value, or None after recording a problem,
    so that validation goes on and every fault of a file is reported at once.
    """

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.rule_id: str | None = None

    def error(self, mark: Mark, message: str) -> None:
        self.problems.append(Problem(mark, message, self.rule_id))

    def raise_if_any(self) -> None:
        if self.problems:
            raise ProblemError(sorted(self.problems, key=_problem_order))

    def mapping(
        self,
        node: Node,
        where: str,
        allowed: Iterable[str],
        required: Iterable[str] = (),
    ) -> dict[str, Node] | None:
        """Check ``node`` is a mapping with only ``allowed`` keys and every ``required`` one."""
        if not isinstance(node.value, dict):
            self.error(node.mark, f"{where} must be a mapping, got {type_name(node.value)}")
            return None
        allowed_list = list(allowed)
        for key, kmark in node.key_marks.items():
            if key not in allowed_list:
                hint = ", ".join(allowed_list)
                self.error(kmark, f"unknown key {key!r} in {where}; valid keys: {hint}")
        for key in required:
            if key not in node.value:
                self.error(node.mark, f"{where} is missing required key {key!r}")
        return {k: v for k, v in node.value.items() if k in allowed_list}

    def string(self, node: Node, where: str, nonempty: bool = True) -> str | None:
        if not isinstance(node.value, str):
            self.error(node.mark, f"{where} must be a string, got {type_name(node.value)}")
            return None
        if nonempty and not node.value.strip():
            self.error(node.mark, f"{where} must not be empty")
            return None
        return node.value

    def boolean(self, node: Node, where: str) -> bool | None:
        if not isinstance(node.value, bool):
            self.error(node.mark, f"{where} must be true or false, got {type_name(node.value)}")
            return None
        return node.value

    def integer(
        self, node: Node, where: str, lo: int | None = None, hi: int | None = None
    ) -> int | None:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int):
            self.error(node.mark, f"{where} must be an integer, got {type_name(v)}")
            return None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
            self.error(node.mark, f"{where} must be in {rng}, got {v}")
            return None
        return v

    def number(self, node: Node, where: str) -> float | None:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int | float):
            self.error(node.mark, f"{where} must be a number, got {type_name(v)}")
            return None
        return float(v)

    def choice(self, node: Node, where: str, valid: Sequence[str]) -> str | None:
        v = node.value
        if not isinstance(v, str) or v not in valid:
            shown = repr(v) if isinstance(v, str) else type_name(v)
            self.error(node.mark, f"{where} is {shown}; valid: {', '.join(valid)}")
            return None
        return v

    def duration(self, node: Node, where: str, positive: bool = True) -> float | None:
        v = node.value
        secs = parse_duration(v) if isinstance(v, str) else None
        if secs is None:
            shown = repr(v) if isinstance(v, str) else type_name(v)
            self.error(
                node.mark,
                f"{where}: bad duration {shown}; valid: a number with a unit ms, s, m, h, d"
                " (e.g. 30s, 5m, 1h, 1h30m)",
            )
            return None
        if positive and secs <= 0:
            self.error(node.mark, f"{where}: duration must be greater than zero")
            return None
        if secs > MAX_DURATION:
            self.error(node.mark, f"{where}: duration {v!r} is too long; valid: at most"
                       " 3650d (ten years)")
            return None
        return secs

    def size(self, node: Node, where: str) -> int | None:
        v = node.value
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
        n = parse_size(v) if isinstance(v, str) else None
        if not n:
            shown = repr(v) if isinstance(v, str) else type_name(v)
            self.error(
                node.mark,
                f"{where}: bad size {shown}; valid: bytes with an optional unit"
                " B, KB, MB, GB, KiB, MiB, GiB (e.g. 64MiB)",
            )
            return None
        return n

    def seq(self, node: Node, where: str, allow_scalar: bool = False) -> list[Node] | None:
        if isinstance(node.value, list):
            return list(node.value)
        if allow_scalar and node.value is not None and not isinstance(node.value, dict):
            return [node]
        self.error(node.mark, f"{where} must be a list, got {type_name(node.value)}")
        return None

    def strings(self, node: Node, where: str, allow_scalar: bool = False) -> list[str] | None:
        items = self.seq(node, where, allow_scalar)
        if items is None:
            return None
        out = []
        ok = True
        for i, item in enumerate(items):
            s = self.string(item, f"{where}[{i}]")
            if s is None:
                ok = False
            else:
                out.append(s)
        return out if ok else None


def _problem_order(p: Problem) -> tuple[str, int, int]:
    return (p.mark.file, p.mark.line, p.mark.col)
