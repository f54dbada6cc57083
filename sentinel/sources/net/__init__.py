"""The network source: live capture, a fast decoder, flows, and pcap replay.

``build_network_source(config, metrics)`` gives the daemon a
:class:`NetworkSource` (one named capture thread per interface), or None when
no interface is configured. ``iter_pcap_events`` runs capture files through
the same decoder and flow logic for ``sentinel replay``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sentinel.sources.net.replay import ReplayStats, iter_pcap_events

if TYPE_CHECKING:
    from sentinel.sources.net.source import NetworkSource, build_network_source

__all__ = ["NetworkSource", "ReplayStats", "build_network_source", "iter_pcap_events"]


def __getattr__(name: str) -> Any:
    # the live source is loaded on first use: it brings capture sockets and the
    # structured-logging stack, which replay does not need
    if name in ("NetworkSource", "build_network_source"):
        from sentinel.sources.net import source

        return getattr(source, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
