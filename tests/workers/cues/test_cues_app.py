"""The cues app as a real process on the real broker: exact cues, crash and resume."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from cues_app import CuesRun, read_cues, wait_until_consumed
from stream import RULES_FILE, expected_cues, known_stream

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

_SESSION = "sess-cues-1"


def _comparable(cue: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cue.items() if k != "fired_at"}


@pytest.fixture(scope="module")
def clean_run(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> list[dict[str, Any]]:
    """The known stream through one cues app that runs undisturbed; the cues it gave."""
    run = CuesRun(tmp_path_factory.mktemp("cues-clean"), RULES_FILE)
    asyncio.run(run.ensure_topics())
    run.start()
    try:
        asyncio.run(run.publish(known_stream(_SESSION).events))
        asyncio.run(wait_until_consumed(run))
        cues = asyncio.run(read_cues(run))
    finally:
        code = run.stop()
    assert code == 0, "SIGTERM did not stop the cues app cleanly"
    return cues


def test_known_stream_gives_exactly_the_expected_cues(clean_run: list[dict[str, Any]]) -> None:
    from workers.cues.cue import cue_id

    expected = [
        {
            "cue_id": cue_id(_SESSION, row["rule"], row["trigger_event_id"]),
            "session_id": _SESSION,
            **row,
            "tenant": "acme",
            "app": "coach",
        }
        for row in expected_cues(_SESSION)
    ]
    actual = [_comparable(cue) for cue in clean_run]
    for cue in actual:
        cue.pop("event_timestamp")
    assert actual == expected
    assert len({cue["cue_id"] for cue in clean_run}) == len(clean_run)


@pytest.mark.skip(
    reason="issue 11 open: on a loaded 2-core machine a kill -9 mid-session can make the "
    "restarted app emit a hesitation-burst cue with other evidence than a clean run "
    "(state changelog vs committed offset); passes unloaded; fix before resolving"
)
def test_kill_9_and_restart_resumes_state_and_gives_the_same_cues(
    clean_run: list[dict[str, Any]], tmp_path: Path
) -> None:
    events = known_stream(_SESSION).events
    run = CuesRun(tmp_path, RULES_FILE)
    asyncio.run(run.ensure_topics())
    run.start()
    try:
        # Phase 1: half the session, fully processed and committed, then kill -9.
        asyncio.run(run.publish(events[:9]))
        asyncio.run(wait_until_consumed(run))
        before = run.session(_SESSION)
        run.kill()
        run.start()
        # Nothing is left to replay (offsets were committed): the state comes from the changelog.
        resumed = run.session(_SESSION)
        assert resumed == before
        assert (resumed["events"], resumed["cues"], resumed["active"]) == (9, 2, True)
        assert resumed["engagement"] == {"state": "disengaged", "since_s": 12.0}
        assert resumed["last_cue"]["rule"] == "stress-under-tension"

        # Phase 2: the rest, killed as soon as the first of its cues is out.
        asyncio.run(run.publish(events[9:]))
        deadline = time.monotonic() + 60
        while len(asyncio.run(read_cues(run))) < 3:
            assert time.monotonic() < deadline, "no cue of the second half arrived"
            time.sleep(0.2)
        run.kill()
        run.start()
        asyncio.run(wait_until_consumed(run))
        cues = asyncio.run(read_cues(run))
    finally:
        if run.process is not None and run.process.poll() is None:
            assert run.stop() == 0

    deduplicated = {cue["cue_id"]: _comparable(cue) for cue in cues}
    assert sorted(deduplicated.values(), key=lambda c: c["cue_id"]) == sorted(
        (_comparable(cue) for cue in clean_run), key=lambda c: c["cue_id"]
    )
