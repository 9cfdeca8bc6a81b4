"""Ended-session markers: kept until their end is committed and their retention is over."""

from __future__ import annotations

from workers.cues.ended import EndedMarkers
from workers.cues.state import SessionState, Window


def test_a_marker_goes_only_once_the_group_committed_past_its_end() -> None:
    markers = EndedMarkers(retention_s=0.0)
    markers.add(0, b"a", 17)
    markers.add(0, b"b", 30)
    assert markers.expired(0, None) == []  # this process has not committed yet
    assert markers.expired(0, 17) == []  # offset 17 is still to be read: a replay reaches it
    assert markers.expired(0, 18) == [b"a"]
    assert markers.expired(0, 18) == []
    assert markers.expired(0, 31) == [b"b"]


def test_a_marker_stays_for_its_retention() -> None:
    markers = EndedMarkers(retention_s=3600.0)
    markers.add(0, b"a", 17)
    assert markers.expired(0, 100) == []


def test_markers_are_per_partition_and_a_restarted_session_drops_its_marker() -> None:
    markers = EndedMarkers(retention_s=0.0)
    markers.add(0, b"a", 5)
    markers.add(1, b"b", 5)
    markers.discard(1, b"b")
    assert markers.expired(1, 100) == []
    assert markers.expired(0, 100) == [b"a"]


def test_the_index_is_rebuilt_after_partitions_move() -> None:
    markers = EndedMarkers(retention_s=0.0)
    assert markers.needs_index(3)
    markers.indexed(3)
    assert not markers.needs_index(3)
    markers.add(3, b"a", 5)
    markers.reset()
    assert markers.needs_index(3)
    assert markers.expired(3, 100) == []


def test_an_ended_marker_keeps_the_public_view_and_the_offset_and_drops_the_bookkeeping() -> None:
    state = SessionState(
        session_id="s",
        partition=2,
        applied_offset=17,
        ended=True,
        cues=5,
        events=18,
        windows={"r": [Window(start_s=0.0, events=[("e", 1.0)])]},
        streaks={"q": [("e", 1.0)]},
        cooldown_until_s={"r": 60.0},
        engagement_fired_since_s={"d": 12.0},
    )
    marker = state.ended_marker()
    assert marker.public() == state.public()
    assert (marker.partition, marker.applied_offset, marker.ended) == (2, 17, True)
    assert (marker.windows, marker.streaks, marker.cooldown_until_s) == ({}, {}, {})
    assert marker.engagement_fired_since_s == {}
