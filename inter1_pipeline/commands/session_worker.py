"""``inter1-pipeline session-worker``: Kafka chunks -> Inter-1 sessions -> Avro events."""

from __future__ import annotations

import click

__all__ = ["session_worker"]


@click.command("session-worker")
@click.option(
    "--http-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of /metrics, /healthz, /readyz (default: $PIPELINE_WORKER_HTTP_PORT, 9464).",
)
@click.option(
    "--group-id", default=None, help="Consumer group (default: $PIPELINE_WORKER_GROUP_ID)."
)
def session_worker(http_port: int | None, group_id: str | None) -> None:
    """Relay every video session on the chunk topic to one Inter-1 session each.

    Consumes the chunk topic in a consumer group, publishes every Inter-1 event to the
    events topic, usage to the usage topic, bad input to the dead-letter topic and
    per-session progress to the session-state topic; offsets are committed after those
    are durable. Inter-1 is INTER1_BASE_URL with INTER1_API_KEY (v1 by default,
    INTER1_API_VERSION=v2 for Inter-2). SIGTERM closes every session gracefully, flushes,
    commits and exits 0. Runs on uvloop unless PIPELINE_WORKER_EVENT_LOOP=asyncio.
    """
    from runtime.settings import Inter1Settings, KafkaSettings, SessionWorkerSettings, load
    from runtime.topics import topic_name
    from workers.session.app import run_worker
    from workers.session.event_loop import run_on
    from workers.session.outbox import WorkerTopics

    worker = load(SessionWorkerSettings)
    updates: dict[str, object] = {}
    if http_port is not None:
        updates["http_port"] = http_port
    if group_id is not None:
        updates["group_id"] = group_id
    if updates:
        worker = worker.replace(**updates)
    topics = WorkerTopics(
        chunks=topic_name("chunks"),
        events=topic_name("events"),
        usage=topic_name("usage"),
        dead_letter=topic_name("dead_letter"),
        session_state=topic_name("session_state"),
    )
    run_on(
        worker.event_loop,
        run_worker(topics, worker=worker, inter1=load(Inter1Settings), kafka=load(KafkaSettings)),
    )
