"""The simulator server: one port, WebSocket stream sessions plus HTTP usage endpoints.

Usage::

    async with Simulator(SimulatorConfig(port=0)) as sim:
        client = InterhumanClient(access_token="sim-key", base_url=sim.http_url)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from runtime.logs import get_logger
from simulator.backend import ModelBackend
from simulator.config import SimulatorConfig
from simulator.exceptions import SimulatorNotStartedError
from simulator.protocol import STREAM_MODELS, envelope, error_data
from simulator.routes import StreamRequest, key_id, route_http
from simulator.session import StreamSession
from simulator.usage import SessionUsage, UsageLedger
from simulator.windows import Reserve, Window

__all__ = ["Simulator"]

_log = get_logger("simulator.server")


class Simulator:
    """A local Inter-1 Stream API. No I/O until :meth:`start`; ``async with`` starts and stops."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.ledger = UsageLedger()
        self._server: Server | None = None
        self._requests: dict[ServerConnection, StreamRequest] = {}
        self._active = 0
        load = self.config.load
        self.backend: ModelBackend | None = None
        """The shared model backend (``LoadConfig.backend_capacity_s``), if configured."""
        if load.backend_capacity_s is not None:
            self.backend = ModelBackend(
                load.backend_capacity_s,
                max_wait_s=load.backend_max_wait_s,
                refuse_wait_s=load.backend_refuse_wait_s,
            )

    @property
    def port(self) -> int:
        """The bound port (resolved when ``config.port`` is 0)."""
        if self._server is None:
            raise SimulatorNotStartedError("the simulator is not started; call start() first")
        sockname: tuple[Any, ...] = next(iter(self._server.sockets)).getsockname()
        return int(sockname[1])

    @property
    def http_url(self) -> str:
        """Base URL for the SDK's ``base_url`` (``http://host:port``)."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def url(self) -> str:
        """WebSocket base URL (``ws://host:port``)."""
        return f"ws://{self.config.host}:{self.port}"

    @property
    def active_sessions(self) -> int:
        """Sessions currently served."""
        return self._active

    async def start(self) -> None:
        """Bind and start serving (idempotent)."""
        if self._server is not None:
            return
        limit = self.config.limits.max_segment_size_bytes
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            max_size=max(2 * limit, limit + (1 << 20)),
            max_queue=64,
            ping_interval=self.config.limits.ping_interval_s,
            ping_timeout=self.config.limits.ping_timeout_s,
            compression=None,
        )
        _log.info("simulator listening", url=self.http_url, capacity=self.config.load.capacity)

    async def stop(self) -> None:
        """Close the listener and every session (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=True)
        await server.wait_closed()
        _log.info("simulator stopped", sessions_served=len(self.ledger.sessions))

    async def serve_forever(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then stop cleanly."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        routed = route_http(request, self.config, self.ledger)
        if isinstance(routed, Response):
            return routed
        self._requests[connection] = routed
        return None

    async def _refuse(self, ws: ServerConnection, code: str, message: str | None = None) -> None:
        spec_close = {"ih2003": 4003, "ih4005": 1008, "ih1003": 1013}[code]
        await ws.send(envelope("error", error_data(code, message), uuid.uuid4().hex))
        await ws.close(spec_close, code)

    async def _handle(self, ws: ServerConnection) -> None:
        request = self._requests.pop(ws)
        log = _log.bind(api_version=request.api_version, key_id=key_id(request.key))
        if not request.grant.can_stream:
            log.info("session refused", code="ih2003")
            await self._refuse(ws, "ih2003")
            return
        if request.model is not None and (
            request.api_version != "v2" or request.model not in STREAM_MODELS
        ):
            log.info("session refused", code="ih4005", model=request.model)
            await self._refuse(ws, "ih4005", f"Unknown stream model {request.model!r}.")
            return
        if request.model is not None and request.model not in request.grant.models:
            log.info("session refused", code="ih2003", model=request.model)
            await self._refuse(ws, "ih2003", f"The credential may not use model {request.model!r}.")
            return
        if self._active >= self.config.load.capacity:
            log.info("session refused", code="ih1003", active=self._active)
            await self._refuse(ws, "ih1003")
            return
        backend = self.backend
        if backend is not None and not backend.accepts_sessions(time.monotonic()):
            log.info(
                "session refused", code="ih1003", backend_wait_s=backend.wait_s(time.monotonic())
            )
            await self._refuse(ws, "ih1003", "The model backend is saturated; retry later.")
            return
        usage = SessionUsage(
            session_id=uuid.uuid4().hex,
            api_version=request.api_version,
            model=request.model,
            key_id=key_id(request.key),
            faults=request.faults.describe(),
        )
        self.ledger.open(usage)
        self._active += 1
        log.info("session started", session_id=usage.session_id, faults=usage.faults)
        try:
            session = StreamSession(
                ws,
                config=self.config,
                usage=usage,
                grant=request.grant,
                faults=request.faults,
                reserve=self._reserver(usage.session_id, request),
            )
            await session.run()
        finally:
            self._active -= 1
            if self.backend is not None:
                self.backend.leave(usage.session_id)

    def _reserver(self, session_id: str, request: StreamRequest) -> Reserve | None:
        """The session's access to the shared backend: windows cost ratio x window length."""
        backend = self.backend
        if backend is None:
            return None
        backend.join(session_id)
        ratio = request.faults.processing_ratio
        if ratio is None:
            ratio = self.config.load.processing_ratio

        def reserve(
            window: Window, now: float, earliest: float, latest: float
        ) -> tuple[float, float] | str:
            cost = ratio * (window.end_ms - window.start_ms) / 1000.0
            slot = backend.reserve(session_id, cost, now=now, earliest=earliest, latest=latest)
            return slot if isinstance(slot, str) else (slot.start, slot.done)

        return reserve
