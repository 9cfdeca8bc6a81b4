"""One Inter-1 connection through the official SDK, keeping every server envelope as JSON.

The SDK's iterator parses each envelope with ``parse_stream_event``, which raises on a
known kind with a value it does not know (a new signal type) and so ends a naive
``async for``. :class:`_RawStreamClient` keeps the decoded JSON instead: the worker maps
it to Avro itself (``schemas.inter1_events``), so new values pass through. It also opens
the WebSocket without per-message compression: media frames are already compressed.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Sequence
from typing import Any

from interhumanai import StreamClient
from interhumanai._sdk_metadata import with_sdk_header  # the SDK's own attribution header
from interhumanai.auth import StaticTokenProvider
from interhumanai.errors import InterhumanError
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.proxy import get_proxy
from websockets.uri import parse_uri

from runtime.logs import get_logger
from workers.session.exceptions import ConnectionClosedError

__all__ = ["Inter1Connection"]

_log = get_logger("workers.session.connection")
_ABNORMAL = 1006


@functools.cache
def _proxy_for(url: str) -> str | None:
    """The proxy ``websockets`` would pick for ``url`` from the environment, looked up once
    per URL: its own lookup scans ``os.environ`` twice on every connect (~1 ms each)."""
    return get_proxy(parse_uri(url))


class _RawStreamClient(StreamClient):
    """A :class:`StreamClient` whose events are the envelopes as decoded JSON dicts."""

    def _parse_event(self, payload: dict[str, Any]) -> Any:
        return payload

    async def connect(self) -> _RawStreamClient:
        """The SDK's ``connect`` without compression; a refused upgrade keeps its status."""
        token = await self._token_provider.get_token()
        try:
            self._ws = await ws_connect(
                self.url,
                additional_headers=with_sdk_header({"Authorization": f"Bearer {token}"}),
                compression=None,
                max_size=None,
                proxy=_proxy_for(self.url),
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ConnectionClosedError(
                f"{self._display_name} refused the WebSocket upgrade: HTTP {status}",
                close_code=status,
            ) from exc
        except (InvalidHandshake, OSError) as exc:
            raise ConnectionClosedError(
                f"{self._display_name} WebSocket connection failed: {exc}", close_code=_ABNORMAL
            ) from exc
        self._open = True
        self._session_ready = asyncio.get_running_loop().create_future()
        self._receiver = asyncio.create_task(self._receive_loop())
        return self


class Inter1Connection:
    """One Stream API connection: open, configure, send frames, read envelopes, close.

    No I/O before :meth:`open`. Every failure is a :class:`ConnectionClosedError` carrying
    the close code (or HTTP status) the reconnect policy reads.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        api_version: str,
        model: str | None = None,
    ) -> None:
        self._client = _RawStreamClient(
            token_provider=StaticTokenProvider(api_key),
            base_url=base_url,
            api_version=api_version,  # type: ignore[arg-type]  # validated by the settings
            model=model,
        )
        self.ready: dict[str, Any] = {}
        self.correlation_id: str | None = None

    async def open(self, timeout_s: float) -> dict[str, Any]:
        """Connect and wait for ``session.ready``; returns its envelope."""
        await self._client.connect()
        try:
            ready: Any = await asyncio.wait_for(self._client.wait_for_session_ready(), timeout_s)
        except (InterhumanError, TimeoutError) as exc:
            await self.abort()
            raise self.closed_error("closed before session.ready") from exc
        self.ready = dict(ready)
        correlation = ready.get("correlation_id")
        self.correlation_id = correlation if isinstance(correlation, str) else None
        return self.ready

    async def configure(self, include: Sequence[str], goal_dimensions: Sequence[str]) -> None:
        """Send a config frame (answered by ``session.updated`` or a non-fatal error)."""
        await self._guard(
            self._client.update_config(include=list(include), goal_dimensions=list(goal_dimensions))
        )

    async def send(self, frame: bytes) -> None:
        """Send one binary frame."""
        await self._guard(self._client.send_video(frame))

    async def request_close(self) -> None:
        """Ask for a graceful end (``session.close``)."""
        await self._guard(self._client.request_close())

    async def envelopes(self) -> AsyncIterator[dict[str, Any]]:
        """Every server envelope in arrival order, until the connection closes."""
        while True:
            try:
                item: Any = await self._client.__anext__()
            except StopAsyncIteration:
                return
            except InterhumanError as exc:  # a malformed frame: the connection goes on
                _log.warning("inter1_malformed_frame", error=str(exc))
                continue
            yield item

    async def abort(self) -> None:
        """Close at once (going away), dropping in-flight analysis."""
        try:
            await self._client.close(1001, "worker going away")
        except Exception as exc:
            _log.debug("inter1_abort_failed", error=repr(exc))

    @property
    def close_code(self) -> int | None:
        """The close code once closed."""
        info = self._client.close_info
        return None if info is None else info.code

    def closed_error(self, what: str, error_code: str | None = None) -> ConnectionClosedError:
        """A :class:`ConnectionClosedError` for the close seen (1006 when unknown)."""
        info = self._client.close_info
        code = info.code if info is not None else _ABNORMAL
        pre_ready = self._client._pre_ready_error or {}  # the SDK's record of a refusal
        error_code = error_code or pre_ready.get("code")
        reason = f" ({info.reason})" if info is not None and info.reason else ""
        return ConnectionClosedError(
            f"Inter-1 connection {what}: close {code}{reason}"
            + (f", error {error_code}" if error_code else ""),
            close_code=code,
            error_code=error_code,
        )

    async def _guard(self, call: Any) -> None:
        try:
            await call
        except InterhumanError as exc:
            raise self.closed_error("closed while sending") from exc
