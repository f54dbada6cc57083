"""The daemon's running parts (sources, delivery sink, metrics endpoint) and their
replacement at a reload, built beside the running ones.

A reload that changes the config must never leave the daemon with fewer working
parts than before. :class:`Rebuild` first builds, beside the running parts,
everything that can be built without stopping them: the new delivery sink (the
journal is shared, see :func:`sentinel.sinks.journal.open_journal`), the new
metrics endpoint bound on its new address (or its TLS files loaded, when the
address stays), the new sources' objects. Any failure there closes what was
built and leaves the running parts untouched. Only then does :meth:`Rebuild.commit`
switch: sources (which cannot run twice: the baseline lock, duplicate events)
are stopped and the new ones started; if one fails to start, the new ones stop
and the old config's sources are started again. Parts whose config did not
change are kept as they are; a change of the addresses learned from the kernel alone
is no change of a part: the running network source takes them in place. Sources
are rebuilt one by one: only those whose parts of the config changed stop and start.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sentinel import logs
from sentinel.config import Config, HostConfig
from sentinel.metrics import Metrics
from sentinel.pipeline import Emit, Source
from sentinel.selfwatch.alerts import TAG as OWN_TAG
from sentinel.sinks import Delivery, build_delivery
from sentinel.sinks.metrics_http import Health, MetricsServer, TLSFiles
from sentinel.sources.auth import build_auth_source
from sentinel.sources.device import build_device_source
from sentinel.sources.fim import build_fim_source
from sentinel.sources.fim.scan import Scope
from sentinel.sources.fim.source import FimSource
from sentinel.sources.net import build_network_source
from sentinel.sources.net.source import NetworkSource

log = logs.get("daemon")


@dataclass
class Parts:
    """The components built from one config."""

    sources: list[Source]
    sink: Delivery
    server: MetricsServer | None


#: Each source's name, builder, and the parts of the config it is built from: a reload
#: rebuilds a source only when its parts changed (an edit of the FIM paths does not
#: reopen the network capture, which would leave packets unseen while it starts; a
#: change of home_nets does not re-walk the watched files).
_SOURCES: tuple[tuple[str, Callable[[Config, Metrics], Source | None],
                      Callable[[Config], tuple[object, ...]]], ...] = (
    ("fim", build_fim_source,
     lambda c: (_written_host(c), c.state_dir, c.fim, c.attribution)),
    ("network", build_network_source,
     lambda c: (_written_host(c), c.state_dir, c.network, c.attribution)),
    ("auth", build_auth_source, lambda c: (_written_host(c), c.state_dir, c.auth)),
    ("device", build_device_source, lambda c: (_written_host(c), c.state_dir, c.devices)),
)


def build_sources(config: Config, metrics: Metrics,
                  only: frozenset[str] | None = None) -> list[Source]:
    """The sources ``config`` asks for (of those named in ``only``, when given), built but
    not started."""
    sources: list[Source] = []
    for name, build, _ in _SOURCES:
        if only is not None and name not in only:
            continue
        src = build(config, metrics)
        if src is not None:
            sources.append(src)
    return sources


def changed_sources(old: Config, new: Config) -> frozenset[str]:
    """The names of the sources whose parts of the config differ from ``old`` to ``new``."""
    return frozenset(name for name, _, parts in _SOURCES if parts(old) != parts(new))


def build_server(config: Config, metrics: Metrics, health: Health) -> MetricsServer | None:
    if not config.outputs.metrics.enabled:
        return None
    return MetricsServer(config.outputs.metrics, metrics, health)


def build_parts(config: Config, metrics: Metrics, health: Health) -> Parts:
    """Everything for a first start (nothing started yet but the sink's workers)."""
    sink = build_delivery(config, metrics)
    return Parts(build_sources(config, metrics), sink, build_server(config, metrics, health))


def _written_host(config: Config) -> HostConfig:
    """``config.host`` without the addresses learned from the kernel: those are taken in
    place (:func:`take_own_addresses`), so a change of them alone rebuilds nothing."""
    learned = set(config.learned_addresses)
    if not learned:
        return config.host
    return dataclasses.replace(config.host, addresses=tuple(
        a for a in config.host.addresses if a not in learned))


def _sources_differ(old: Config, new: Config) -> bool:
    return bool(changed_sources(old, new))


def _sink_differs(old: Config, new: Config) -> bool:
    o, n = old.outputs, new.outputs
    # the display zone is baked into the webhook payloads
    return (_written_host(old), old.state_dir, o.journal, o.webhooks, old.timezone) != (
        _written_host(new), new.state_dir, n.journal, n.webhooks, new.timezone)


def take_own_addresses(parts: Parts, config: Config) -> None:
    """Give the running network source ``config``'s own addresses (after a reload that
    learned new ones or lost some), without a new capture."""
    for src in parts.sources:
        if isinstance(src, NetworkSource):
            src.own_addresses(config)


def parts_differ(old: Config, new: Config) -> bool:
    """Whether a reload from ``old`` to ``new`` has any part to rebuild."""
    return (_sources_differ(old, new) or _sink_differs(old, new)
            or old.outputs.metrics != new.outputs.metrics)


class Rebuild:
    """One reload's new parts: :meth:`prepare` beside the old, then :meth:`commit`."""

    def __init__(self, old: Parts, old_config: Config, config: Config, metrics: Metrics,
                 health: Health) -> None:
        self.old = old
        self.old_config = old_config
        self.config = config
        self.metrics = metrics
        self.health = health
        self._sink: Delivery | None = None
        self._server: MetricsServer | None = None
        self._server_changes = old_config.outputs.metrics != config.outputs.metrics
        self._server_started = False
        #: the sources to rebuild, by name (the others run on), and their new objects
        self._changed = changed_sources(old_config, config)
        self._sources: list[Source] | None = None

    def prepare(self) -> None:
        """Build and bind what can run beside the old parts; on failure undo and raise."""
        try:
            if _sink_differs(self.old_config, self.config):
                self._sink = build_delivery(self.config, self.metrics)
            if self._server_changes:
                self._server = build_server(self.config, self.metrics, self.health)
                if self._server is not None:
                    old = self.old.server
                    if old is None or self.old_config.outputs.metrics.listen != \
                            self.config.outputs.metrics.listen:
                        self._server.start()  # a port another process holds fails here
                        self._server_started = True
                    elif self.config.outputs.metrics.tls is not None:
                        # same address: it can only start once the old one stops, so its
                        # TLS files are loaded now, while refusing is still free
                        TLSFiles(self.config.outputs.metrics.tls)
            if self._changed:
                self._sources = build_sources(self.config, self.metrics, self._changed)
                added = _added_roots(self.old_config, self.config)
                for src in self._sources:
                    if isinstance(src, FimSource):
                        src.added_roots = added
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Close what :meth:`prepare` built; the old parts were never touched."""
        if self._server is not None and self._server_started:
            self._server.stop()
        if self._sink is not None:
            self._sink.close(1.0)
        self._sink = self._server = self._sources = None

    def commit(self, emit: Emit, install: Callable[[Parts], None], lock: threading.Lock,
               close_budget: float) -> Parts:
        """Switch to the new parts; on failure the old config's parts run again, and raise.

        ``install`` publishes the parts (under ``lock``, so no alert meets a closed sink).
        """
        old = self.old
        server = old.server
        late = self._server_changes and not self._server_started
        if late:
            # the same address: the old endpoint must let go of the port first
            if old.server is not None:
                old.server.stop()
            try:
                if self._server is not None:
                    self._server.start()
            except BaseException:
                self._restart_old_server()
                self.abort()
                raise
        if self._server_changes:
            server = self._server
        sources = old.sources
        if self._sources is not None:
            for src in old.sources:
                if src.name in self._changed:
                    _stop(src)
            started: list[Source] = []
            try:
                for src in self._sources:
                    src.start(emit)
                    started.append(src)
            except BaseException:
                for src in started:
                    _stop(src)
                self._restore_sources(emit)
                if late:
                    if self._server is not None:
                        self._server.stop()
                    self._restart_old_server()
                    self._server_started = False
                self.abort()
                raise
            sources = _in_order([*(s for s in old.sources if s.name not in self._changed),
                                 *self._sources])
        new = Parts(sources, self._sink or old.sink, server)
        with lock:
            install(new)
        if self._sink is not None:
            old.sink.close(close_budget)
        if self._server_changes and not late and old.server is not None:
            old.server.stop()
        return new

    def _restart_old_server(self) -> None:
        if self.old.server is None:
            return
        try:
            self.old.server.start()
        except OSError:
            # the port was taken in between: the endpoint is gone, say so loudly
            log.exception("metrics_endpoint_lost",
                          detail="the previous endpoint could not listen again")

    def _restore_sources(self, emit: Emit) -> None:
        """Start the old config's versions of the sources stopped for the new ones again
        (stopped sources do not restart); the others never stopped."""
        again = build_sources(self.old_config, self.metrics, self._changed)
        for src in again:
            try:
                src.start(emit)
            except Exception:
                log.exception("source_restore_failed", source=src.name)
        self.old.sources[:] = _in_order(
            [*(s for s in self.old.sources if s.name not in self._changed), *again])


def _added_roots(old: Config, new: Config) -> frozenset[str]:
    """The FIM paths ``new`` lists that ``old`` did not watch (no entry of it covers them,
    as file watching itself decides). sentinel's own files are never among them: one
    that joins the list (a key made while it ran) is a change to report."""
    before = Scope(old.fim.paths)
    return frozenset(str(e.path) for e in new.fim.paths
                     if OWN_TAG not in e.tags and before.entry_for(str(e.path)) is None)


def _in_order(sources: list[Source]) -> list[Source]:
    """``sources`` in the order they are built (and started at first start)."""
    order = {name: i for i, (name, _, _) in enumerate(_SOURCES)}
    return sorted(sources, key=lambda s: order.get(s.name, len(order)))


def _stop(src: Source) -> None:
    try:
        src.stop()
    except Exception:
        log.exception("source_stop_failed", source=src.name)
