"""What to do when an Inter-1 connection closes: one table keyed by close code.

``1006`` (abnormal: the TCP connection dropped), ``1011`` (server error, ``ih1001``) and
``1013`` (try again later, ``ih1003``) are retried with capped exponential backoff and
full jitter, each time on a new connection with a new container stream (init header
first). ``401`` (bad key, the upgrade is refused), ``4003`` (``ih2003``: no stream scope)
and ``1008`` (``ih4005``: bad model) are never retried: the session fails. Other codes
(``1007`` malformed media, ``1009`` frame too large) fail too: repeating the same bytes
gives the same answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["CLOSE_POLICIES", "ClosePolicy", "backoff_s", "policy_for", "restart_index"]


@dataclass(frozen=True)
class ClosePolicy:
    """The reaction to one close code."""

    retriable: bool
    cause: str
    """Label of the metric ``reconnects_total{cause}`` and of the usage reason."""


CLOSE_POLICIES: dict[int, ClosePolicy] = {
    1001: ClosePolicy(retriable=True, cause="going_away"),
    1006: ClosePolicy(retriable=True, cause="abnormal_close"),
    1011: ClosePolicy(retriable=True, cause="server_error"),
    1012: ClosePolicy(retriable=True, cause="service_restart"),
    1013: ClosePolicy(retriable=True, cause="try_again_later"),
    401: ClosePolicy(retriable=False, cause="unauthorized"),
    403: ClosePolicy(retriable=False, cause="forbidden"),
    4003: ClosePolicy(retriable=False, cause="missing_scope"),
    1008: ClosePolicy(retriable=False, cause="policy_violation"),
    1007: ClosePolicy(retriable=False, cause="malformed_media"),
    1009: ClosePolicy(retriable=False, cause="frame_too_large"),
}
"""Close code (or HTTP status of a refused upgrade) -> reaction."""

_UNKNOWN = ClosePolicy(retriable=False, cause="unexpected_close")


def policy_for(code: int) -> ClosePolicy:
    """The policy for a close code; unknown codes are not retried."""
    return CLOSE_POLICIES.get(code, _UNKNOWN)


def backoff_s(
    attempt: int, *, base_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Delay before retry ``attempt`` (1-based): full jitter over ``min(max, base * 2**(n-1))``."""
    cap = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(0.0, cap)


def restart_index(
    starts_s: list[float],
    *,
    watermark_s: float | None,
    grid_origin_s: float,
    hop_s: float,
    context_s: float,
) -> int:
    """Which kept chunk (by media start) a new connection starts from.

    The latest chunk at or before ``watermark + hop - context`` (the first window to publish
    then has ``context_s`` of media before it), preferring one on the window grid of the
    connection that set the watermark, so the new windows fall where the old ones did.
    Without a watermark: the first kept chunk.
    """
    if watermark_s is None or not starts_s:
        return 0
    target = watermark_s + hop_s - context_s
    best, aligned = 0, None
    for index, start in enumerate(starts_s):
        if start > target + 1e-6:
            break
        best = index
        steps = (start - grid_origin_s) / hop_s
        if abs(steps - round(steps)) < 1e-3:
            aligned = index
    return aligned if aligned is not None else best
