"""The live state of one session, kept in the cues app's changelog-backed faust table.

One JSON document per session (the table's value), holding what the web server shows
(engagement, active signals, latest quality scores, last cue) and what the rules need to
continue after a restart (open windows, quality streaks, cooldowns, the last applied
offset, which makes a replay of already applied events a no-op).

A session that ended keeps a small *ended marker* (its public fields and its last applied
offset, rule bookkeeping dropped) until the offset of its ``session.ended`` event is
committed: a replay of the session's tail then meets the marker and stays a no-op, where
a deleted state would start the session over and fire other cues.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ActiveSignal", "Engagement", "LastCue", "SessionState", "Window"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Engagement(_Model):
    """The engagement state the subject is in, and since when (media seconds)."""

    state: str
    since_s: float
    event_id: str


class ActiveSignal(_Model):
    """A signal detected and not ended yet."""

    start_s: float
    probability: str | None
    event_id: str


class LastCue(_Model):
    """The session's most recent cue (as published)."""

    cue_id: str
    rule: str
    severity: str
    message: str
    media_start_s: float
    media_end_s: float


class Window(_Model):
    """One open hopping window of a signal_count rule: matching events and whether it fired."""

    start_s: float
    events: list[tuple[str, float]] = Field(default_factory=list)
    fired: bool = False


class SessionState(_Model):
    """Everything the cues app keeps about one session."""

    session_id: str
    tenant: str | None = None
    app: str | None = None
    watermark_s: float = 0.0
    """Latest session media time any event of the session reached."""
    engagement: Engagement | None = None
    active_signals: dict[str, ActiveSignal] = Field(default_factory=dict)
    quality: dict[str, float] = Field(default_factory=dict)
    quality_at_s: float | None = None
    last_cue: LastCue | None = None
    cues: int = 0
    events: int = 0
    ended: bool = False
    partition: int | None = None
    """The session's events partition (the table is co-partitioned with it)."""
    applied_offset: int = -1
    """Offset (in the session's events partition) of the last event applied."""
    windows: dict[str, list[Window]] = Field(default_factory=dict)
    streaks: dict[str, list[tuple[str, float]]] = Field(default_factory=dict)
    cooldown_until_s: dict[str, float] = Field(default_factory=dict)
    engagement_fired_since_s: dict[str, float] = Field(default_factory=dict)
    recent_event_ids: dict[str, float] = Field(default_factory=dict)
    """Ids of the events applied lately -> their media time: the session worker publishes a
    window again after a crash or reconnect may have cut it (same ids), and a repeat must
    not count twice. Kept for ``RECENT_IDS_S`` of media behind the watermark."""

    def to_bytes(self) -> bytes:
        """The table value."""
        return self.model_dump_json().encode()

    def ended_marker(self) -> SessionState:
        """What an ended session keeps until its end is committed: no rule bookkeeping."""
        return self.model_copy(
            update={
                "windows": {},
                "streaks": {},
                "cooldown_until_s": {},
                "engagement_fired_since_s": {},
                "recent_event_ids": {},
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionState:
        """Read a table value."""
        return cls.model_validate_json(data)

    def public(self) -> dict[str, Any]:
        """The JSON the web server shows (rule bookkeeping left out)."""
        return {
            "session_id": self.session_id,
            "active": not self.ended,
            "tenant": self.tenant,
            "app": self.app,
            "media_time_s": self.watermark_s,
            "engagement": self.engagement.model_dump(exclude={"event_id"})
            if self.engagement
            else None,
            "active_signals": {
                name: signal.model_dump(exclude={"event_id"})
                for name, signal in sorted(self.active_signals.items())
            },
            "quality": dict(self.quality),
            "quality_at_s": self.quality_at_s,
            "last_cue": self.last_cue.model_dump() if self.last_cue else None,
            "cues": self.cues,
            "events": self.events,
        }
