"""The session worker: Kafka chunks -> one Inter-1 session per video session -> Avro events.

Entry point: :func:`workers.session.app.run_worker` (``inter1-pipeline session-worker``).
"""
