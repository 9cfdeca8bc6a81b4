"""Fault injection: a small spec language shared by the CLI, ``sim-fault:`` keys and ``sim_fault=``.

A spec is comma-separated items ``name[=value][@media_seconds]``; ``@`` names the media
time (seconds of received media) at which the fault fires, default 0 (at once):

- ``drop@S``           abort the TCP connection (the client sees 1006)
- ``close=CODE@S``     send the matching error envelope and close with 1011 or 1013
- ``stall=SECONDS@S``  stop reading and sending for SECONDS of wall time
- ``slow=RATIO``       analyse at RATIO simulated model seconds per media second
- ``unknown_event@S``  send an envelope of an unknown kind (``sim.unknown``)
- ``error=CODE@S``     send a non-fatal ``error`` envelope with CODE (default ih1001)
- ``unknown_value@S``  send known event kinds with values the SDK does not know (a new
  signal type, a new engagement state): ``parse_stream_event`` raises on them
- ``ready_delay=SECONDS`` wait SECONDS of wall time before ``session.ready``
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from simulator.exceptions import FaultSpecError

__all__ = ["FaultPlan", "parse_faults"]

_CLOSE_CODES = {1011: "ih1001", 1013: "ih1003"}


@dataclass(frozen=True)
class FaultPlan:
    """The faults one session will suffer (all optional)."""

    drop_at_s: float | None = None
    close_code: int | None = None
    close_at_s: float = 0.0
    stall_s: float | None = None
    stall_at_s: float = 0.0
    processing_ratio: float | None = None
    unknown_event_at_s: float | None = None
    error_code: str | None = None
    error_at_s: float = 0.0
    unknown_value_at_s: float | None = None
    ready_delay_s: float | None = None

    @property
    def close_error_code(self) -> str | None:
        """The error code announced before a ``close=`` fault."""
        return _CLOSE_CODES.get(self.close_code) if self.close_code else None

    def merged(self, override: FaultPlan) -> FaultPlan:
        """This plan with every fault ``override`` sets replacing ours."""
        base = FaultPlan()
        changes = {
            f.name: getattr(override, f.name)
            for f in dataclasses.fields(self)
            if getattr(override, f.name) != getattr(base, f.name)
        }
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """The plan as a spec string (empty when no fault is set)."""
        parts: list[str] = []
        if self.drop_at_s is not None:
            parts.append(f"drop@{self.drop_at_s:g}")
        if self.close_code is not None:
            parts.append(f"close={self.close_code}@{self.close_at_s:g}")
        if self.stall_s is not None:
            parts.append(f"stall={self.stall_s:g}@{self.stall_at_s:g}")
        if self.processing_ratio is not None:
            parts.append(f"slow={self.processing_ratio:g}")
        if self.unknown_event_at_s is not None:
            parts.append(f"unknown_event@{self.unknown_event_at_s:g}")
        if self.error_code is not None:
            parts.append(f"error={self.error_code}@{self.error_at_s:g}")
        if self.unknown_value_at_s is not None:
            parts.append(f"unknown_value@{self.unknown_value_at_s:g}")
        if self.ready_delay_s is not None:
            parts.append(f"ready_delay={self.ready_delay_s:g}")
        return ",".join(parts)


def _number(text: str, item: str, *, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(f"fault {item!r}: {what} must be a number, got {text!r}") from None
    if value < 0:
        raise FaultSpecError(f"fault {item!r}: {what} must be >= 0, got {text!r}")
    return value


def parse_faults(spec: str) -> FaultPlan:  # noqa: PLR0912 - one branch per fault name
    """Parse a fault spec (see the module docstring); an empty spec means no fault.

    Raises:
        FaultSpecError: on an unknown fault name or a bad value, naming the item.
    """
    plan = FaultPlan()
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        head, _, at_text = item.partition("@")
        name, has_value, value = head.partition("=")
        at = _number(at_text, item, what="'@' time") if at_text else 0.0
        name = name.strip()
        if name == "drop" and not has_value:
            plan = dataclasses.replace(plan, drop_at_s=at)
        elif name == "close":
            code = int(_number(value or "1011", item, what="close code"))
            if code not in _CLOSE_CODES:
                raise FaultSpecError(f"fault {item!r}: close code must be 1011 or 1013")
            plan = dataclasses.replace(plan, close_code=code, close_at_s=at)
        elif name == "stall":
            seconds = _number(value or "5", item, what="stall seconds")
            plan = dataclasses.replace(plan, stall_s=seconds, stall_at_s=at)
        elif name == "slow" and has_value and not at_text:
            ratio = _number(value, item, what="ratio")
            plan = dataclasses.replace(plan, processing_ratio=ratio)
        elif name == "unknown_event" and not has_value:
            plan = dataclasses.replace(plan, unknown_event_at_s=at)
        elif name == "unknown_value" and not has_value:
            plan = dataclasses.replace(plan, unknown_value_at_s=at)
        elif name == "ready_delay" and has_value and not at_text:
            delay = _number(value, item, what="ready delay")
            plan = dataclasses.replace(plan, ready_delay_s=delay)
        elif name == "error":
            error_code = value or "ih1001"
            if not error_code.startswith("ih") or not error_code[2:].isdigit():
                raise FaultSpecError(f"fault {item!r}: error code must look like ih1001")
            plan = dataclasses.replace(plan, error_code=error_code, error_at_s=at)
        else:
            raise FaultSpecError(
                f"unknown fault {item!r}; expected drop@S, close=1011|1013@S, stall=SECONDS@S, "
                "slow=RATIO, unknown_event@S, unknown_value@S, ready_delay=SECONDS or "
                "error=CODE@S"
            )
    return plan
