"""The live session state over faust's web server, as JSON.

- ``GET /sessions/{id}``: one session (routed to the worker owning its partition); 404
  when unknown. A session that ended stays visible (``"active": false``) while its ended
  marker is in the table: at least ``PIPELINE_CUES_ENDED_RETENTION_S`` after its end,
  across restarts and rebalances (the marker is in the changelog).
- ``GET /sessions`` (``?active=1``: only running sessions): the sessions this worker holds.
- ``GET /healthz`` (the process serves), ``GET /readyz`` (503 until partitions are
  assigned), ``GET /metrics`` (Prometheus, :mod:`workers.cues.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from workers.cues.state import SessionState

__all__ = ["register_web"]


def register_web(app: faust.App, table: Any, ready: Callable[[], bool]) -> None:
    """Add the ``/sessions`` and operations pages to ``app``'s web server; ``ready()``
    says whether the app holds partitions."""

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.text("ok\n")

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        try:
            assigned = ready()
        except (AttributeError, RuntimeError):  # the consumer is not created yet
            assigned = False
        return web.text("ready\n") if assigned else web.text("not assigned\n", status=503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # aiohttp takes the charset apart from the content type
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/sessions/{session_id}")
    @app.table_route(table=table, match_info="session_id")
    async def session(web: Any, request: Any, session_id: str) -> Any:
        raw = table.get(session_id.encode())
        if not raw:
            return web.json({"error": f"no session {session_id!r}"}, status=404)
        return web.json(SessionState.from_bytes(raw).public())

    @app.page("/sessions")
    async def sessions(web: Any, request: Any) -> Any:
        active_only = request.query.get("active", "") in ("1", "true", "yes")
        views = [SessionState.from_bytes(raw).public() for raw in list(table.values()) if raw]
        if active_only:
            views = [view for view in views if view["active"]]
        views.sort(key=lambda view: str(view["session_id"]))
        return web.json({"sessions": views})
