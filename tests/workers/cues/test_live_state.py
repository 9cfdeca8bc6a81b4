"""The live session state over HTTP is current after every event (real broker, real app)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from cues_app import CuesRun, wait_until_consumed
from events import SessionEvents
from stream import RULES_FILE, known_stream

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

_ENDED = "sess-live-ended"
_OPEN = "sess-live-open"
_SCORES = {
    "quality_index": 70.0,
    "clarity": 60.0,
    "authority": 60.0,
    "energy": 50.0,
    "rapport": 70.0,
    "learning": 50.0,
}


def _open_session() -> list[dict[str, Any]]:
    s = SessionEvents(_OPEN)
    s.engagement("engaged", 0.0)
    s.detected("tension", 2.0)
    return s.events


def _local_ids(run: CuesRun, active_only: bool = False) -> list[str]:
    """The sessions ``run``'s worker holds itself (``GET /sessions`` is not routed)."""
    params = {"active": "1"} if active_only else {}
    response = httpx.get(f"http://127.0.0.1:{run.port}/sessions", params=params)
    assert response.status_code == 200
    return [view["session_id"] for view in response.json()["sessions"]]


def test_live_state_is_the_final_state_after_the_session_ends(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    from workers.cues.cue import cue_id

    events = known_stream(_ENDED).events
    run = CuesRun(tmp_path, RULES_FILE)
    asyncio.run(run.ensure_topics())
    run.start()
    try:
        # The first four events: the state the stale page kept showing.
        asyncio.run(run.publish(events[:4] + _open_session()))
        asyncio.run(wait_until_consumed(run))
        early = run.session(_ENDED)
        assert (early["events"], early["active"], early["cues"]) == (4, True, 0)
        assert sorted(_local_ids(run, active_only=True)) == [_ENDED, _OPEN]

        asyncio.run(run.publish(events[4:]))
        asyncio.run(wait_until_consumed(run))
        final = run.session(_ENDED)
        active = _local_ids(run, active_only=True)
        opened = run.session(_OPEN)
    finally:
        assert run.stop() == 0

    assert final == {
        "session_id": _ENDED,
        "active": False,
        "tenant": "acme",
        "app": "coach",
        "media_time_s": 39.0,
        "engagement": {"state": "disengaged", "since_s": 12.0},
        "active_signals": {
            "confusion": {"start_s": 38.0, "probability": "high"},
            "hesitation": {"start_s": 30.0, "probability": "high"},
            "stress": {"start_s": 15.0, "probability": "high"},
            "uncertainty": {"start_s": 27.0, "probability": "high"},
        },
        "quality": _SCORES,
        "quality_at_s": 33.0,
        "last_cue": {
            "cue_id": cue_id(_ENDED, "confusion-tail", f"{_ENDED}:0:000017"),
            "rule": "confusion-tail",
            "severity": "info",
            "message": "confusion x2",
            "media_start_s": 36.0,
            "media_end_s": 38.0,
        },
        "cues": 5,
        "events": 18,
    }
    assert active == [_OPEN]
    assert (opened["events"], opened["active"]) == (2, True)
    assert opened["active_signals"] == {"tension": {"start_s": 2.0, "probability": "high"}}


_MOVING = [f"sess-live-move-{n:02d}" for n in range(12)]


def test_a_rebalanced_session_is_served_current_by_every_worker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A second worker takes half the partitions mid-session, then leaves: the first one
    must not keep (and list as active) the copies of the sessions it gave away, and serves
    them current once they are back."""
    import time

    streams = {session: known_stream(session).events for session in _MOVING}
    first = CuesRun(tmp_path / "a", RULES_FILE)
    second = CuesRun(tmp_path / "b", RULES_FILE, prefix=first.prefix, app_id=first.app_id)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    asyncio.run(first.ensure_topics())
    first.start()
    try:
        asyncio.run(first.publish([e for events in streams.values() for e in events[:4]]))
        asyncio.run(wait_until_consumed(first))
        assert sorted(_local_ids(first, active_only=True)) == _MOVING

        second.start()
        deadline = time.monotonic() + 90
        while True:  # the rebalance gave the second worker its share of the sessions
            assert second.process is not None
            assert second.process.poll() is None, "the second worker exited"
            try:
                moved = _local_ids(second)
            except httpx.HTTPError:
                moved = []
            if moved:
                break
            assert time.monotonic() < deadline, "the second worker never took a partition"
            time.sleep(0.2)

        asyncio.run(first.publish([e for events in streams.values() for e in events[4:]]))
        asyncio.run(wait_until_consumed(first))
        views = {
            (worker.port, session): worker.session(session)
            for worker in (first, second)
            for session in _MOVING
        }
        listed = {worker.port: _local_ids(worker, active_only=True) for worker in (first, second)}
        held = sorted(_local_ids(first) + _local_ids(second))

        # The second worker leaves: its partitions come back to the first, read in full
        # from the changelog; no event arrives any more, and every offset gets committed.
        left = second.stop()
        deadline = time.monotonic() + 90
        while sorted(_local_ids(first)) != _MOVING:
            assert time.monotonic() < deadline, "the first worker never took the sessions back"
            time.sleep(0.2)
        asyncio.run(wait_until_consumed(first))
        back = {session: first.session(session) for session in _MOVING}
        listed_back = _local_ids(first, active_only=True)
    finally:
        codes = [w.stop() for w in (second, first) if w.process and w.process.poll() is None]
    assert (left, codes) == (0, [0])
    assert back == {session: views[first.port, session] for session in _MOVING}
    assert listed_back == []
    assert moved
    assert set(moved) < set(_MOVING)
    assert {
        key: (view["events"], view["cues"], view["active"], view["last_cue"]["rule"])
        for key, view in views.items()
    } == dict.fromkeys(views, (18, 5, False, "confusion-tail"))
    assert listed == {first.port: [], second.port: []}
    assert held == _MOVING  # each session on exactly one worker
