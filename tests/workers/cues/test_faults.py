"""The crash drills' fault injection: the spec it reads, off by default."""

from __future__ import annotations

import pytest

from runtime.errors import ConfigError
from workers.cues.faults import CrashPoint, parse_crash_at


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (None, None),
        ("", None),
        ("after_cue@13", CrashPoint("after_cue", 13)),
        ("after_state@0", CrashPoint("after_state", 0)),
    ],
)
def test_parse_crash_at(spec: str | None, expected: CrashPoint | None) -> None:
    assert expected == parse_crash_at(spec)


@pytest.mark.parametrize("spec", ["after_cue", "before_cue@3", "after_state@-1", "after_cue@x"])
def test_a_bad_spec_is_a_config_error_naming_the_setting(spec: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_crash_at(spec)
    assert str(caught.value) == (
        f"PIPELINE_CUES_CRASH_AT={spec!r}: expected <after_cue|after_state>@<offset>"
    )


def test_another_point_or_offset_does_not_crash() -> None:
    point = CrashPoint("after_cue", 13)
    point.check("after_state", 13)
    point.check("after_cue", 12)  # still running: neither matched
