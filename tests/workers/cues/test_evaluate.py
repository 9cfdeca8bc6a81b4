"""Rule evaluation, in process: exact firings for every rule kind."""

from __future__ import annotations

from typing import Any

from events import SessionEvents
from stream import RULES_FILE, expected_cues, known_stream

from workers.cues.cue import cue_id
from workers.cues.evaluate import Firing, apply_event
from workers.cues.rules import RuleSet, load_rules, parse_rules
from workers.cues.state import SessionState

_MESSAGE = {"message": "{rule}", "severity": "info"}


def _run(rules: RuleSet, events: SessionEvents) -> tuple[list[Firing], SessionState]:
    state = SessionState(session_id=events.session_id)
    firings: list[Firing] = []
    for event in events.events:
        # Round-trip the state like the table does after every event.
        firings += apply_event(state, event, rules)
        state = SessionState.from_bytes(state.to_bytes())
    return firings, state


def _rules(*rules: dict[str, Any]) -> RuleSet:
    return parse_rules({"rules": [{**_MESSAGE, **rule} for rule in rules]}, "test")


def _ids(firings: list[Firing]) -> list[tuple[str, float, float, tuple[str, ...], str]]:
    return [
        (f.rule, f.media_start_s, f.media_end_s, f.evidence_event_ids, f.trigger_event_id)
        for f in firings
    ]


def test_known_stream_gives_exactly_the_expected_firings() -> None:
    firings, state = _run(load_rules(RULES_FILE), known_stream("s1"))

    actual = [
        {
            "rule": f.rule,
            "kind": f.kind,
            "severity": f.severity,
            "message": f.message,
            "media_start_s": f.media_start_s,
            "media_end_s": f.media_end_s,
            "evidence_event_ids": list(f.evidence_event_ids),
            "trigger_event_id": f.trigger_event_id,
        }
        for f in firings
    ]
    assert actual == expected_cues("s1")
    assert state.ended is True
    assert state.windows == {}


def test_signal_count_hopping_windows_threshold_cooldown_and_late_events() -> None:
    rules = _rules(
        {"name": "burst", "kind": "signal_count", "signal_types": ["stress"], "min_count": 2,
         "window_s": 10.0, "hop_s": 5.0, "cooldown_s": 12.0},
    )  # fmt: skip
    s = SessionEvents("s")
    s.detected("stress", 1.0)  # 0: [0, 10)
    s.detected("stress", 6.0)  # 1: [0, 10) = 2 -> fires; [5, 15) = 1
    s.detected("stress", 11.0)  # 2: closes [0, 10); [5, 15) = 2 but cooling down until 18
    s.detected("stress", 4.0)  # 3: late: [0, 10) is closed; no window takes it
    s.detected("stress", 19.0)  # 4: [10, 20) = 2 (11, 19) at 19 >= 18 -> fires
    s.detected("stress", 21.0, "low")  # 5: low probability: not counted
    firings, _ = _run(rules, s)

    assert _ids(firings) == [
        ("burst", 1.0, 6.0, ("s:0:000000", "s:0:000001"), "s:0:000001"),
        ("burst", 11.0, 19.0, ("s:0:000002", "s:0:000004"), "s:0:000004"),
    ]


def test_signal_count_window_close_fires_when_media_time_passes_the_end() -> None:
    rules = _rules(
        {"name": "tail", "kind": "signal_count", "signal_types": ["confusion"], "min_count": 2,
         "window_s": 10.0, "fire_on": "window_close"},
    )  # fmt: skip
    s = SessionEvents("s")
    s.detected("confusion", 2.0)
    s.detected("confusion", 3.0)  # [0, 10) = 2, not fired yet
    s.engagement("engaged", 9.0)  # media time 9: still open
    s.engagement("neutral", 10.0)  # media time 10: [0, 10) closes -> fires
    s.detected("confusion", 12.0)  # [10, 20) = 1: never reaches 2
    s.session_ended()  # flush: [10, 20) closes without firing
    firings, _ = _run(rules, s)

    assert _ids(firings) == [("tail", 2.0, 3.0, ("s:0:000000", "s:0:000001"), "s:0:000003")]


