"""Ended-session markers: which may leave the sessions table, and when.

A session's state is not deleted when its ``session.ended`` event is applied: it shrinks
to an ended marker (see ``workers.cues.state``). Deleting it there would let a replay of
the session's tail (the app crashed, or a rebalance revoked the partition, before the
offsets were committed) start the session over from an empty state and fire cues a clean
run never fires. A marker may go once the consumer group has committed past its
``session.ended`` offset (no replay can reach it any more) and it has been shown as
inactive for the retention time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["EndedMarkers"]


@dataclass(frozen=True)
class _Marker:
    offset: int
    expires_at: float  # time.monotonic()


class EndedMarkers:
    """Per events partition, the ended markers in the table, in the order they ended."""

    def __init__(self, retention_s: float) -> None:
        self._retention_s = retention_s
        self._markers: dict[int, OrderedDict[bytes, _Marker]] = {}
        self._indexed: set[int] = set()

    def needs_index(self, partition: int) -> bool:
        """True until ``add`` or ``indexed`` was called for ``partition`` (since the last reset)."""
        return partition not in self._indexed

    def indexed(self, partition: int) -> None:
        """The table's markers of ``partition`` have been added (after a start or rebalance)."""
        self._indexed.add(partition)

    def reset(self) -> None:
        """Partitions moved: index again from the table on their next event."""
        self._markers.clear()
        self._indexed.clear()

    def add(self, partition: int, key: bytes, offset: int) -> None:
        """``key`` ended at ``offset`` of ``partition``."""
        markers = self._markers.setdefault(partition, OrderedDict())
        markers.pop(key, None)
        markers[key] = _Marker(offset, time.monotonic() + self._retention_s)

    def discard(self, partition: int, key: bytes) -> None:
        """``key`` started again: its marker is a live state now."""
        self._markers.get(partition, OrderedDict()).pop(key, None)

    def expired(self, partition: int, committed: int | None) -> list[bytes]:
        """Remove and return the markers whose end is committed and retention is over.

        ``committed`` is the group's committed offset of ``partition`` (the next offset to
        read), or None when this process has not committed it yet (nothing is removable).
        """
        markers = self._markers.get(partition)
        if not markers or committed is None:
            return []
        now = time.monotonic()
        gone: list[bytes] = []
        for key, marker in list(markers.items()):
            # Offsets and expiries both grow in insertion order: stop at the first that stays.
            if marker.offset >= committed or marker.expires_at > now:
                break
            del markers[key]
            gone.append(key)
        return gone
