"""The sink's handle on ClickHouse: one client, used from worker threads one call at a time.

The embedded chDB engine lives in the sink's process, so the sink's own inserts, its
summary statements and the read-only query endpoint (:mod:`sinks.query_server`) all go
through this one object; a lock keeps their calls from interleaving on the client.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from sinks.exceptions import SchemaMismatchError, classify

__all__ = ["FORMAT_SETTINGS", "INSERT_SETTINGS", "READ_SETTINGS", "Store"]

FORMAT_SETTINGS: Mapping[str, Any] = {"output_format_json_quote_64bit_integers": 0}
"""Settings of every formatted read: JSON numbers as numbers."""
READ_SETTINGS: Mapping[str, Any] = {"readonly": 1, **FORMAT_SETTINGS}
"""Settings of reads for others (the sink's endpoint): read-only as well."""
INSERT_SETTINGS: Mapping[str, Any] = {"async_insert": 0}
"""Settings of every insert. Synchronous whatever the server's profile says: an asynchronous
insert is acknowledged from a buffer and not deduplicated by its token (only replicated
tables with ``async_insert_deduplicate`` are), and the sink commits offsets on the
acknowledgement and relies on the token when it retries. (chDB reports ``async_insert=1``
but writes in-process inserts at once; a server would not.)"""


class Store:
    """A ClickHouse client shared by threads; every call maps driver errors to project errors."""

    def __init__(self, client: Client, reader: Client | None = None) -> None:
        self._client = client
        self._reader = reader
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        # (table, columns) -> their ClickHouse types: given to the insert, clickhouse-connect
        # skips its DESCRIBE TABLE (about 1 ms of a 5 ms small insert on the embedded engine)
        self._column_types: dict[tuple[str, tuple[str, ...]], Sequence[Any]] = {}

    @property
    def client(self) -> Client:
        """The underlying client (hold no reference across threads; prefer the methods)."""
        return self._client

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        *,
        token: str | None = None,
    ) -> None:
        """Insert rows; ``token`` becomes ``insert_deduplication_token``.

        Row-oriented: transposing the rows into columns here and inserting column-oriented
        measured slower (bench/sink_bench.py, per change: 7.5 vs 6.3 µs per event).
        """
        if not rows:
            return
        settings = dict(INSERT_SETTINGS)
        if token:
            settings["insert_deduplication_token"] = token
        try:
            with self._lock:
                self._insert_rows(table, rows, columns, settings)
        except (ClickHouseError, OSError) as exc:
            raise classify(exc, f"insert into {table} (token {token})") from exc
        except (ValueError, TypeError) as exc:
            # clickhouse-connect serialises rows client-side: a value that does not fit its
            # column type fails here, before anything is sent. Find the column.
            raise self._value_mismatch(table, rows, columns, exc) from exc

    def _insert_rows(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        settings: dict[str, Any],
    ) -> None:
        """Insert with the columns' types known since the first insert (lock held). Given
        the types, clickhouse-connect skips its ``DESCRIBE TABLE``: about 1 ms of a 5 ms
        small insert on the embedded engine. An insert refused on known types is tried again
        as the first one was, described anew (the table may have been migrated), so every
        refusal is the one an undescribed insert would meet; a busy or unreachable
        ClickHouse is raised at once (the caller's backoff retries it)."""
        key = (table, tuple(columns))
        insert = functools.partial(
            self._client.insert, table, rows, column_names=list(columns), settings=settings
        )
        known = self._column_types.pop(key, None)
        if known is not None:
            try:
                insert(column_types=known)
            except ClickHouseError as exc:
                if classify(exc, table).retriable:  # busy or unreachable: not the types
                    raise
            except (ValueError, TypeError):
                pass  # described anew below
            else:
                self._column_types[key] = known
                return
        described = self._client.create_insert_context(table, list(columns)).column_types
        insert(column_types=described)
        self._column_types[key] = described

    def insert_avro(self, table: str, container: bytes, *, token: str) -> None:
        """Insert an Avro Object Container File (``FORMAT Avro``, decoded by ClickHouse).

        ``token`` becomes ``insert_deduplication_token``; it also deduplicates the blocks
        the table's materialized views write (``deduplicate_blocks_in_dependent_
        materialized_views``), so a retried container is dropped in every target table.
        Raises :class:`~sinks.exceptions.ClickHouseBadDataError` for bytes ClickHouse
        cannot read.
        """
        settings = {
            **INSERT_SETTINGS,
            "insert_deduplication_token": token,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
        }
        try:
            with self._lock:
                self._client.raw_insert(
                    table, insert_block=container, fmt="Avro", settings=settings
                )
        except (ClickHouseError, OSError) as exc:
            raise classify(exc, f"insert into {table} (token {token})") from exc

    def insert_json(self, table: str, body: bytes) -> None:
        """Insert ``JSONEachRow`` rows (values in ClickHouse's JSON text forms)."""
        try:
            with self._lock:
                self._client.raw_insert(
                    table, insert_block=body, fmt="JSONEachRow", settings=dict(INSERT_SETTINGS)
                )
        except (ClickHouseError, OSError) as exc:
            raise classify(exc, f"insert into {table}") from exc

    def command(self, sql: str, *, settings: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns nothing."""
        try:
            with self._lock:
                self._client.command(sql, settings=dict(settings or {}))
        except (ClickHouseError, OSError) as exc:
            raise classify(exc, f"statement {sql[:80]!r}") from exc

    def rows(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Typed result rows of a query."""
        try:
            with self._lock:
                result = self._client.query(sql, parameters=dict(parameters or {}))
        except (ClickHouseError, OSError) as exc:
            raise classify(exc, f"query {sql[:80]!r}") from exc
        return [tuple(r) for r in result.result_rows]

    def raw(self, sql: str, fmt: str, *, readonly: bool = False) -> bytes:
        """A query's output in a ClickHouse format (``JSONEachRow``, ``CSVWithNames``...).

        ``readonly`` runs it on the separate reader connection with ``readonly=1`` (on the
        embedded engine settings stick to a connection, so reads for others never share the
        connection the sink writes with).
        """
        try:
            if readonly:
                if self._reader is None:
                    raise RuntimeError("this store has no read-only connection")
                with self._read_lock:
                    return bytes(self._reader.raw_query(sql, fmt=fmt, settings=dict(READ_SETTINGS)))
            with self._lock:
                return bytes(self._client.raw_query(sql, fmt=fmt, settings=dict(FORMAT_SETTINGS)))
        except (ClickHouseError, OSError) as exc:
            raise classify(exc, "query") from exc

    def columns(self, table: str) -> dict[str, str]:
        """Column name -> type of a table in the current database (empty: no such table)."""
        found = self.rows(
            "SELECT name, type FROM system.columns "
            "WHERE database = currentDatabase() AND table = {t:String}",
            {"t": table},
        )
        return {str(name): str(kind) for name, kind in found}

    def close(self) -> None:
        """Close the client."""
        with self._lock:
            self._client.close()
        if self._reader is not None:
            with self._read_lock:
                self._reader.close()

    @staticmethod
    def _value_mismatch(
        table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str], exc: Exception
    ) -> SchemaMismatchError:
        for index, column in enumerate(columns):
            kinds = {type(row[index]).__name__ for row in rows if row[index] is not None}
            if len(kinds) > 1:
                return SchemaMismatchError(
                    f"table {table}, column {column}: values of mixed types {sorted(kinds)}: {exc}"
                )
        return SchemaMismatchError(f"table {table}: a value does not fit its column: {exc}")
