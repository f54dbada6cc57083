"""Follow a log file across rotation, as ``tail -F`` does, one poll at a time.

rsyslog's auth.log is rotated by logrotate: renamed (a new file appears under the
name) or truncated in place (copytruncate). :meth:`FileTail.poll` reads what was
appended since the last call; when the name points at another file, the old
file is read to its end first and the new one from its start, so no line is lost
at a rotation. Lines are bytes split on ``\\n``; a line longer than
:data:`MAX_LINE` is cut there (a hostile record cannot grow memory).
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_LINE = 64 * 1024
_CHUNK = 256 * 1024


class FileTail:
    """The new complete lines of one file; ``open`` says whether it is being read."""

    def __init__(self, path: Path, from_end: bool = True) -> None:
        self.path = path
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self._pos = 0
        self._partial = b""
        self._from_end = from_end

    @property
    def open(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None

    def _open(self, at_end: bool) -> bool:
        try:
            # O_NOFOLLOW is not used: /var/log/auth.log may be a link a site set up
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return False
        st = os.fstat(fd)
        self._fd = fd
        self._ino = (st.st_dev, st.st_ino)
        self._pos = st.st_size if at_end else 0
        self._partial = b""
        return True

    def poll(self) -> list[bytes]:
        """Lines appended since the last poll (the first poll opens the file)."""
        lines: list[bytes] = []
        if self._fd is None:
            # the first open starts at the end (history is not news); a file that
            # appears later (after a rotation or a late start of rsyslog) from its start
            first, self._from_end = self._from_end, False
            if not self._open(first):
                return lines
        lines += self._read()
        try:
            st = os.stat(self.path)
        except OSError:
            return lines  # renamed away, the new one not there yet: keep the old open
        assert self._fd is not None
        if (st.st_dev, st.st_ino) != self._ino:
            lines += self._read()  # what the writer added before it let go of the old file
            if self._partial:
                lines.append(self._partial)
            self.close()
            if self._open(False):
                lines += self._read()
        elif st.st_size < self._pos:
            self._pos = 0  # truncated in place
            self._partial = b""
            lines += self._read()
        return lines

    def _read(self) -> list[bytes]:
        assert self._fd is not None
        out: list[bytes] = []
        while True:
            try:
                data = os.pread(self._fd, _CHUNK, self._pos)
            except OSError:
                return out
            if not data:
                return out
            self._pos += len(data)
            buf = self._partial + data
            *done, rest = buf.split(b"\n")
            out.extend(line[:MAX_LINE] for line in done)
            self._partial = rest[:MAX_LINE] if len(rest) > MAX_LINE else rest
