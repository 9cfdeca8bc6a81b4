"""Rules as data: the TOML rules file, its pydantic models and its validation.

A rules file is a list of ``[[rules]]`` tables, each with a ``kind``::

    [[rules]]
    name = "hesitation-burst"
    kind = "signal_count"
    signal_types = ["hesitation", "uncertainty"]
    probabilities = ["medium", "high"]
    min_count = 3
    window_s = 30.0
    hop_s = 10.0
    cooldown_s = 60.0
    severity = "warning"
    message = "{count} hesitation/uncertainty signals in {window_s:g} s"

Every time is media time in seconds. Errors name the rule and the field.
"""

from __future__ import annotations

import string
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from workers.cues.exceptions import RulesError

__all__ = [
    "DEFAULT_RULES_FILE",
    "CoOccurrenceRule",
    "EngagementDurationRule",
    "QualityThresholdRule",
    "Rule",
    "RuleSet",
    "SignalCountRule",
    "load_rules",
    "parse_rules",
]

DEFAULT_RULES_FILE = Path(__file__).resolve().parent / "default_rules.toml"

QualityDimension = Literal["quality_index", "clarity", "authority", "energy", "rapport", "learning"]
SignalEventType = Literal["signal.detected", "signal.updated"]
_COMMON_FIELDS = frozenset({"session_id", "rule", "severity", "media_start_s", "media_end_s"})


