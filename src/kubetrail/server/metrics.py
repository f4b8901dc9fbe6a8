"""The server's own telemetry (Prometheus), one registry per server so tests can run several.

Every metric is documented in ``docs/server.md``; labels are bounded (receiver names from the config,
fixed outcome and stage names), never client addresses.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["ServerMetrics"]


class ServerMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "kubetrail_receiver_requests",
            "Requests/frames received, by receiver and outcome.",
            ["receiver", "outcome"],
            registry=r,
        )
        self.received_bytes = Counter(
            "kubetrail_receiver_bytes", "Bytes accepted into the WAL, by receiver.", ["receiver"], registry=r
        )
        self.rejected = Counter(
            "kubetrail_receiver_rejected",
            "Requests/frames rejected, by receiver and error code.",
            ["receiver", "code"],
            registry=r,
        )
        self.connections = Gauge(
            "kubetrail_receiver_connections",
            "Open stream connections, by receiver.",
            ["receiver"],
            registry=r,
        )
        self.wal_appends = Counter("kubetrail_wal_appends", "Records appended to the WAL.", registry=r)
        self.wal_fsyncs = Gauge("kubetrail_wal_fsyncs", "fsync calls of the WAL (group commits).", registry=r)
        self.wal_segments = Gauge("kubetrail_wal_segments", "WAL segments on disk.", registry=r)
        self.wal_checkpoint = Gauge(
            "kubetrail_wal_checkpoint_seq", "Last WAL seq durably stored.", registry=r
        )
        self.wal_ack_latency = Histogram(
            "kubetrail_wal_ack_latency_seconds",
            "Time from append to fsync.",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.queue_bytes = Gauge("kubetrail_queue_bytes", "Bytes accepted but not yet stored.", registry=r)
        self.queue_capacity = Gauge(
            "kubetrail_queue_capacity_bytes", "Capacity of the ingest queue.", registry=r
        )
        self.backpressure = Counter(
            "kubetrail_backpressure",
            "Times a client was told to wait (429/503, paused reads).",
            ["receiver", "kind"],
            registry=r,
        )
        self.events = Counter(
            "kubetrail_pipeline_events", "Events leaving each pipeline stage.", ["stage"], registry=r
        )
        self.parse_errors = Counter(
            "kubetrail_pipeline_parse_errors", "Events stored with event.parse_error set.", registry=r
        )
        self.pipeline_errors = Counter(
            "kubetrail_pipeline_errors",
            "WAL records that failed a stage, by stage and code.",
            ["stage", "code"],
            registry=r,
        )
        self.replayed = Counter(
            "kubetrail_wal_replayed_records", "WAL records replayed on start.", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
