"""Rule evaluation on event (media) time: apply one event to a session's state.

Pure and deterministic: the same events in the same order give the same firings, which
is what makes cue ids stable across a crash and replay. Time is the session's media time
(``media_offset_s`` + the payload's time); the session's watermark is the latest media
time any of its events reached. A rule fires at most once per event.

- ``signal_count``: each matching ``signal.detected`` counts at its start, each matching
  ``signal.updated`` at ``max(start, watermark)`` (when it was observed), in every open
  hopping window containing that time. A window closes when the watermark reaches its end;
  a late event does not reopen it. ``session.ended`` closes every window (the flush).
- ``engagement_duration``: checked on every event against the watermark, before the event
  itself changes the state, so the event that ends a long episode still completes it.
- ``quality_threshold``: ``overall`` scores, else the last ``timeline`` entry.
- ``co_occurrence``: on ``signal.detected``, against the signals active before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from workers.cues.rules import (
    CoOccurrenceRule,
    EngagementDurationRule,
    QualityThresholdRule,
    Rule,
    RuleSet,
    SignalCountRule,
)
from workers.cues.state import ActiveSignal, Engagement, SessionState, Window

__all__ = ["Firing", "apply_event", "media_times"]

_EPS = 1e-9


@dataclass(frozen=True)
class Firing:
    """One rule firing: what the ``Cue`` record is built from."""

    rule: str
    kind: str
    severity: str
    message: str
    media_start_s: float
    media_end_s: float
    evidence_event_ids: tuple[str, ...]
    trigger_event_id: str


def _kind(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    branch, data = event["payload"]
    return str(branch).rsplit(".", 1)[-1], data


def media_times(event: dict[str, Any]) -> list[float]:
    """Session media times an event reports (empty for events without a time)."""
    offset = float(event["media_offset_s"])
    kind, data = _kind(event)
    if kind in ("SignalDetected", "SignalUpdated", "EngagementUpdated"):
        return [offset + float(data["start"])]
    if kind == "SignalEnded":
        return [offset + float(data["end"])]
    if kind == "ConversationQualityUpdated":
        return [offset + float(entry["end"]) for entry in data.get("timeline") or []]
    if kind in ("CoverageDropped", "CoverageDegraded"):
        return [offset + float(r["end"]) for r in data.get("ranges") or []]
    return []


class _Evaluation:
    """Applies one event; collects the firings."""

    def __init__(self, state: SessionState, event: dict[str, Any], rules: RuleSet) -> None:
        self.state = state
        self.event = event
        self.rules = rules
        self.event_id = str(event["event_id"])
        self.firings: list[Firing] = []
        self.fired: set[str] = set()

    def _cooldown_ok(self, rule: Rule) -> bool:
        return rule.name not in self.fired and self.state.watermark_s + _EPS >= (
            self.state.cooldown_until_s.get(rule.name, -math.inf)
        )

    def _fire(
        self, rule: Rule, start_s: float, end_s: float, evidence: list[str], **fields: Any
    ) -> None:
        values = {
            "session_id": self.state.session_id,
            "rule": rule.name,
            "severity": rule.severity,
            "media_start_s": start_s,
            "media_end_s": end_s,
            **fields,
        }
        try:
            message = rule.message.format(**values)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError):
            message = rule.message  # a format spec that does not fit the value
        self.firings.append(
            Firing(
                rule=rule.name,
                kind=rule.kind,
                severity=rule.severity,
                message=message,
                media_start_s=start_s,
                media_end_s=end_s,
                evidence_event_ids=tuple(dict.fromkeys(evidence)),
                trigger_event_id=self.event_id,
            )
        )
        self.fired.add(rule.name)
        self.state.cooldown_until_s[rule.name] = self.state.watermark_s + rule.cooldown_s

    # -- signal_count -------------------------------------------------------------------

    def _fire_window(self, rule: SignalCountRule, window: Window) -> None:
        times = [t for _, t in window.events]
        self._fire(
            rule,
            min(times),
            max(times),
            [event_id for event_id, _ in window.events],
            count=len(window.events),
            window_s=rule.window_s,
            window_start_s=window.start_s,
            window_end_s=window.start_s + rule.window_s,
            signal_types=", ".join(rule.signal_types),
        )

    def close_windows(self, rule: SignalCountRule, flush: bool) -> None:
        windows = self.state.windows.get(rule.name, [])
        now = self.state.watermark_s
        keep: list[Window] = []
        for window in windows:
            if flush or window.start_s + rule.window_s <= now + _EPS:
                if (
                    rule.fire_on == "window_close"
                    and not window.fired
                    and len(window.events) >= rule.min_count
                    and self._cooldown_ok(rule)
                ):
                    self._fire_window(rule, window)
            else:
                keep.append(window)
        if keep:
            self.state.windows[rule.name] = keep
        else:
            self.state.windows.pop(rule.name, None)

    def count_signal(self, rule: SignalCountRule, at_s: float) -> None:
        now = self.state.watermark_s
        windows = {w.start_s: w for w in self.state.windows.get(rule.name, [])}
        hop, size = rule.hop, rule.window_s
        first = max(0, math.floor((at_s - size) / hop + _EPS) + 1)
        for k in range(first, math.floor(at_s / hop + _EPS) + 1):
            start = round(k * hop, 9)
            if start + size <= now + _EPS or not start <= at_s + _EPS < start + size + _EPS:
                continue  # closed (a late event does not reopen it) or not containing at_s
            windows.setdefault(start, Window(start_s=start)).events.append((self.event_id, at_s))
        ordered = [windows[s] for s in sorted(windows)]
        self.state.windows[rule.name] = ordered
        if rule.fire_on != "threshold":
            return
        ready = [w for w in ordered if not w.fired and len(w.events) >= rule.min_count]
        if ready and self._cooldown_ok(rule):
            self._fire_window(rule, ready[0])
            for window in ready:
                window.fired = True

    # -- the other kinds ----------------------------------------------------------------

    def check_engagement(self, rule: EngagementDurationRule) -> None:
        engagement = self.state.engagement
        now = self.state.watermark_s
        if (
            engagement is not None
            and engagement.state == rule.state
            and now - engagement.since_s > rule.min_duration_s + _EPS
            and self.state.engagement_fired_since_s.get(rule.name) != engagement.since_s
            and self._cooldown_ok(rule)
        ):
            self._fire(
                rule,
                engagement.since_s,
                now,
                [engagement.event_id, self.event_id],
                state=rule.state,
                duration_s=now - engagement.since_s,
                since_s=engagement.since_s,
            )
            self.state.engagement_fired_since_s[rule.name] = engagement.since_s

    def check_quality(self, rule: QualityThresholdRule, values: dict[str, Any]) -> None:
        value = values.get(rule.dimension)
        if value is None:
            return
        streak = self.state.streaks.get(rule.name, [])
        streak = [*streak, (self.event_id, self.state.watermark_s)] if value < rule.below else []
        streak = streak[-rule.consecutive :]
        if len(streak) >= rule.consecutive and self._cooldown_ok(rule):
            self._fire(
                rule,
                streak[0][1],
                streak[-1][1],
                [event_id for event_id, _ in streak],
                dimension=rule.dimension,
                value=float(value),
                threshold=rule.below,
                consecutive=rule.consecutive,
            )
            streak = []
        if streak:
            self.state.streaks[rule.name] = streak
        else:
            self.state.streaks.pop(rule.name, None)

    def check_co_occurrence(self, rule: CoOccurrenceRule, signal_type: str, start_s: float) -> None:
        probability = _kind(self.event)[1].get("probability")
        if rule.signal_type != signal_type or (
            rule.probabilities is not None and probability not in rule.probabilities
        ):
            return
        active = [
            (self.state.active_signals[name].start_s, name)
            for name in rule.while_active
            if name in self.state.active_signals
        ]
        if active and self._cooldown_ok(rule):
            since_s, name = min(active)
            self._fire(
                rule,
                since_s,
                start_s,
                [self.state.active_signals[name].event_id, self.event_id],
                signal_type=signal_type,
                active_type=name,
            )

    def on_signal(self, detected: bool, data: dict[str, Any], offset: float) -> None:
        """``signal.detected`` / ``signal.updated``: co-occurrence, active signals, counts."""
        state, rules = self.state, self.rules
        signal_type = str(data["signal_type"])
        start_s = offset + float(data["start"])
        if detected:
            for co_rule in rules.of_kind(CoOccurrenceRule):
                self.check_co_occurrence(co_rule, signal_type, start_s)
        previous = state.active_signals.get(signal_type) if not detected else None
        state.active_signals[signal_type] = ActiveSignal(
            start_s=previous.start_s if previous else start_s,
            probability=data.get("probability"),
            event_id=previous.event_id if previous else self.event_id,
        )
        at_s = start_s if detected else max(start_s, state.watermark_s)
        event_type = "signal.detected" if detected else "signal.updated"
        for rule in rules.of_kind(SignalCountRule):
            if (
                signal_type in rule.signal_types
                and data.get("probability") in rule.probabilities
                and event_type in rule.event_types
            ):
                self.count_signal(rule, at_s)


RECENT_IDS_S = 30.0
"""Media seconds behind the watermark for which applied event ids are remembered: more
than a window (8 s) plus a hop, the most a session worker publishes again."""


def _remember(state: SessionState, event_id: str, at_s: float) -> None:
    recent = state.recent_event_ids
    recent[event_id] = at_s
    horizon = state.watermark_s - RECENT_IDS_S
    if next(iter(recent.values())) < horizon:  # oldest first (insertion order)
        for old in [k for k, t in recent.items() if t < horizon]:
            del recent[old]


def apply_event(state: SessionState, event: dict[str, Any], rules: RuleSet) -> list[Firing]:
    """Apply one decoded ``Inter1Event`` datum to ``state`` (in place); the rules it fired."""
    run = _Evaluation(state, event, rules)
    if run.event_id in state.recent_event_ids:
        return []  # a window published again (same ids): applied already
    kind, data = _kind(event)
    offset = float(event["media_offset_s"])
    state.events += 1
    state.tenant = event.get("tenant") or state.tenant
    state.app = event.get("app") or state.app
    times = media_times(event)
    if times:
        state.watermark_s = max(state.watermark_s, *times)
    _remember(state, run.event_id, max(times) if times else state.watermark_s)
    for count_rule in rules.of_kind(SignalCountRule):
        run.close_windows(count_rule, flush=kind == "SessionEnded")
    for engagement_rule in rules.of_kind(EngagementDurationRule):
        run.check_engagement(engagement_rule)

    if kind in ("SignalDetected", "SignalUpdated"):
        run.on_signal(kind == "SignalDetected", data, offset)
    elif kind == "SignalEnded":
        state.active_signals.pop(str(data["signal_type"]), None)
    elif kind == "EngagementUpdated":
        new_state = str(data["state"])
        if state.engagement is None or state.engagement.state != new_state:
            state.engagement = Engagement(
                state=new_state, since_s=offset + float(data["start"]), event_id=run.event_id
            )
    elif kind == "ConversationQualityUpdated":
        timeline = data.get("timeline") or []
        values = data.get("overall") or (timeline[-1]["values"] if timeline else None)
        if values:
            state.quality = {k: float(v) for k, v in values.items()}
            state.quality_at_s = state.watermark_s
            for quality_rule in rules.of_kind(QualityThresholdRule):
                run.check_quality(quality_rule, values)
    elif kind == "SessionEnded":
        state.ended = True
    return run.firings
