"""The live session state over faust's web server, as JSON.

- ``GET /sessions/{id}``: one session (routed to the worker owning its partition); 404
  when unknown. A session that ended stays visible (``"active": false``) while its ended
  marker is in the table: at least ``PIPELINE_CUES_ENDED_RETENTION_S`` after its end,
  across restarts and rebalances (the marker is in the changelog).
- ``GET /sessions`` (``?active=1``: only running sessions): the sessions this worker holds.
"""

from __future__ import annotations

from typing import Any

import faust

from workers.cues.state import SessionState

__all__ = ["register_web"]


def register_web(app: faust.App, table: Any) -> None:
    """Add the ``/sessions`` pages to ``app``'s web server."""

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
