"""Prometheus metrics of the session worker (``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ACTIVE_SESSIONS",
    "BYTES_SENT",
    "CHUNK_LATENCY",
    "CONSUMER_LAG",
    "EVENTS_PUBLISHED",
    "EVENTS_SUPPRESSED",
    "FRAME_SEND_LATENCY",
    "RECONNECTS",
    "SESSION_OPEN_LATENCY",
    "SHED_SECONDS",
]

ACTIVE_SESSIONS = Gauge("inter1_worker_active_sessions", "Video sessions held by this worker")
RECONNECTS = Counter(
    "inter1_worker_reconnects_total", "Inter-1 reconnects and failovers by cause", ["cause"]
)
EVENTS_PUBLISHED = Counter(
    "inter1_worker_events_published_total", "Inter1Event records published", ["event_type"]
)
EVENTS_SUPPRESSED = Counter(
    "inter1_worker_events_suppressed_total",
    "Re-analysed events not published (media time already published)",
)
BYTES_SENT = Counter("inter1_worker_media_bytes_sent_total", "Media bytes sent to Inter-1")
SHED_SECONDS = Counter(
    "inter1_worker_shed_seconds_total", "Media seconds of live sessions shed at the worker"
)
CONSUMER_LAG = Gauge(
    "inter1_worker_consumer_lag_records", "Chunk-topic records behind the end", ["partition"]
)
SESSION_OPEN_LATENCY = Histogram(
    "inter1_worker_session_open_seconds",
    "Connect to session.ready",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CHUNK_LATENCY = Histogram(
    "inter1_worker_chunk_first_event_seconds",
    "A chunk's produced_at to the publication of the first event after it was sent",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
FRAME_SEND_LATENCY = Histogram(
    "inter1_worker_frame_send_seconds",
    "Latency the worker adds to live media: the produced_at of the chunk that completed a "
    "frame to the frame handed to the WebSocket",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10),
)
