"""How many chunks a file session hands to the event loop per wake-up."""

from __future__ import annotations

import pytest

from producers.session import file_batch


@pytest.mark.parametrize(
    ("bit_rate", "chunk_duration_s", "expected"),
    [
        (None, 2.0, 4),  # bit rate unknown: the smallest batch
        (0, 2.0, 4),
        (525_993, 2.0, 15),  # the bench's 320x240 input: 131 kB chunks, 2 MiB a batch
        (3_154_827, 2.0, 4),  # 720p at 3 Mbit/s: 789 kB chunks, never fewer than 4
        (100_000, 2.0, 16),  # tiny chunks: never more than 16
        (525_993, 4.0, 7),
    ],
)
def test_file_batch_holds_about_2_mib(
    bit_rate: int | None, chunk_duration_s: float, expected: int
) -> None:
    assert file_batch(bit_rate, chunk_duration_s) == expected