class _RuleBase(BaseModel):
    """Fields every rule has."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    message_fields: ClassVar[frozenset[str]] = frozenset()

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    cooldown_s: float = Field(default=0.0, ge=0.0)
    """After a firing, the rule stays quiet for this many media seconds."""
    severity: Literal["info", "warning", "critical"] = "info"
    message: str = Field(min_length=1)
    """``str.format`` template; the fields each kind offers are in ``message_fields``."""

    @model_validator(mode="after")
    def _known_placeholders(self) -> _RuleBase:
        allowed = _COMMON_FIELDS | self.message_fields
        try:
            names = {field for _, field, _, _ in string.Formatter().parse(self.message) if field}
        except ValueError as exc:
            raise ValueError(f"message: not a valid template: {exc}") from None
        unknown = sorted(n for n in names if n.split(".")[0].split("[")[0] not in allowed)
        if unknown:
            raise ValueError(
                f"message: unknown placeholder(s) {unknown}; available: {sorted(allowed)}"
            )
        return self


class SignalCountRule(_RuleBase):
    """Signals of the given types seen at least ``min_count`` times in a hopping window.

    Windows are ``[k * hop_s, k * hop_s + window_s)`` of media time. ``fire_on =
    "threshold"`` fires as soon as a window reaches the count; ``"window_close"`` fires
    when the window closes (the session's media time passes its end, or the session ends).
    """

    message_fields: ClassVar[frozenset[str]] = frozenset(
        {"count", "window_s", "window_start_s", "window_end_s", "signal_types"}
    )
    kind: Literal["signal_count"]
    signal_types: list[str] = Field(min_length=1)
    probabilities: list[str] = Field(default_factory=lambda: ["medium", "high"], min_length=1)
    event_types: list[SignalEventType] = Field(
        default_factory=lambda: list[SignalEventType](["signal.detected", "signal.updated"]),
        min_length=1,
    )
    min_count: int = Field(ge=1)
    window_s: float = Field(gt=0.0)
    hop_s: float | None = Field(default=None, gt=0.0)
    """Window advance; unset means tumbling windows (``hop_s = window_s``)."""
    fire_on: Literal["threshold", "window_close"] = "threshold"

    @model_validator(mode="after")
    def _hop_fits(self) -> SignalCountRule:
        if self.hop_s is not None and self.hop_s > self.window_s:
            raise ValueError("hop_s: must not exceed window_s (windows would leave gaps)")
        return self

    @property
    def hop(self) -> float:
        """Window advance in seconds."""
        return self.hop_s if self.hop_s is not None else self.window_s


class EngagementDurationRule(_RuleBase):
    """Engagement ``state`` held for longer than ``min_duration_s`` (once per episode)."""

    message_fields: ClassVar[frozenset[str]] = frozenset({"state", "duration_s", "since_s"})
    kind: Literal["engagement_duration"]
    state: str = "disengaged"
    min_duration_s: float = Field(gt=0.0)


class QualityThresholdRule(_RuleBase):
    """A conversation-quality dimension below ``below`` in ``consecutive`` updates in a row."""

    message_fields: ClassVar[frozenset[str]] = frozenset(
        {"dimension", "value", "threshold", "consecutive"}
    )
    kind: Literal["quality_threshold"]
    dimension: QualityDimension
    below: float = Field(ge=0.0, le=100.0)
    consecutive: int = Field(default=1, ge=1)


class CoOccurrenceRule(_RuleBase):
    """A signal of ``signal_type`` starting while one of ``while_active`` is active."""

    message_fields: ClassVar[frozenset[str]] = frozenset({"signal_type", "active_type"})
    kind: Literal["co_occurrence"]
    signal_type: str = Field(min_length=1)
    while_active: list[str] = Field(min_length=1)
    probabilities: list[str] | None = None
    """Probabilities of the starting signal that count; unset means any."""


Rule = Annotated[
    SignalCountRule | EngagementDurationRule | QualityThresholdRule | CoOccurrenceRule,
    Field(discriminator="kind"),
]
_RULE: TypeAdapter[Rule] = TypeAdapter(Rule)


class RuleSet(BaseModel):
    """The validated rules of one rules file, in file order."""

    model_config = ConfigDict(frozen=True)

    source: str
    rules: tuple[Rule, ...]

    def of_kind(self, kind: type[_RuleBase]) -> list[Any]:
        """The rules of one kind, in file order."""
        return [rule for rule in self.rules if isinstance(rule, kind)]


_KINDS = frozenset({"signal_count", "engagement_duration", "quality_threshold", "co_occurrence"})


def _describe(error: Any) -> tuple[str, str]:
    loc = [str(p) for p in error["loc"]]
    # A discriminated union puts the kind first: ("signal_count", "window_s").
    if loc and loc[0] in _KINDS:
        loc = loc[1:]
    message = str(error["msg"]).removeprefix("Value error, ")
    if not loc and message.split(":")[0].isidentifier() and ":" in message:
        field, _, message = message.partition(":")
        return field, message.strip()
    return ".".join(loc) or "kind", message


def parse_rules(raw: dict[str, Any], source: str) -> RuleSet:
    """Validate decoded TOML ``{"rules": [...]}``; errors name the rule and the field."""
    entries = raw.get("rules")
    if not isinstance(entries, list) or not entries:
        raise RulesError(f"rules file {source}: expected one or more [[rules]] tables")
    rules: list[Rule] = []
    for index, entry in enumerate(entries, start=1):
        label = (
            repr(entry["name"])
            if isinstance(entry, dict) and isinstance(entry.get("name"), str)
            else f"#{index}"
        )
        try:
            rules.append(_RULE.validate_python(entry))
        except ValidationError as exc:
            problems = "; ".join(
                f"field {field!r}: {message}" for field, message in map(_describe, exc.errors())
            )
            raise RulesError(f"rules file {source}: rule {label}: {problems}") from None
    _unique_names(rules, source)
    return RuleSet(source=source, rules=tuple(rules))


def _unique_names(rules: Sequence[Rule], source: str) -> None:
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise RulesError(f"rules file {source}: rule {rule.name!r}: field 'name': duplicate")
        seen.add(rule.name)


def load_rules(path: Path | None = None) -> RuleSet:
    """Read and validate a rules file (default: the shipped ``default_rules.toml``)."""
    path = path or DEFAULT_RULES_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulesError(f"rules file {path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"rules file {path}: not valid TOML: {exc}") from None
    return parse_rules(raw, str(path))