def test_engagement_duration_fires_once_per_episode_after_the_threshold() -> None:
    rules = _rules(
        {"name": "gone", "kind": "engagement_duration", "min_duration_s": 10.0,
         "message": "{state} for {duration_s:g} s"},
    )  # fmt: skip
    s = SessionEvents("s", media_offset_s=100.0)
    s.engagement("disengaged", 3.0)  # 0: since 103
    s.detected("stress", 13.0)  # 1: 10 s: not longer than 10
    s.detected("stress", 14.0)  # 2: 11 s -> fires
    s.detected("stress", 20.0)  # 3: same episode: no second cue
    s.engagement("engaged", 21.0)  # 4
    s.engagement("disengaged", 22.0)  # 5: new episode since 122
    s.engagement("neutral", 40.0)  # 6: the event ending the episode completes it: 18 s
    firings, state = _run(rules, s)

    assert _ids(firings) == [
        ("gone", 103.0, 114.0, ("s:0:000000", "s:0:000002"), "s:0:000002"),
        ("gone", 122.0, 140.0, ("s:0:000005", "s:0:000006"), "s:0:000006"),
    ]
    assert [f.message for f in firings] == ["disengaged for 11 s", "disengaged for 18 s"]
    assert state.engagement is not None
    assert (state.engagement.state, state.engagement.since_s) == ("neutral", 140.0)


def test_quality_threshold_needs_consecutive_updates_below() -> None:
    rules = _rules(
        {"name": "flat", "kind": "quality_threshold", "dimension": "clarity", "below": 45.0,
         "consecutive": 3},
    )  # fmt: skip
    s = SessionEvents("s")
    s.quality(8.0, clarity=40.0)  # 0
    s.quality(11.0, clarity=44.0)  # 1
    s.quality(14.0, clarity=45.0)  # 2: not below: the streak resets
    s.quality(17.0, clarity=10.0)  # 3
    s.quality(20.0, clarity=20.0)  # 4
    s.quality(23.0, clarity=30.0)  # 5: third in a row -> fires, streak restarts
    s.quality(26.0, clarity=30.0)  # 6
    firings, state = _run(rules, s)

    assert _ids(firings) == [
        ("flat", 17.0, 23.0, ("s:0:000003", "s:0:000004", "s:0:000005"), "s:0:000005")
    ]
    assert state.quality["clarity"] == 30.0
    assert state.streaks == {"flat": [("s:0:000006", 26.0)]}


def test_co_occurrence_needs_the_other_signal_active() -> None:
    rules = _rules(
        {"name": "both", "kind": "co_occurrence", "signal_type": "stress",
         "while_active": ["tension", "frustration"], "probabilities": ["high"]},
    )  # fmt: skip
    s = SessionEvents("s")
    s.detected("stress", 1.0)  # 0: nothing active
    s.detected("frustration", 3.0)  # 1
    s.detected("tension", 2.0)  # 2
    s.detected("stress", 6.0, "medium")  # 3: probability not in the rule
    s.detected("stress", 9.0)  # 4: tension (since 2) is the earliest active -> fires
    s.ended("tension", 10.0)  # 5
    s.ended("frustration", 11.0)  # 6
    s.detected("stress", 12.0)  # 7: nothing active any more
    firings, state = _run(rules, s)

    assert _ids(firings) == [("both", 2.0, 9.0, ("s:0:000002", "s:0:000004"), "s:0:000004")]
    assert sorted(state.active_signals) == ["stress"]


def test_cue_id_is_deterministic_and_per_trigger() -> None:
    assert cue_id("s", "r", "s:0:000001") == cue_id("s", "r", "s:0:000001")
    assert len({cue_id("s", "r", "e1"), cue_id("s", "r", "e2"), cue_id("s", "q", "e1")}) == 3


def test_an_event_published_again_under_its_id_counts_once() -> None:
    # The session worker publishes a window again when a crash or reconnect may have cut
    # it: the same events under the same ids. Counting them twice would fire early.
    rules = _rules(
        {"name": "burst", "kind": "signal_count", "signal_types": ["stress"], "min_count": 3,
         "window_s": 30.0, "hop_s": 30.0},
    )  # fmt: skip
    s = SessionEvents("s")
    s.detected("stress", 1.0)
    s.detected("stress", 4.0)
    repeated = [dict(event) for event in s.events]  # window published again
    s.events += repeated
    s.detected("stress", 7.0)
    firings, state = _run(rules, s)

    assert _ids(firings) == [
        ("burst", 1.0, 7.0, ("s:0:000000", "s:0:000001", "s:0:000004"), "s:0:000004")
    ]
    assert state.events == 3
    assert sorted(state.recent_event_ids) == ["s:0:000000", "s:0:000001", "s:0:000004"]


def test_applied_event_ids_are_forgotten_behind_the_watermark() -> None:
    s = SessionEvents("s")
    for start in (0.0, 10.0, 20.0, 31.0, 45.0):
        s.detected("stress", start)
    rules = _rules(
        {"name": "other", "kind": "signal_count", "signal_types": ["confusion"], "min_count": 2,
         "window_s": 10.0},
    )  # fmt: skip
    _, state = _run(rules, s)
    # watermark 45: ids of events at or after 15 s are kept (RECENT_IDS_S = 30)
    assert state.recent_event_ids == {"s:0:000002": 20.0, "s:0:000003": 31.0, "s:0:000004": 45.0}
