"""Every Prometheus metric sentinel exports (CONTRACT §6), on a registry passed in.

Nothing registers into prometheus_client's global registry: the daemon makes one
:class:`Metrics` on its own ``CollectorRegistry`` and hands it to every part;
tests make their own and read values back from it. Labels never carry
addresses or paths, so cardinality stays bounded.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)

from sentinel import __version__


class Metrics:
    """The metric families, created once per registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # `_created` series would double every counter's series in a fleet's
        # Prometheus for a value nobody graphs (the switch is process-wide)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.build_info = Gauge(
            "sentinel_build_info", "Always 1; the running version in a label", ["version"],
            registry=r,
        )
        self.build_info.labels(__version__).set(1)
        self.start_time = Gauge(
            "sentinel_start_time_seconds", "Unix time the daemon started", registry=r
        )
        # events and alerts
        self.events = Counter(
            "sentinel_events", "Events produced, by source and kind", ["source", "kind"],
            registry=r,
        )
        self.alerts = Counter(
            "sentinel_alerts", "Alerts raised, by rule and severity", ["rule", "severity"],
            registry=r,
        )
        # network
        self.packets = Counter(
            "sentinel_packets", "Packets read from capture, by interface", ["iface"], registry=r
        )
        self.packets_dropped = Counter(
            "sentinel_packets_dropped",
            "Packets the kernel dropped before sentinel read them (PACKET_STATISTICS)",
            ["iface"],
            registry=r,
        )
        self.decode_errors = Counter(
            "sentinel_decode_errors", "Malformed or truncated packets skipped", registry=r
        )
        self.capture_errors = Counter(
            "sentinel_capture_errors", "Capture socket failures, by interface", ["iface"],
            registry=r,
        )
        self.flows_active = Gauge("sentinel_flows_active", "Flows in the flow table", registry=r)
        self.flows_evicted = Counter(
            "sentinel_flows_evicted",
            "Flows removed from the table, by reason (idle, end, capacity)",
            ["reason"],
            registry=r,
        )
        self.ip_fragments = Counter(
            "sentinel_ip_fragments", "IP fragments (IPv4 and IPv6) taken for reassembly",
            registry=r,
        )
        self.ip_reassembly = Counter(
            "sentinel_ip_reassembly",
            "Fragmented datagrams by outcome (reassembled, overlap, duplicate, bad_length, "
            "timeout, capacity, truncated_chain)",
            ["result"],
            registry=r,
        )
        # file integrity
        self.fim_watched_files = Gauge(
            "sentinel_fim_watched_files", "Files under file-integrity watch", registry=r
        )
        self.fim_rescans = Counter(
            "sentinel_fim_rescans",
            "Rescans of watched paths, by reason (startup, overflow, watch_limit, periodic)",
            ["reason"],
            registry=r,
        )
        # the label values are few and known: exported at 0 from the start, so that
        # the first one is an increase a dashboard or an alert rule can see
        for reason in ("startup", "overflow", "watch_limit", "periodic"):
            self.fim_rescans.labels(reason)
        self.fim_baseline_valid = Gauge(
            "sentinel_fim_baseline_valid", "1 if the baseline's signature verified", registry=r
        )
        self.fim_errors = Counter(
            "sentinel_fim_errors",
            "File-integrity items that failed, by stage (read: unreadable file, event: internal,"
            " commit: the baseline could not be written)",
            ["stage"],
            registry=r,
        )
        self.fim_oldest_uncommitted = Gauge(
            "sentinel_fim_oldest_uncommitted_change_seconds",
            "Age of the oldest file change not yet in the baseline file: its alert is not"
            " journaled yet, or the baseline cannot be written (0 when none)",
            registry=r,
        )
        # rules
        self.rules_loaded = Gauge("sentinel_rules_loaded", "Rules currently active", registry=r)
        self.rule_eval_seconds = Histogram(
            "sentinel_rule_eval_seconds",
            "Time to evaluate one event against the rule set",
            buckets=(1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 0.1),
            registry=r,
        )
        self.alerts_storm_folded = Counter(
            "sentinel_alerts_storm_folded",
            "Alerts folded into storm summaries (past a rule's storm limit), by rule",
            ["rule"],
            registry=r,
        )
        self.alert_storm = Gauge(
            "sentinel_alert_storm",
            "1 while a rule's alerts fold into storm summaries, 0 when it has ended",
            ["rule"],
            registry=r,
        )
        self.rule_state_evictions = Counter(
            "sentinel_rule_state_evictions",
            "Threshold/change/suppression groups evicted at the per-rule cap",
            ["rule"],
            registry=r,
        )
        self.config_reloads = Counter(
            "sentinel_config_reloads", "Config and rule reloads, by result (success, failure)",
            ["result"],
            registry=r,
        )
        for result in ("success", "failure"):
            self.config_reloads.labels(result)
        self.config_last_reload_success = Gauge(
            "sentinel_config_last_reload_success", "1 if the last reload succeeded", registry=r
        )
        self.config_last_reload_success.set(1)
        self.config_last_reload_time = Gauge(
            "sentinel_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load",
            registry=r,
        )
        # delivery
        self.deliveries = Counter(
            "sentinel_deliveries",
            "Webhook delivery attempts, by target and result (success, retry, failed, error)",
            ["target", "result"],
            registry=r,
        )
        self.delivery_queue_depth = Gauge(
            "sentinel_delivery_queue_depth", "Alerts waiting in a target's spool", ["target"],
            registry=r,
        )
        self.delivery_oldest_pending = Gauge(
            "sentinel_delivery_oldest_pending_seconds",
            "Age of the oldest undelivered alert of a target",
            ["target"],
            registry=r,
        )
        self.journal_records = Counter(
            "sentinel_journal_records", "Alerts appended to the journal", registry=r
        )
        # a full or failing disk: alerts wait in memory instead of being lost
        self.journal_write_failures = Counter(
            "sentinel_journal_write_failures",
            "Journal appends that failed (disk full, I/O error); the alert is held and retried",
            registry=r,
        )
        self.journal_held = Gauge(
            "sentinel_journal_held_alerts",
            "Alerts held in memory because the journal cannot be written (lost on a crash)",
            registry=r,
        )
        self.spool_write_failures = Counter(
            "sentinel_spool_write_failures",
            "Spool inserts that failed, by target; the alert is re-queued from the journal",
            ["target"],
            registry=r,
        )
        self.spool_corrupt = Counter(
            "sentinel_spool_corrupt",
            "Spools found corrupt at start and moved aside, by target",
            ["target"],
            registry=r,
        )
        self.component_up = Gauge(
            "sentinel_component_up",
            "1 while a worker (capture, watcher, delivery) is alive",
            ["component"],
            registry=r,
        )
        self.device_events_lost = Counter(
            "sentinel_device_events_lost",
            "Times the kernel's device events overflowed the source's receive buffer:"
            " device events were lost",
            registry=r,
        )
        self.connection_owner_lookups = Counter(
            "sentinel_connection_owner_lookups",
            "Local connection events looked up for their process (attribution.connections),"
            " by outcome: resolved, or why not (socket_closed, other_user, process_exited,"
            " no_process, deadline, rate_limited, queue_full, raw_packet, unavailable, error)",
            ["outcome"],
            registry=r,
        )
        self.capture_up = Gauge(
            "sentinel_capture_up",
            "1 while the capture on a configured interface is open and reading; 0 while it"
            " is not (interface absent or down, socket error): the network source is blind"
            " there",
            ["iface"],
            registry=r,
        )
        # who changed a file (#19): the kernel's audit subsystem (sentinel.sources.audit)
        self.attribution_up = Gauge(
            "sentinel_attribution_up",
            "1 while file changes are attributed to processes (audit enabled, sentinel's"
            " watch rules loaded, records arriving); 0 while attribution.files is on but"
            " sentinel cannot tell who changed a file. source: fim (absent while attribution"
            " of that source is off)",
            ["source"],
            registry=r,
        )
        self.attribution_audit_was_off = Gauge(
            "sentinel_attribution_audit_was_off",
            "1 when kernel audit was off until sentinel enabled it: processes started before"
            " then are never attributed (boot with audit=1)",
            registry=r,
        )
        self.audit_records_lost = Counter(
            "sentinel_audit_records_lost",
            "Audit records sentinel could not use, by reason (unparseable, incomplete,"
            " overflow, socket: the receive buffer overflowed, kernel: the kernel's own"
            " lost count grew)",
            ["reason"],
            registry=r,
        )
        self.audit_rules_readded = Counter(
            "sentinel_audit_rules_readded",
            "Times sentinel found its audit watch rules gone (auditctl -D, an auditd restart)"
            " and added them again",
            registry=r,
        )
        self.attributions = Counter(
            "sentinel_attributions",
            "File events by whether their process was named (known) or not (unknown)",
            ["result"],
            registry=r,
        )
        self.attribution_barriers = Counter(
            "sentinel_attribution_barriers",
            "Waits for the audit records of file changes to come in: made (a canary round"
            " trip) or shared (a change whose event was read before a barrier began)",
            ["kind"],
            registry=r,
        )
        # public attestations
        self.attestations = Counter(
            "sentinel_attestations", "Signed attestations written, by result (success, failure)",
            ["result"],
            registry=r,
        )
        self.attestation_last_time = Gauge(
            "sentinel_attestation_last_timestamp_seconds",
            "Unix time of the last attestation written",
            registry=r,
        )
        self.info = Info("sentinel_host", "Identity of the monitored host", registry=r)
