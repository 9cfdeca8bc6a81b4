"""How analyst commands (``query``, ``report``, ``reconcile``) reach ClickHouse.

Against a server URL they connect directly. Against the embedded store they go through
the sink when a live sink holds it (its read-only endpoint, see
:mod:`sinks.query_server`), and open the directory themselves otherwise. Either way
results come back as ClickHouse ``JSONEachRow`` output, so both paths yield the same
Python values.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from runtime.errors import PipelineError
from sinks.clickhouse_client import clickhouse_url, make_client
from sinks.exceptions import (
    ClickHouseQueryError,
    ClickHouseReadOnlyError,
    ClickHouseUnavailableError,
    SchemaMismatchError,
)
from sinks.query_server import endpoint_file
from sinks.store import Store

__all__ = ["DirectWarehouse", "EndpointWarehouse", "Warehouse", "open_warehouse"]

_REMOTE_ERRORS: dict[str, type[PipelineError]] = {
    "ClickHouseReadOnlyError": ClickHouseReadOnlyError,
    "SchemaMismatchError": SchemaMismatchError,
    "ClickHouseUnavailableError": ClickHouseUnavailableError,
}


class Warehouse(ABC):
    """Read access (plus the reconcile table) to the analytics tables."""

    @abstractmethod
    def raw(self, sql: str, fmt: str) -> bytes:
        """The output of a read-only query in a ClickHouse format."""

    @abstractmethod
    def insert_json(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert rows (only ``reconcile_discrepancies`` through a sink)."""

    def rows(self, sql: str) -> list[dict[str, Any]]:
        """Result rows as dicts (JSON values: numbers, strings, lists, maps)."""
        return [json.loads(line) for line in self.raw(sql, "JSONEachRow").splitlines() if line]

    def close(self) -> None:  # noqa: B027  # optional hook
        """Release the connection."""

    @property
    @abstractmethod
    def description(self) -> str:
        """Where the data comes from, for messages."""


class DirectWarehouse(Warehouse):
    """A clickhouse-connect client of our own (server URL or an unlocked embedded store)."""

    def __init__(self, store: Store, description: str) -> None:
        self._store = store
        self._description = description

    def raw(self, sql: str, fmt: str) -> bytes:
        return self._store.raw(sql, fmt)

    def insert_json(self, table: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self._store.insert_json(table, "\n".join(json.dumps(r) for r in rows).encode())

    def close(self) -> None:
        self._store.close()

    @property
    def description(self) -> str:
        return self._description


class EndpointWarehouse(Warehouse):
    """The read-only endpoint of the sink process holding the embedded store."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self._url = url
        self._http = httpx.Client(base_url=url, timeout=timeout_s)

    def _post(self, path: str, body: bytes, params: dict[str, str] | None = None) -> bytes:
        try:
            response = self._http.post(path, content=body, params=params)
        except httpx.HTTPError as exc:
            raise ClickHouseUnavailableError(f"sink query endpoint {self._url}: {exc}") from None
        if response.status_code != 200:
            try:
                error = response.json()
                kind = _REMOTE_ERRORS.get(str(error["error"]), ClickHouseQueryError)
                raise kind(str(error["message"]))
            except (ValueError, KeyError):
                raise ClickHouseQueryError(response.text.strip()) from None
        return response.content

    def raw(self, sql: str, fmt: str) -> bytes:
        return self._post("/query", sql.encode("utf-8"), {"format": fmt})

    def insert_json(self, table: str, rows: list[dict[str, Any]]) -> None:
        body = "\n".join(json.dumps(r) for r in rows).encode("utf-8")
        self._post(f"/insert/{table}", body)

    def close(self) -> None:
        self._http.close()

    @property
    def description(self) -> str:
        return f"the running sink at {self._url}"


def _live_endpoint(data_dir: Path) -> str | None:
    path = endpoint_file(data_dir)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        os.kill(int(info["pid"]), 0)
        url = str(info["url"])
        httpx.get(f"{url}/ping", timeout=2.0).raise_for_status()
    except (OSError, ValueError, KeyError, httpx.HTTPError):
        return None
    return url


def open_warehouse(url: str | None = None) -> Warehouse:
    """The warehouse for ``url`` (default ``CLICKHOUSE_URL``), through a running sink if one
    holds the embedded store."""
    url = url or clickhouse_url()
    parts = urlsplit(url)
    if parts.scheme == "chdb" and parts.path:
        endpoint = _live_endpoint(Path(parts.path))
        if endpoint is not None:
            return EndpointWarehouse(endpoint)
    return DirectWarehouse(Store(make_client(url)), url.split("@")[-1])
