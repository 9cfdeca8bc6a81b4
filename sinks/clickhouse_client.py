"""One factory from one URL setting to a clickhouse-connect client.

``chdb:///abs/path`` opens the embedded chDB engine (ClickHouse in-process; one process
per data directory). ``http(s)://user:pass@host:port/db`` opens a server over HTTP. Both
return the same ``clickhouse_connect`` client type, so the rest of the code has one path.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from runtime.redact import redact_text, redact_url
from runtime.settings import ClickHouseSettings, StackSettings, load
from sinks.exceptions import ClickHouseConfigError, ClickHouseUnavailableError

__all__ = ["clickhouse_url", "embedded_url", "make_client"]

_SCHEMES = ("chdb", "http", "https")


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def embedded_url(state_dir: Path) -> str:
    """The embedded engine's URL for a state directory."""
    return f"chdb://{(state_dir / 'clickhouse').resolve()}"


def clickhouse_url(settings: ClickHouseSettings | None = None) -> str:
    """``CLICKHOUSE_URL``, or the embedded engine under ``$PIPELINE_STATE_DIR/clickhouse``."""
    settings = settings or load(ClickHouseSettings)
    url = settings.url.get_secret_value()
    return url or embedded_url(load(StackSettings).state_dir)


def make_client(url: str | None = None, *, connect_timeout_s: float = 10.0) -> Client:
    """Open a client for ``url`` (default: :func:`clickhouse_url`).

    Raises:
        ClickHouseConfigError: the URL is malformed or has an unsupported scheme.
        ClickHouseUnavailableError: the server cannot be reached or the data directory opened.
    """
    url = url or clickhouse_url()
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ClickHouseConfigError(f"CLICKHOUSE_URL {shown} is not a valid URL: {exc}") from None
    if parts.scheme not in _SCHEMES:
        raise ClickHouseConfigError(
            f"CLICKHOUSE_URL {shown} has scheme {parts.scheme!r}; use chdb:///path for the "
            "embedded engine or http(s)://user:pass@host:8123/db for a server"
        )
    password = unquote(parts.password) if parts.password else ""
    try:
        if parts.scheme == "chdb":
            if parts.netloc not in ("", "memory") or not (parts.path or parts.netloc):
                raise ClickHouseConfigError(
                    f"CLICKHOUSE_URL {shown}: an embedded URL needs an absolute path "
                    "(chdb:///abs/path) or chdb://memory"
                )
            if parts.path:
                Path(parts.path).mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(dsn=url)
        if not parts.hostname:
            raise ClickHouseConfigError(f"CLICKHOUSE_URL {shown} names no host")
        database = parts.path.strip("/") or None
        return clickhouse_connect.get_client(
            interface=parts.scheme,
            host=parts.hostname,
            port=port or (8443 if parts.scheme == "https" else 8123),
            username=unquote(parts.username) if parts.username else "default",
            password=password,
            database=database,
            connect_timeout=connect_timeout_s,
        )
    except ClickHouseConfigError:
        raise
    except (ClickHouseError, OSError, RuntimeError) as exc:
        reason = _one_line(str(exc) or type(exc).__name__)
        reason = redact_text(reason, (password,))
        raise ClickHouseUnavailableError(f"cannot reach ClickHouse at {shown}: {reason}") from None
