"""The sessions table: faust's in-memory store, plus the changelog offsets it already holds.

faust's ``memory://`` store reports no persisted offsets, so after every rebalance the
recovery re-reads the changelog from where its last recovery stopped, including the records
this very process wrote since. When a rebalance lands while the app is processing (the
second rebalance after a restart, or a member leaving), that re-read can wait forever:
the drill saw the app stop consuming, its recovery waiting for changelog records it had
itself written (offsets above the ones it had read) that never arrived. This store
remembers the offset of each changelog record it holds, read by a recovery or written by
the app (which reports it through ``set_persisted_offset`` once the broker acked it, as
faust does for RocksDB), so the next recovery knows the memory already holds it and starts
after it. Offsets of partitions the
store drops after a recovery are forgotten with them, so a partition that comes back is
read again in full.

The app's own writes (``put``) also record the key's partition and changelog offset:
faust's memory store learns a key's partition only from changelog records it read, so a
key the app wrote was never dropped when a rebalance moved its partition to another
worker, and this worker went on serving (and listing as active) its copy from before the
move. And a changelog record older than the one a key's value came from (a recovery
re-reading from a stale position, or records faust buffered and applies later) is ignored,
so the held value never goes back in time.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.stores.memory import Store as MemoryStore
from faust.types import TP
from faust.types.stores import StoreT

__all__ = ["SessionsTable"]


class _MemoryStoreWithOffsets(MemoryStore[bytes, bytes]):
    def __post_init__(self) -> None:
        super().__post_init__()
        self._offsets: dict[tuple[str, int], int] = {}
        self._key_offsets: dict[bytes, int] = {}

    def persisted_offset(self, tp: TP) -> int | None:
        return self._offsets.get((tp.topic, tp.partition))

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        key = (tp.topic, tp.partition)
        self._offsets[key] = max(offset, self._offsets.get(key, -1))

    def put(self, tp: TP, offset: int, key: bytes, value: bytes) -> None:
        """Hold ``value`` for ``key``: its changelog record is at ``offset`` of ``tp`` (acked)."""
        self.set_persisted_offset(tp, offset)
        self.data[key] = value
        self._key_partition[key] = tp.partition
        self._key_offsets[key] = offset

    def apply_changelog_batch(self, batch: Any, to_key: Any, to_value: Any) -> None:
        events = []
        for event in batch:
            key = to_key(event.key)
            if self._key_offsets.get(key, -1) >= event.message.offset:
                continue  # an older record of a key this store holds a newer value of
            self._key_offsets[key] = event.message.offset
            events.append(event)
        super().apply_changelog_batch(events, to_key, to_value)
        for event in events:  # what recovery read is held too
            self.set_persisted_offset(event.message.tp, event.message.offset)

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        active = {tp.partition for tp in active_tps}
        for held, partition in list(self._key_partition.items()):
            if partition not in active:
                self._key_offsets.pop(held, None)
        await super().on_recovery_completed(active_tps, standby_tps)
        for key in [key for key in self._offsets if key[1] not in active]:
            del self._offsets[key]


class SessionsTable(faust.Table[bytes, bytes]):
    """A ``faust.Table`` on the in-memory store that knows the changelog offsets it holds."""

    def _new_store(self) -> StoreT[bytes, bytes]:
        return _MemoryStoreWithOffsets(
            "memory://",
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )
