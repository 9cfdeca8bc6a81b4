"""The operations endpoint of a worker process: ``/healthz``, ``/readyz``, ``/metrics``.

One tiny HTTP/1.1 responder on asyncio (GET only, ``Connection: close``): the kubelet's
probes and a Prometheus scrape are all it serves, so a web framework would be more code
to load than this. ``/readyz`` answers 503 until ``ready()`` is true (the process holds
partitions); ``/metrics`` calls ``before_metrics()`` first (e.g. to refresh a lag gauge).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

__all__ = ["OpsServer", "consumer_lag"]

Response = tuple[str, bytes, str]


class OpsServer:
    """Serves the three endpoints on ``host:port`` (0: a free port, see :attr:`port`)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ready: Callable[[], bool],
        before_metrics: Callable[[], None] | None = None,
    ) -> None:
        self._host, self._requested = host, port
        self._ready = ready
        self._before_metrics = before_metrics
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        """Listen; the bound port."""
        self._server = await asyncio.start_server(self._handle, self._host, self._requested)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            path = line.decode(errors="replace").split(" ")[1] if line.count(b" ") >= 2 else "/"
            status, body, kind = self.respond(path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def respond(self, path: str) -> Response:
        """Status line, body and content type for ``path``."""
        if path.startswith("/metrics"):
            if self._before_metrics is not None:
                self._before_metrics()
            return "200 OK", generate_latest(), CONTENT_TYPE_LATEST
        if path.startswith("/healthz"):
            return "200 OK", b"ok\n", "text/plain"
        if path.startswith("/readyz"):
            try:
                ready = self._ready()
            except RuntimeError:  # not started yet
                ready = False
            if ready:
                return "200 OK", b"ready\n", "text/plain"
            return "503 Service Unavailable", b"not assigned\n", "text/plain"
        return "404 Not Found", b"not found\n", "text/plain"


def consumer_lag(consumer: AIOKafkaConsumer, gauge: Gauge, *, with_topic: bool = False) -> None:
    """Set ``gauge`` for every assigned partition: high watermark - position (partitions not
    fetched yet, whose high watermark is unknown, are left as they are)."""
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is None:
            continue
        with contextlib.suppress(Exception):  # position unknown until the first fetch
            position = consumer._subscription.subscription.assignment.state_value(tp).position
            if position is not None:
                labels = (tp.topic, str(tp.partition)) if with_topic else (str(tp.partition),)
                gauge.labels(*labels).set(max(0, high - position))
