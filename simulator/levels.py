"""Levels in whole centibels, looked up in exact threshold tables (no ``log10`` per value).

A level is ``cb_per_decade x log10(x / scale)`` centibels, rounded half up and clamped to
``FLOOR_CB..0``. Instead of taking a logarithm per value, each caller bisects a table of
the values ``x`` from which the level reaches each whole centibel. The table is computed
once in :mod:`decimal` (software arithmetic, 50 digits), so it is the same on every CPU.
"""

from __future__ import annotations

import decimal

__all__ = ["FLOOR_CB", "centibel_bounds"]

FLOOR_CB = -900
"""The quietest level (centibels, -90 dB); also the level of an empty packet or silence."""


def centibel_bounds(scale: decimal.Decimal, cb_per_decade: int) -> list[decimal.Decimal]:
    """``scale x 10^((cb - 1/2) / cb_per_decade)`` for ``cb`` = ``FLOOR_CB + 1`` .. 0.

    Entry ``i`` is the value from which the level rounds to at least ``FLOOR_CB + 1 + i``
    (200 cB per decade for amplitude-like quantities, 100 for power-like ones).
    """
    with decimal.localcontext() as ctx:
        ctx.prec = 50
        ln10 = decimal.Decimal(10).ln()
        step = (ln10 / cb_per_decade).exp()  # one centibel
        bound = scale * (ln10 * decimal.Decimal(2 * FLOOR_CB + 1) / (2 * cb_per_decade)).exp()
        bounds = []
        for _ in range(FLOOR_CB + 1, 1):
            bounds.append(bound)
            bound *= step
        return bounds
