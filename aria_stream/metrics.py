"""Prometheus metrics of one app, in a registry of its own so several apps can run in a process."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """The counters, gauges and histograms served at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.subscribers = Gauge("aria_stream_subscribers", "Open SSE streams.", registry=registry)
        self.events_sent = Counter(
            "aria_stream_events_sent",
            "SSE events written, by event name.",
            ["event"],
            registry=registry,
        )
        self.bytes_sent = Counter(
            "aria_stream_sent_bytes", "Bytes of SSE events written.", registry=registry
        )
        self.rows_dropped = Counter(
            "aria_stream_rows_dropped_lag",
            "Rows dropped for viewers that read too slowly.",
            registry=registry,
        )
        self.rows_skipped = Counter(
            "aria_stream_rows_skipped",
            "Upstream rows skipped because they could not be read.",
            registry=registry,
        )
        self.upstream_requests = Counter(
            "aria_stream_upstream_requests",
            "Requests to LiteLLM, by endpoint and outcome.",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "aria_stream_upstream_latency_seconds",
            "Seconds until LiteLLM's response headers, by endpoint.",
            ["endpoint"],
            registry=registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.poll_lag = Gauge(
            "aria_stream_poll_lag_seconds",
            "Seconds between now and the start time of the newest row seen by the poller.",
            registry=registry,
        )
        self.polls = Counter(
            "aria_stream_polls",
            "Polls of LiteLLM for new rows, by outcome.",
            ["outcome"],
            registry=registry,
        )
