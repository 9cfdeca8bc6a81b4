"""Publishing records to the chunk topic with a bounded number of sends in flight.

:class:`KafkaPublisher` wraps the project's idempotent ``acks=all`` producer;
:class:`DryRunPublisher` acknowledges everything at once (``produce --dry-run``, benches).
Both return a delivery future per record (failing with :class:`PublishError`); :meth:`send`
waits while too many are in flight, which pushes back on the demuxing thread through the
session's bounded queue. aiokafka is imported only by a Kafka publisher that starts.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from producers.exceptions import PublishError, PublishNotAcceptedError
from runtime.logs import get_logger
from runtime.settings import KafkaSettings

__all__ = ["DryRunPublisher", "KafkaPublisher", "Publisher"]

_log = get_logger("producers.publisher")


class Publisher(Protocol):
    """Where session records go."""

    topic: str

    async def start(self) -> None: ...

    async def stop(self, *, timeout_s: float | None = None) -> None: ...

    async def recover(self) -> None:
        """Make the publisher usable again after a failed delivery (may raise PublishError)."""
        ...

    async def send(
        self, key: bytes, value: bytes, *, topic: str | None = None
    ) -> asyncio.Future[Any]:
        """Hand one record over (to ``topic``, default :attr:`topic`); returns a future
        resolved when it is acknowledged (or failed with :class:`PublishError`). Raises
        :class:`PublishError` when refused."""
        ...


class KafkaPublisher:
    """Sends to Kafka through an idempotent ``acks=all`` aiokafka producer.

    At most ``max_in_flight`` records and ``max_in_flight_bytes`` bytes are unacknowledged
    at any time (a single record bigger than the byte budget goes alone), which keeps
    memory bounded whatever the chunk size.
    """

    def __init__(
        self,
        topic: str,
        *,
        max_in_flight: int = 32,
        max_in_flight_bytes: int = 64 * 1024 * 1024,
        settings: KafkaSettings | None = None,
    ) -> None:
        self.topic = topic
        self._max_in_flight = max_in_flight
        self._max_in_flight_bytes = max_in_flight_bytes
        self._settings = settings
        self._producer: Any = None
        self._in_flight = 0
        self._in_flight_bytes = 0
        self._capacity: asyncio.Event | None = None
        self._outstanding: dict[asyncio.Future[Any], int] = {}  # acknowledgement -> bytes
        self._failed = False  # a delivery failed on the current client
        self._recovering = asyncio.Lock()
        self._retired: set[asyncio.Task[None]] = set()

    async def _connect(self) -> Any:
        """A started idempotent producer; PublishError when Kafka cannot be reached."""
        from aiokafka.errors import KafkaError

        from runtime.kafka import make_producer

        producer = make_producer(self._settings)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise PublishError(f"cannot connect to Kafka: {exc}") from exc
        return producer

    async def start(self) -> None:
        """Connect (idempotent)."""
        if self._producer is not None:
            return
        self._producer = await self._connect()
        self._capacity = asyncio.Event()

    async def stop(self, *, timeout_s: float | None = None) -> None:
        """Flush what is in flight and disconnect (idempotent).

        With ``timeout_s``, gives up flushing after that long (Kafka down: what the client
        still holds is dropped; live sessions have it in their spool).
        """
        producer, self._producer = self._producer, None
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.stop(), timeout_s)
        except TimeoutError:
            _log.warning("kafka_flush_abandoned", topic=self.topic, timeout_s=timeout_s)

    async def __aenter__(self) -> KafkaPublisher:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def send(
        self, key: bytes, value: bytes, *, topic: str | None = None
    ) -> asyncio.Future[Any]:
        """Queue one record, waiting while the in-flight budget is used up."""
        if self._producer is None or self._capacity is None:
            raise RuntimeError("KafkaPublisher.start() was not called")
        from aiokafka.errors import KafkaError, KafkaTimeoutError

        size = len(value)
        while not self._fits(size):
            self._capacity.clear()
            await self._capacity.wait()
        self._in_flight += 1
        self._in_flight_bytes += size
        try:
            future: asyncio.Future[Any] = await self._producer.send(
                topic or self.topic, value=value, key=key
            )
        except KafkaTimeoutError as exc:  # its buffer stayed full: Kafka is not taking records
            self._release(size)
            raise PublishNotAcceptedError(
                f"Kafka did not take a record for {topic or self.topic} in time: {exc!r}"
            ) from exc
        except KafkaError as exc:
            self._release(size)
            raise PublishError(f"Kafka refused a record for {topic or self.topic}: {exc}") from exc
        except BaseException:
            self._release(size)
            raise
        acked: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._outstanding[acked] = size
        client = self._producer
        future.add_done_callback(lambda done: self._acknowledged(done, acked, client))
        return acked

    def _acknowledged(
        self, done: asyncio.Future[Any], acked: asyncio.Future[Any], client: Any
    ) -> None:
        """Release the budget and pass the outcome on, a Kafka error as PublishError."""
        from aiokafka.errors import KafkaError

        size = self._outstanding.pop(acked, None)
        if size is None:  # already failed (and released) by recover()
            return
        self._release(size)
        if acked.done():
            return
        if done.cancelled():
            acked.cancel()
        elif (exc := done.exception()) is None:
            acked.set_result(done.result())
        elif isinstance(exc, KafkaError):
            if client is self._producer:
                self._failed = True
            error = PublishError(f"Kafka did not acknowledge a record: {exc}")
            error.__cause__ = exc
            acked.set_exception(error)
        else:
            acked.set_exception(exc)

    async def recover(self) -> None:
        """Replace the client if a delivery failed on it (a no-op otherwise).

        A failed batch leaves aiokafka's idempotent sequence numbers with a gap: every later
        batch of that partition fails with ``OutOfOrderSequenceNumber``, forever (aiokafka
        does not bump the producer epoch as the Java client does). A new client gets a new
        producer id. Records still unacknowledged on the old one fail with PublishError, so
        their senders send them again.

        Raises:
            PublishError: the new client cannot connect (Kafka still down); try again later.
        """
        async with self._recovering:
            if not self._failed or self._producer is None:
                return
            fresh = await self._connect()
            old, self._producer = self._producer, fresh
            self._failed = False
            abandoned = list(self._outstanding.items())
            self._outstanding.clear()
            for acked, size in abandoned:
                self._release(size)
                if not acked.done():
                    acked.set_exception(
                        PublishError("Kafka client replaced after a failed delivery; send again")
                    )
            _log.warning("kafka_client_replaced", topic=self.topic, abandoned=len(abandoned))
            retire = asyncio.ensure_future(self._retire(old))
            self._retired.add(retire)
            retire.add_done_callback(self._retired.discard)

    async def _retire(self, client: Any) -> None:
        """Close a replaced client without waiting for the batches it can no longer send."""
        try:
            await asyncio.wait_for(client.stop(), 1.0)
        except Exception as exc:  # a broken client's stop may fail; it is dropped anyway
            _log.debug("kafka_client_retired", error=repr(exc))

    def _fits(self, size: int) -> bool:
        if self._in_flight == 0:
            return True
        return (
            self._in_flight < self._max_in_flight
            and self._in_flight_bytes + size <= self._max_in_flight_bytes
        )

    def _release(self, size: int) -> None:
        self._in_flight -= 1
        self._in_flight_bytes -= size
        if self._capacity is not None:
            self._capacity.set()


class DryRunPublisher:
    """Acknowledges every record immediately and only counts them."""

    def __init__(self, topic: str = "dry-run") -> None:
        self.topic = topic
        self.records = 0
        self.bytes = 0
        self.largest = 0

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self, *, timeout_s: float | None = None) -> None:
        """Nothing to flush."""

    async def recover(self) -> None:
        """Nothing ever fails."""

    async def send(
        self, key: bytes, value: bytes, *, topic: str | None = None
    ) -> asyncio.Future[Any]:
        """Count the record and return an already-resolved future."""
        self.records += 1
        self.bytes += len(value)
        self.largest = max(self.largest, len(value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future
