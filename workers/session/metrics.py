"""Prometheus metrics of the session worker (``/metrics``)."""

from __future__ import annotations

from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ACTIVE_SESSIONS",
    "BYTES_SENT",
    "CHECKPOINT_FLUSH_LATENCY",
    "CHUNK_CONSUME_LATENCY",
    "CHUNK_LATENCY",
    "CONSUMER_LAG",
    "EVENTS_PUBLISHED",
    "EVENTS_SUPPRESSED",
    "EVENT_PUBLISH_LATENCY",
    "FRAME_RELAY_LATENCY",
    "FRAME_SEND_LATENCY",
    "FRAME_WS_SEND_LATENCY",
    "LATENCY_BUCKETS_S",
    "PUBLISH_ACK_LATENCY",
    "RECONNECTS",
    "SESSION_OPEN_LATENCY",
    "SHED_SECONDS",
    "events_published",
]

ACTIVE_SESSIONS = Gauge("inter1_worker_active_sessions", "Video sessions held by this worker")
RECONNECTS = Counter(
    "inter1_worker_reconnects_total", "Inter-1 reconnects and failovers by cause", ["cause"]
)
EVENTS_PUBLISHED = Counter(
    "inter1_worker_events_published_total", "Inter1Event records published", ["event_type"]
)


@lru_cache(maxsize=64)
def events_published(event_type: str) -> Counter:
    """The ``EVENTS_PUBLISHED`` child of ``event_type`` (``labels()`` takes a lock and
    builds the label tuple on every call: kept for the kinds seen most)."""
    return EVENTS_PUBLISHED.labels(event_type)


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
LATENCY_BUCKETS_S = (
    *(0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.075),
    *(0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2.5, 5, 10),
)
"""Buckets of the per-frame and per-event latencies: fine up to the 100 ms target."""
FRAME_SEND_LATENCY = Histogram(
    "inter1_worker_frame_send_seconds",
    "Live media, end to end: the produced_at of the chunk that completed a frame to the "
    "frame written to the WebSocket (Kafka transit plus the worker's relay)",
    buckets=LATENCY_BUCKETS_S,
)
CHUNK_CONSUME_LATENCY = Histogram(
    "inter1_worker_chunk_consume_seconds",
    "Live media: a chunk's produced_at to its record handed to the worker by the consumer "
    "(Kafka transit, and the wait in the consumer's buffer while the loop was busy)",
    buckets=LATENCY_BUCKETS_S,
)
FRAME_RELAY_LATENCY = Histogram(
    "inter1_worker_frame_relay_seconds",
    "Live media, the worker's own time: the chunk that completed a frame handed to the worker "
    "by the consumer to the frame written to the WebSocket",
    buckets=LATENCY_BUCKETS_S,
)
FRAME_WS_SEND_LATENCY = Histogram(
    "inter1_worker_frame_ws_send_seconds",
    "Live media: the WebSocket send of one frame (write, and wait for the socket to drain)",
    buckets=LATENCY_BUCKETS_S,
)
EVENT_PUBLISH_LATENCY = Histogram(
    "inter1_worker_event_publish_seconds",
    "An event taken from the WebSocket to its Inter1Event record acknowledged by Kafka",
    buckets=LATENCY_BUCKETS_S,
)
CHECKPOINT_FLUSH_LATENCY = Histogram(
    "inter1_worker_checkpoint_flush_seconds",
    "One checkpoint's flush (publish and prune before the offsets are committed): the consume "
    "loop hands the worker no records meanwhile",
    buckets=LATENCY_BUCKETS_S,
)
PUBLISH_ACK_LATENCY = Histogram(
    "inter1_worker_publish_ack_seconds",
    "One outbox publish: records sent to Kafka to every acknowledgement",
    buckets=LATENCY_BUCKETS_S,
)
