"""Events as an Avro container that ClickHouse decodes: the bytes, the views' rows, bad data."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import pytest

from schemas.catalog import default_catalog
from schemas.codec import get_codec
from schemas.examples import example_inter1_events
from schemas.framing import SINGLE_OBJECT_HEADER_SIZE
from sinks.clickhouse_client import embedded_url, make_client
from sinks.decoding import SinkDecoder, micros
from sinks.event_container import (
    container_header,
    landing_schema,
    ocf_container,
    session_id_of,
    zigzag,
)
from sinks.exceptions import ClickHouseBadDataError
from sinks.landing_ddl import event_rows_query_migration, landing_migration
from sinks.migrations import MIGRATIONS_DIR, migrate
from sinks.sample_dataset import sample_records
from sinks.store import Store
from sinks.tables import COLUMNS, KafkaCoordinates, rows_for

EVENT_TABLES = (
    "events",
    "signal_events",
    "engagement_events",
    "quality_overall",
    "quality_timeline",
    "coverage",
)
_SCHEMA = default_catalog().current("Inter1Event").schema
_HEADER = container_header(landing_schema(_SCHEMA))


def _unicode_event() -> dict[str, Any]:
    """A signal whose rationale needs JSON escaping (quotes, slash, newline, non-ASCII)
    and whose media time is not a short decimal."""
    first = next(e for e in example_inter1_events() if e["event_type"] == "signal.detected")
    branch, data = first["payload"]
    rationale = 'Says "maybe/perhaps"\n — hésite, 検討 😀'
    return {
        **first,
        "event_id": "ex:0:unicode",
        "tenant": None,
        "media_offset_s": 0.1,  # + start: 0.30000000000000004 (the floats go through JSON text)
        "payload": (branch, {**data, "start": 0.2, "rationale": rationale, "modality": None}),
    }


def _events() -> list[dict[str, Any]]:
    """Every payload branch, the sample dataset's events and the escaping case."""
    sample = [d for _, name, d in sample_records() if name == "Inter1Event"]
    return [*example_inter1_events(), *sample, _unicode_event()]


def _bodies(events: list[dict[str, Any]]) -> list[bytes]:
    codec = get_codec()
    return [codec.encode("Inter1Event", e)[SINGLE_OBJECT_HEADER_SIZE:] for e in events]


def test_zigzag_is_avro_long_encoding() -> None:
    # the ends of the one- to four-byte encodings (unrolled) and past them
    edges = [v for b in (6, 13, 20, 27) for v in (2**b - 1, 2**b, -(2**b), -(2**b) - 1)]
    for value in (0, -1, 1, 300, 2**31, -(2**40), 2**63 - 1, -(2**63), *edges):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, "long", value)
        assert zigzag(value) == out.getvalue(), value
    assert (zigzag(0), zigzag(-1), zigzag(5), zigzag(64)) == (
        b"\x00",
        b"\x01",
        b"\x0a",
        b"\x80\x01",
    )


def test_container_bytes_for_one_row() -> None:
    """Header, then one block: count, length, topic + partition + offset + body + offset, sync."""
    body = _bodies(example_inter1_events()[:1])[0]
    container = ocf_container(_HEADER, "t", 3, [(5, body)])
    assert container.startswith(b"Obj\x01")
    row = b"\x02t" + b"\x06" + b"\x0a" + body + b"\x0a"
    sync = _HEADER[-16:]
    assert container == _HEADER + b"\x02" + zigzag(len(row)) + row + sync


