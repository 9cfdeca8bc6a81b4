"""The cues app as a real process on the real broker: exact cues, crash and resume."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cues_app import CuesRun, read_cues, wait_until_consumed
from prometheus_client.parser import text_string_to_metric_families
from stream import RULES_FILE, expected_cues, known_stream

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

_SESSION = "sess-cues-1"


def _comparable(cue: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cue.items() if k != "fired_at"}


@dataclass(frozen=True)
class CleanRun:
    cues: list[dict[str, Any]]
    pages: dict[str, httpx.Response]
    """``/healthz``, ``/readyz`` and ``/metrics`` once every event was consumed."""


@pytest.fixture(scope="module")
def clean_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> CleanRun:
    """The known stream through one cues app that runs undisturbed; the cues it gave. The
    events of e3..e5 come twice, as the session worker publishes a window again after a
    crash may have cut it (same ids, later offsets): the cues are the same."""
    run = CuesRun(tmp_path_factory.mktemp("cues-clean"), RULES_FILE)
    asyncio.run(run.ensure_topics())
    run.start()
    events = known_stream(_SESSION).events
    try:
        asyncio.run(run.publish([*events[:6], *events[3:6], *events[6:]]))
        asyncio.run(wait_until_consumed(run))
        cues = asyncio.run(read_cues(run))
        base = f"http://127.0.0.1:{run.port}"
        pages = {path: httpx.get(base + path) for path in ("/healthz", "/readyz", "/metrics")}
    finally:
        code = run.stop()
    assert code == 0, "SIGTERM did not stop the cues app cleanly"
    return CleanRun(cues, pages)


def test_health_readiness_and_metrics(clean_run: CleanRun) -> None:
    pages = clean_run.pages
    assert (pages["/healthz"].status_code, pages["/healthz"].text) == (200, "ok\n")
    assert (pages["/readyz"].status_code, pages["/readyz"].text) == (200, "ready\n")
    samples = {
        (metric.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in text_string_to_metric_families(pages["/metrics"].text)
        for sample in metric.samples
        if sample.name.endswith("_total") or sample.name.endswith("_count")
    }
    assert samples[("inter1_cues_events_applied", ())] == 18
    assert samples[("inter1_cues_events_skipped", (("why", "repeated_event_id"),))] == 3
    fired = {
        labels: value for (name, labels), value in samples.items() if name == "inter1_cues_fired"
    }
    expected: dict[tuple[tuple[str, str], ...], float] = {}
    for cue in clean_run.cues:
        labels = (("rule", cue["rule"]), ("severity", cue["severity"]))
        expected[labels] = expected.get(labels, 0) + 1
    assert fired == expected
    assert samples[("inter1_cues_event_to_cue_seconds", ())] == len(clean_run.cues)


def test_known_stream_gives_exactly_the_expected_cues(clean_run: CleanRun) -> None:
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
    actual = [_comparable(cue) for cue in clean_run.cues]
    for cue in actual:
        cue.pop("event_timestamp")
    assert actual == expected
    assert len({cue["cue_id"] for cue in clean_run.cues}) == len(clean_run.cues)


# The kill points of the drill's second half (events e9..e17 on offsets 9..17). e13 fires
# disengaged-20 and e17 (session.ended) fires confusion-tail: each is killed after its cue is
# acked but before its state is written, and after its state is acked but before its offset
# can be committed. "random" kills as soon as a second-half cue is seen, wherever the app is.
_KILL_POINTS = ["after_cue@13", "after_state@13", "after_cue@17", "after_state@17", "random"]


def _skipped_offsets(run: CuesRun) -> set[int]:
    return {
        int(line["offset"])
        for line in run.log_events()
        if line.get("event") == "event already applied (replay); skipped"
    }


@pytest.mark.parametrize("kill_point", _KILL_POINTS)
def test_kill_9_and_restart_resumes_state_and_gives_the_same_cues(
    clean_run: CleanRun, tmp_path: Path, kill_point: str
) -> None:
    from workers.cues.cue import cue_id
    from workers.cues.faults import CRASH_EXIT_CODE

    events = known_stream(_SESSION).events
    crash_at = None if kill_point == "random" else kill_point
    run = CuesRun(tmp_path, RULES_FILE)
    asyncio.run(run.ensure_topics())
    run.start()
    try:
        # Phase 1: half the session, fully processed and committed, then kill -9.
        asyncio.run(run.publish(events[:9]))
        asyncio.run(wait_until_consumed(run))
        before = run.session(_SESSION)
        run.kill()
        run.start(crash_at=crash_at)
        # Nothing is left to replay (offsets were committed): the state comes from the changelog.
        resumed = run.session(_SESSION)
        assert resumed == before
        assert (resumed["events"], resumed["cues"], resumed["active"]) == (9, 2, True)
        assert resumed["engagement"] == {"state": "disengaged", "since_s": 12.0}
        assert resumed["last_cue"]["rule"] == "stress-under-tension"

        # Phase 2: the rest, and a crash in the middle of it.
        asyncio.run(run.publish(events[9:]))
        if crash_at is None:
            deadline = time.monotonic() + 60
            while len(asyncio.run(read_cues(run))) < 3:
                assert time.monotonic() < deadline, "no cue of the second half arrived"
                time.sleep(0.2)
            run.kill()
        else:
            assert run.wait_for_exit() == CRASH_EXIT_CODE
        run.start()
        asyncio.run(wait_until_consumed(run))
        cues = asyncio.run(read_cues(run))
        # The ended session resumes as an ended marker: every event applied exactly once.
        final = run.session(_SESSION)
        skipped = _skipped_offsets(run)
    finally:
        if run.process is not None and run.process.poll() is None:
            assert run.stop() == 0

    deduplicated = {cue["cue_id"]: _comparable(cue) for cue in cues}
    assert sorted(deduplicated.values(), key=lambda c: c["cue_id"]) == sorted(
        (_comparable(cue) for cue in clean_run.cues), key=lambda c: c["cue_id"]
    )
    assert (final["events"], final["cues"], final["active"]) == (18, 5, False)
    assert final["last_cue"]["rule"] == "confusion-tail"
    # What a replay on an empty state fired (the flake this drill caught): never again.
    assert cue_id(_SESSION, "hesitation-burst", f"{_SESSION}:0:000012") not in deduplicated
    if crash_at is not None:
        point, offset = crash_at.split("@")
        trigger = f"{_SESSION}:0:{int(offset):06d}"
        sent = [cue["cue_id"] for cue in cues if cue["trigger_event_id"] == trigger]
        expected = [cue["cue_id"] for cue in clean_run.cues if cue["trigger_event_id"] == trigger]
        if point == "after_cue":
            # The cue was out, the state was not: the replay sends the same cue again.
            assert sent == expected * 2
        else:
            # The state was out, the offset was not committed: the replay is a no-op.
            assert sent == expected
            assert int(offset) in skipped
