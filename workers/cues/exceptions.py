"""Errors of the live-cues app (all under the project's root error)."""

from __future__ import annotations

from runtime.errors import ConfigError, PipelineError

__all__ = ["ForeignRecordError", "RulesError"]


class RulesError(ConfigError):
    """The rules file is missing, unreadable or invalid; the message names the rule and field.

    Exits the ``cues`` command with code 78 (configuration).
    """


class ForeignRecordError(PipelineError):
    """A record on the events topic that is not an ``Inter1Event`` (goes to the dead letters)."""