def _original_names(value: Any) -> Any:
    """A value read with the header schema, back in the writer schema's shape."""
    if isinstance(value, dict):
        if set(value) == {"__items__"}:  # a wrapped nullable array
            return _original_names(value["__items__"])
        return {k.split("__", 1)[-1]: _original_names(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_original_names(v) for v in value]
    return value


def test_fastavro_reads_the_container_back() -> None:
    """The container is a valid OCF: fastavro reads each row as coordinates + the event."""
    events = _events()
    container = ocf_container(
        _HEADER, "inter1.events", 1, [(100 + i, b) for i, b in enumerate(_bodies(events))]
    )
    reader = fastavro.reader(
        io.BytesIO(container), return_record_name=True, return_record_name_override=True
    )
    rows = list(reader)
    assert len(rows) == len(events)
    for index, (row, event) in enumerate(zip(rows, events, strict=True)):
        assert (row["source_topic"], row["source_partition"]) == ("inter1.events", 1)
        assert row["source_offset"] == row["row_end"] == 100 + index
        branch, payload = row["payload"]
        assert branch.rsplit(".", 1)[-1] == event["payload"][0].rsplit(".", 1)[-1]
        assert _original_names(payload) == event["payload"][1]
        for name in ("event_id", "session_id", "event_type", "media_offset_s", "tenant"):
            assert row[name] == event[name]
        assert row["timestamp"] == event["timestamp"]


def test_session_id_is_read_without_decoding() -> None:
    (body,) = _bodies([_unicode_event()])
    value = b"\xc3\x01" + b"\x00" * 8 + body
    assert session_id_of(value, SINGLE_OBJECT_HEADER_SIZE) == _unicode_event()["session_id"]
    assert session_id_of(value[:14], SINGLE_OBJECT_HEADER_SIZE) is None  # cut inside a string
    assert session_id_of(b"\xc3\x01" + b"\x00" * 8 + b"\x03", SINGLE_OBJECT_HEADER_SIZE) is None
    # ids of 64 bytes and more have two-byte lengths (the one-byte case is a fast path)
    long_ids = {**_unicode_event(), "event_id": "e" * 70, "session_id": "s" * 64}
    (body,) = _bodies([long_ids])
    assert session_id_of(b"\xc3\x01" + b"\x00" * 8 + body, SINGLE_OBJECT_HEADER_SIZE) == "s" * 64
    (body,) = _bodies([{**long_ids, "event_id": "e"}])
    assert session_id_of(b"\xc3\x01" + b"\x00" * 8 + body, SINGLE_OBJECT_HEADER_SIZE) == "s" * 64


def test_committed_landing_migration_is_current() -> None:
    assert (MIGRATIONS_DIR / "0006_event_landing.sql").read_text(
        encoding="utf-8"
    ) == landing_migration(), (
        "sinks/migrations/0006_event_landing.sql differs from its generator: a new schema "
        "version needs a new migration (never edit an applied one)"
    )
    assert (MIGRATIONS_DIR / "0007_event_rows_flat.sql").read_text(
        encoding="utf-8"
    ) == event_rows_query_migration(), (
        "sinks/migrations/0007_event_rows_flat.sql differs from `python -m sinks.landing_ddl 0007`"
    )


# ClickHouse decodes the container ---------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    client = make_client(embedded_url(tmp_path))
    migrate(client)
    store = Store(client)
    try:
        yield store
    finally:
        store.close()


def _comparable(value: Any) -> Any:
    if isinstance(value, datetime):  # the driver returns naive UTC
        return micros(value if value.tzinfo else value.replace(tzinfo=UTC))
    return value


def _python_rows(events: list[dict[str, Any]], topic: str) -> dict[str, list[tuple[Any, ...]]]:
    decoder = SinkDecoder(get_codec())
    codec = get_codec()
    out: dict[str, list[tuple[Any, ...]]] = {table: [] for table in EVENT_TABLES}
    for offset, event in enumerate(events):
        name, datum = decoder.decode(codec.encode("Inter1Event", event))
        assert datum is not None
        rows = rows_for(name, datum, KafkaCoordinates(topic, 2, offset)) or {}
        for table, table_rows in rows.items():
            out[table].extend(tuple(_comparable(v) for v in row) for row in table_rows)
    return {table: sorted(rows, key=repr) for table, rows in out.items()}


def _stored_rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in EVENT_TABLES:
        rows = store.rows(f"SELECT {', '.join(COLUMNS[table])} FROM {table}")
        out[table] = sorted((tuple(_comparable(v) for v in r) for r in rows), key=repr)
    return out


def _counts(store: Store) -> dict[str, int]:
    return {t: int(store.rows(f"SELECT count() FROM {t}")[0][0]) for t in EVENT_TABLES}


@pytest.mark.clickhouse
def test_views_write_the_rows_the_python_builder_writes(store: Store) -> None:
    """Every table, every column, exactly (payload_json text included), for every payload
    branch; a retried container (same token) adds nothing, another token adds it again."""
    events = _events()
    container = ocf_container(_HEADER, "ev", 2, list(enumerate(_bodies(events))))
    store.insert_avro("event_landing", container, token="ev:2:0-99")
    expected = _python_rows(events, "ev")
    assert _stored_rows(store) == expected
    counts = {table: len(rows) for table, rows in expected.items()}
    assert counts == {
        "events": 32,
        "signal_events": 10,
        "engagement_events": 5,
        "quality_overall": 3,
        "quality_timeline": 4,
        "coverage": 5,
    }
    (unicode_json,) = store.rows("SELECT payload_json FROM events WHERE event_id = 'ex:0:unicode'")
    assert unicode_json[0] == (
        '{"branch":"SignalDetected","data":{"signal_type":"hesitation","start":0.2,'
        '"probability":"medium","rationale":"Says \\"maybe/perhaps\\"\\n — hésite, 検討 😀",'
        '"modality":null}}'
    )
    (media_s,) = store.rows("SELECT media_s FROM signal_events WHERE event_id = 'ex:0:unicode'")
    assert media_s[0] == 0.1 + 0.2 == 0.30000000000000004
    store.insert_avro("event_landing", container, token="ev:2:0-99")
    assert _counts(store) == counts
    store.insert_avro("event_landing", container, token="ev:2:0-99-other")
    assert _counts(store) == {table: 2 * n for table, n in counts.items()}


@pytest.mark.clickhouse
@pytest.mark.parametrize("damage", ["trailing_byte", "truncated"])
def test_a_damaged_record_fails_the_whole_container_as_bad_data(store: Store, damage: str) -> None:
    """A body with a byte too many or too few shifts every later row: ClickHouse refuses the
    container (nothing stored in any table) with an error the sink reads as bad data."""
    bodies = _bodies(_events()[:6])
    bodies[2] = bodies[2] + b"\x00" if damage == "trailing_byte" else bodies[2][:-1]
    container = ocf_container(_HEADER, "ev", 0, list(enumerate(bodies)))
    with pytest.raises(ClickHouseBadDataError) as refused:
        store.insert_avro("event_landing", container, token="ev:0:0-5")
    assert "insert into event_landing (token ev:0:0-5)" in str(refused.value)
    assert refused.value.retriable is False
    assert _counts(store) == dict.fromkeys(EVENT_TABLES, 0)


@pytest.mark.clickhouse
def test_a_misread_row_is_refused_by_the_landing_constraint(store: Store) -> None:
    """A row whose bytes parse but end on another offset than they started with (what a
    body with bytes missing or left over makes of the fields after it) is refused by
    ``row_end = source_offset``, as bad data, before any view writes a row."""
    (body,) = _bodies(_events()[:1])
    row = b"\x04ev" + zigzag(0) + zigzag(4) + body + zigzag(5)
    sync = _HEADER[-16:]
    container = _HEADER + zigzag(1) + zigzag(len(row)) + row + sync
    with pytest.raises(ClickHouseBadDataError) as refused:
        store.insert_avro("event_landing", container, token="ev:0:4-4")
    assert "aligned" in str(refused.value)
    assert "VIOLATED_CONSTRAINT" in str(refused.value)
    assert _counts(store) == dict.fromkeys(EVENT_TABLES, 0)
