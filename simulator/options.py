"""Validation of the client's JSON config frames (``include``, ``goal_dimensions``, ``model``)."""

from __future__ import annotations

from typing import Any

from simulator.config import KeyGrant
from simulator.pcm import PCM_SAMPLE_RATES
from simulator.protocol import AUDIO_MODEL, GOAL_DIMENSIONS, INCLUDE_FLAGS, STREAM_MODELS
from simulator.tracker import SessionOptions

__all__ = ["ConfigRejected", "apply_config"]

_KNOWN = frozenset({"include", "goal_dimensions", "model", "audio_format"})


class ConfigRejected(Exception):
    """A config frame the session answers with an ``error`` instead of ``session.updated``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def fatal(self) -> bool:
        """Whether the session ends (an unknown model) or stays open (everything else)."""
        return self.code == "ih4005"


def _string_list(payload: dict[str, Any], key: str, allowed: tuple[str, ...]) -> list[str] | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigRejected("ih6001", f"'{key}' must be a list of strings.")
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ConfigRejected(
            "ih6001", f"Unknown {key} value(s) {unknown}; supported: {list(allowed)}."
        )
    return list(dict.fromkeys(value))


def apply_config(
    payload: dict[str, Any],
    current: SessionOptions,
    *,
    api_version: str,
    grant: KeyGrant,
    media_started: bool,
    feedback: bool = True,
) -> SessionOptions:
    """The options in force after ``payload``: include/goal_dimensions replace, model persists.

    Raises:
        ConfigRejected: ``ih6001`` (invalid, session stays open), ``ih2003`` (model the key
            may not use, session stays open) or ``ih4005`` (unknown model, fatal).
    """
    unknown = sorted(set(payload) - _KNOWN)
    if unknown:
        raise ConfigRejected("ih6001", f"Unknown session config option(s): {unknown}.")
    include = _string_list(payload, "include", INCLUDE_FLAGS) or []
    goals = _string_list(payload, "goal_dimensions", GOAL_DIMENSIONS)
    if goals and not feedback:
        raise ConfigRejected("ih6001", "Feedback is off for this session: no goal_dimensions.")
    model = current.model
    requested = payload.get("model")
    if requested is not None:
        if api_version != "v2":
            raise ConfigRejected("ih6001", "/v1/stream/analyze offers no model selection.")
        if not isinstance(requested, str) or requested not in STREAM_MODELS:
            raise ConfigRejected("ih4005", f"Unknown stream model {requested!r}.")
        if requested not in grant.models:
            raise ConfigRejected("ih2003", f"The credential may not use model {requested!r}.")
        if requested != current.model and media_started:
            raise ConfigRejected(
                "ih6001", "The model can only change before the first media frame."
            )
        model = requested
    audio_format = _audio_format(payload.get("audio_format"), current, model, media_started)
    return SessionOptions(
        include=include, goal_dimensions=goals or None, model=model, audio_format=audio_format
    )


_PCM_DEFAULTS: dict[str, Any] = {"encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1}


def _audio_format(
    value: Any, current: SessionOptions, model: str | None, media_started: bool
) -> dict[str, Any] | None:
    """The raw PCM format in force: session state like ``model`` (omitted keeps it)."""
    if value is None:
        return current.audio_format
    if not isinstance(value, dict) or set(value) - set(_PCM_DEFAULTS):
        raise ConfigRejected(
            "ih6001", f"'audio_format' must be an object with keys {sorted(_PCM_DEFAULTS)}."
        )
    pcm = {**_PCM_DEFAULTS, **value}
    if pcm["encoding"] != "pcm_s16le" or pcm["channels"] != 1:
        raise ConfigRejected(
            "ih6001", "Raw audio must be signed 16-bit little-endian mono PCM (pcm_s16le, 1)."
        )
    rate = pcm["sample_rate"]
    if isinstance(rate, bool) or rate not in PCM_SAMPLE_RATES:
        raise ConfigRejected(
            "ih6001", f"Unsupported sample_rate {rate!r}; supported: {list(PCM_SAMPLE_RATES)}."
        )
    if model != AUDIO_MODEL:
        raise ConfigRejected("ih6001", f"Raw PCM audio needs model {AUDIO_MODEL!r}.")
    if media_started and pcm != current.audio_format:
        raise ConfigRejected(
            "ih6001", "The audio format is fixed once the first media frame was accepted."
        )
    return pcm
