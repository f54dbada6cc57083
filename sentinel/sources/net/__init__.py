"""The network source: live capture, a fast decoder, flows, and pcap replay.

``build_network_source(config, metrics)`` gives the daemon a
:class:`NetworkSource` (one named capture thread per interface), or None when
no interface is configured. ``iter_pcap_events`` runs capture files through
the same decoder and flow logic for ``sentinel replay``.
"""

from __future__ import annotations

from sentinel.sources.net.replay import ReplayStats, iter_pcap_events
from sentinel.sources.net.source import NetworkSource, build_network_source

__all__ = ["NetworkSource", "ReplayStats", "build_network_source", "iter_pcap_events"]
