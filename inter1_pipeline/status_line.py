"""Progress output of ``demo`` and ``run``: narrative lines plus one status line.

On a terminal the status line is a ``tqdm`` line redrawn in place (structlog lines and
narrative lines print above it: :mod:`runtime.logs` writes through ``tqdm.write`` while a
bar is shown); otherwise each status change is printed as a plain line, at most one every
``plain_interval_s``, so logs stay readable.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Never, TextIO

from tqdm import tqdm

__all__ = ["StatusLine"]


class StatusLine:
    """Lines that stay (:meth:`say`) and a line that changes (:meth:`update`)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        plain_interval_s: float = 5.0,
    ) -> None:
        self._stream = stream or sys.stdout
        self._tty = self._stream.isatty() if tty is None else tty
        self._plain_interval_s = plain_interval_s
        self._bar: tqdm[Never] | None = None
        self._last_plain = ""
        self._last_plain_at = 0.0

    @property
    def tty(self) -> bool:
        """Whether the status line is redrawn in place."""
        return self._tty

    def say(self, text: str) -> None:
        """Print a line that stays."""
        if self._bar is not None:
            self._bar.write(text, file=self._stream)
        else:
            print(text, file=self._stream, flush=True)

    def update(self, text: str, *, force: bool = False) -> None:
        """Show ``text`` as the current status."""
        if self._tty:
            if self._bar is None:
                # a terminal that reports no width (some ptys) would truncate to nothing
                sized = shutil.get_terminal_size((0, 0)).columns > 0
                self._bar = tqdm(
                    total=0,
                    bar_format="{desc}",
                    file=self._stream,
                    leave=False,
                    dynamic_ncols=sized,
                    ncols=None if sized else 120,
                    nrows=None if sized else 24,
                )
            self._bar.set_description_str(text, refresh=True)
            return
        now = time.monotonic()
        due = force or now - self._last_plain_at >= self._plain_interval_s
        if text != self._last_plain and due:
            self._last_plain, self._last_plain_at = text, now
            print(text, file=self._stream, flush=True)

    def close(self) -> None:
        """Remove the status line (idempotent)."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()
