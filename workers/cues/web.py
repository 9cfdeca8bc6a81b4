"""The live session state over faust's web server, as JSON.

- ``GET /sessions/{id}``: one session (routed to the worker owning its partition); 404
  when unknown. A session that ended stays visible (``"active": false``) for
  ``PIPELINE_CUES_ENDED_RETENTION_S`` on the worker that saw it end.
- ``GET /sessions`` (``?active=1``: only running sessions): the sessions this worker holds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import faust

from workers.cues.state import SessionState

__all__ = ["EndedSessions", "register_web"]


class EndedSessions:
    """Final views of recently ended sessions (in memory only; bounded by age and count)."""

    def __init__(self, retention_s: float, limit: int = 10_000) -> None:
        self._retention_s = retention_s
        self._limit = limit
        self._views: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def add(self, view: dict[str, Any]) -> None:
        """Keep an ended session's final view."""
        self._views[str(view["session_id"])] = (time.monotonic() + self._retention_s, view)
        self._views.move_to_end(str(view["session_id"]))
        self._expire()

    def discard(self, session_id: str) -> None:
        """Forget a session (its id started again)."""
        self._views.pop(session_id, None)

    def get(self, session_id: str) -> dict[str, Any] | None:
        """The final view of an ended session, or None."""
        self._expire()
        entry = self._views.get(session_id)
        return entry[1] if entry else None

    def views(self) -> list[dict[str, Any]]:
        """Every kept final view."""
        self._expire()
        return [view for _, view in self._views.values()]

    def _expire(self) -> None:
        now = time.monotonic()
        while self._views and (
            len(self._views) > self._limit or next(iter(self._views.values()))[0] <= now
        ):
            self._views.popitem(last=False)


def register_web(app: faust.App, table: Any, ended: EndedSessions) -> None:
    """Add the ``/sessions`` pages to ``app``'s web server."""

    @app.page("/sessions/{session_id}")
    @app.table_route(table=table, match_info="session_id")
    async def session(web: Any, request: Any, session_id: str) -> Any:
        raw = table.get(session_id.encode())
        view = SessionState.from_bytes(raw).public() if raw else ended.get(session_id)
        if view is None:
            return web.json({"error": f"no session {session_id!r}"}, status=404)
        return web.json(view)

    @app.page("/sessions")
    async def sessions(web: Any, request: Any) -> Any:
        active_only = request.query.get("active", "") in ("1", "true", "yes")
        views = [SessionState.from_bytes(raw).public() for raw in list(table.values()) if raw]
        if not active_only:
            views += ended.views()
        views.sort(key=lambda view: str(view["session_id"]))
        return web.json({"sessions": views})
