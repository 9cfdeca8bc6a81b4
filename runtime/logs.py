"""Structured logging: JSON in production, a console renderer on a terminal.

Components bind context (``session_id``, ``topic``, ``partition``, ``offset``) on their
loggers; a processor masks anything that looks like a secret before rendering.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, cast

import structlog

from runtime.redact import redact_text

__all__ = ["configure_logging", "get_logger"]

_SECRET_KEYS = frozenset({"password", "api_key", "token", "secret", "authorization", "key_secret"})


def _redact_secrets(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if key.lower() in _SECRET_KEYS and value is not None:
            event_dict[key] = "***"
        elif isinstance(value, str):
            event_dict[key] = redact_text(value)
    return event_dict


class _StderrLogger:
    """Writes each rendered line to the *current* ``sys.stderr`` (which tests and
    daemonizing code may swap after configuration)."""

    def msg(self, message: str) -> None:
        # With progress bars on screen, tqdm.write clears and redraws them around the line.
        # Without, a plain write: tqdm.write's lock would import multiprocessing (~25 ms).
        bars = sys.modules.get("tqdm")
        if bars is not None and bars.tqdm._instances:
            bars.tqdm.write(message, file=sys.stderr)
        else:
            sys.stderr.write(message + "\n")

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


def _stderr_logger_factory(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stdlib handler bound to the current ``sys.stderr`` at each record."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(
    level: str = "INFO", fmt: Literal["auto", "json", "console"] = "auto"
) -> None:
    """Configure structlog, and route stdlib loggers (aiokafka, websockets) through it."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    numeric_level = logging.getLevelNamesMapping()[level]
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=_stderr_logger_factory,
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _redact_secrets,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Library loggers are chatty at INFO; they speak from WARNING up unless DEBUG is asked for.
    root.setLevel(
        numeric_level if numeric_level <= logging.DEBUG else max(numeric_level, logging.WARNING)
    )


def get_logger(name: str, **context: Any) -> structlog.stdlib.BoundLogger:
    """A lazily configured logger named for its component, with bound context.

    Safe to create at import time: configuration is applied when it first logs.
    """
    return cast(structlog.stdlib.BoundLogger, structlog.get_logger(name, component=name, **context))
