"""One model backend shared by every session of a simulator process, as a hosted service has.

The backend analyses ``capacity`` model-seconds per second in all (many windows at once,
each at one model-second per second). A window costs ``ratio x window length`` (8 s of
media, not the 3 s slice it owns). Its wait is the backlog of admitted work divided by
the capacity, modelled as a fluid that drains at ``capacity``. A window is shed
(``backpressure``) when its wait would exceed ``max_wait_s``, fairly: while the backend
is congested (wait above a quarter of that) a session served more than the average
session (share of its offered model time) is shed first, and a session served less may
wait up to ``max_wait_s x (1 + 4 x its shortfall)``. Overload is thus spread across
sessions instead of falling on whichever sessions happen to submit last. Past
``refuse_wait_s`` of backlog, new sessions are refused (``ih1003``, close 1013). Times are
passed in (``now``), so the arithmetic is exact and testable.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ModelBackend", "Slot"]


@dataclass(frozen=True)
class Slot:
    """An admitted window: when its analysis starts and ends (monotonic seconds)."""

    start: float
    done: float


@dataclass
class _Share:
    offered_s: float = 0.0
    served_s: float = 0.0

    @property
    def served(self) -> float:
        return self.served_s / self.offered_s if self.offered_s else 1.0


class ModelBackend:
    """A shared pool of ``capacity_s`` model-seconds per second, with fair shedding."""

    def __init__(self, capacity_s: float, *, max_wait_s: float, refuse_wait_s: float) -> None:
        self.capacity_s = capacity_s
        self.max_wait_s = max_wait_s
        self.refuse_wait_s = refuse_wait_s
        self._backlog_s = 0.0
        self._at = 0.0
        self._shares: dict[str, _Share] = {}

    def wait_s(self, now: float) -> float:
        """How long a window admitted at ``now`` waits for the backend."""
        if now > self._at:
            self._backlog_s = max(0.0, self._backlog_s - self.capacity_s * (now - self._at))
            self._at = now
        return self._backlog_s / self.capacity_s

    def accepts_sessions(self, now: float) -> bool:
        """False once the backlog is past ``refuse_wait_s``: new sessions get ``ih1003``."""
        return self.wait_s(now) <= self.refuse_wait_s

    def join(self, session: str) -> None:
        """A session starts using the backend."""
        self._shares.setdefault(session, _Share())

    def leave(self, session: str) -> None:
        """A session ended; it no longer counts for fairness."""
        self._shares.pop(session, None)

    def reserve(
        self, session: str, cost_s: float, *, now: float, earliest: float, latest: float
    ) -> Slot | str:
        """Admit a window costing ``cost_s`` model-seconds, or say why it is shed.

        ``earliest``: the session's own model is busy until then; ``latest``: the window
        must start by then (its lag limit), else ``lag``.
        """
        share = self._shares.setdefault(session, _Share())
        share.offered_s += cost_s
        wait, average = self.wait_s(now), self._average()
        behind = max(0.0, average - share.served)  # a session served less may wait longer
        congested = wait > self.max_wait_s / 4
        if wait > self.max_wait_s * (1.0 + 4.0 * behind) or (congested and share.served > average):
            return "backpressure"
        start = max(now + wait, earliest)
        if start > latest:
            return "lag"
        self._backlog_s += cost_s
        share.served_s += cost_s
        return Slot(start, start + cost_s)

    def _average(self) -> float:
        """The average session's served share of what it offered."""
        shares = [s.served for s in self._shares.values() if s.offered_s]
        return sum(shares) / len(shares) if shares else 1.0
