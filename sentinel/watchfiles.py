"""Watch the config file and rule files; call back once a burst of edits settles.

Editors save in many ways (write in place, write a temp file and rename it
over, delete and recreate); each shows up as one or more inotify events on the
file or its folder. Every event on a watched file, or on a ``*.yaml``/``*.yml``
file inside a watched folder, restarts a debounce timer; the callback runs once
the timer expires.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from sentinel import logs

log = logs.get("reload-watch")


class FileWatch(FileSystemEventHandler):
    """Debounced change notification for a set of files and folders."""

    def __init__(self, paths: Iterable[Path], debounce: float, callback: Callable[[], None]):
        self.debounce = debounce
        self.callback = callback
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._files: set[Path] = set()
        self._dirs: set[Path] = set()
        self._split(paths)

    def _split(self, paths: Iterable[Path]) -> None:
        files: set[Path] = set()
        dirs: set[Path] = set()
        for p in paths:
            rp = p.resolve()
            (dirs if rp.is_dir() else files).add(rp)
        self._files, self._dirs = files, dirs

    def _roots(self) -> set[Path]:
        roots = {f.parent for f in self._files} | set(self._dirs)
        return {r for r in roots if r.is_dir()}

    def start(self) -> None:
        observer = Observer()
        observer.name = "reload-watch"
        for root in sorted(self._roots()):
            try:
                observer.schedule(self, str(root), recursive=root in self._dirs)
            except OSError as exc:
                log.warning("reload_watch_failed", path=str(root), error=str(exc))
        observer.daemon = True
        observer.start()
        self._observer = observer

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None

    def set_paths(self, paths: Iterable[Path]) -> None:
        """Follow a new set of paths (after a reload added or removed rule files)."""
        old = (set(self._files), set(self._dirs))
        self._split(paths)
        if old != (self._files, self._dirs) and self._observer is not None:
            self.stop()
            self.start()

    def _interesting(self, path: str) -> bool:
        p = Path(path)
        if p in self._files:
            return True
        if p.suffix not in (".yaml", ".yml"):
            return False
        return any(p.is_relative_to(d) for d in self._dirs)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if not any(p and self._interesting(str(p)) for p in paths):
            return
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce, self.callback)
            self._timer.name = "reload-debounce"
            self._timer.daemon = True
            self._timer.start()
