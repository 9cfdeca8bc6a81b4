"""Generates migration 0006 (``event_landing`` + materialized views) from the Inter1Event schema.

The landing table's columns and the views' expressions follow the container header schema
(:func:`sinks.event_container.landing_schema`), so they are generated, not typed by hand:
``python -m sinks.landing_ddl`` prints the file; ``tests/sinks/test_event_container.py``
checks the committed file equals the output. A migration is never edited once applied: a
later schema version gets a new migration.

Per insert, ClickHouse plans every view again (about 57 ms for a first draft of these
views, 11 µs per event of a 5,000-event batch, against 2.8 µs per event of actual work), so
the views use few functions and touch the payload ``Variant`` as little as possible: the
payload JSON is one ``toJSONString`` of the whole Variant, and only the branches the
derived tables read are taken out of it.

``events.payload_json`` is the same text the Python row builder writes
(:func:`sinks.tables.payload_json`): ``{"branch":...,"data":...}``, keys in schema order,
no spaces, ``null`` for absent values, non-ASCII as UTF-8, ``/`` unescaped, integral floats
without ``.0`` (ClickHouse's ``Float64`` text). Left different, the same JSON values either
way: floats below 1e-4 or from 1e16 in magnitude (``0.00001`` where Python writes
``1e-05``), control characters (``\\u001F`` for ``\\u001f``) and U+2028/U+2029 (escaped
by ClickHouse).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

from schemas.catalog import default_catalog
from sinks.event_container import landing_schema

__all__ = ["event_rows_query_migration", "landing_migration", "landing_table_columns"]

_SCALARS = {
    "string": "String",
    "int": "Int32",
    "long": "Int64",
    "double": "Float64",
    "float": "Float32",
    "boolean": "Bool",
    "bytes": "String",
}
_QUOTED = frozenset({"values"})


class _Named:
    """Named Avro types seen so far (a later reference by name reuses the definition)."""

    def __init__(self) -> None:
        self.types: dict[str, dict[str, Any]] = {}

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str) and schema not in _SCALARS and schema != "null":
            return self.types[schema]
        if isinstance(schema, dict) and schema.get("type") == "record":
            self.types.setdefault(schema["name"], schema)
        return schema


def _quoted(name: str) -> str:
    # as ClickHouse spells the name in a type: it backquotes `values` (not start, end...)
    return f"`{name}`" if name in _QUOTED else name


def _ch_type(schema: Any, named: _Named) -> str:  # noqa: PLR0911  # one return per type
    """The ClickHouse type ClickHouse's Avro input gives an Avro type."""
    schema = named.resolve(schema)
    if isinstance(schema, str):
        return _SCALARS[schema]
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        if len(branches) == 1 and "null" in schema:
            return f"Nullable({_ch_type(branches[0], named)})"
        return "Variant(" + ", ".join(_ch_type(b, named) for b in branches) + ")"
    kind = schema["type"]
    if kind == "record":
        members = ", ".join(
            f"{_quoted(f['name'])} {_ch_type(f['type'], named)}" for f in schema["fields"]
        )
        return f"Tuple({members})"
    if kind == "array":
        return f"Array({_ch_type(schema['items'], named)})"
    if kind == "map":
        return f"Map(String, {_ch_type(schema['values'], named)})"
    if kind == "long" and schema.get("logicalType") == "timestamp-micros":
        return "DateTime64(6, 'UTC')"
    if isinstance(kind, str) and kind in _SCALARS:
        return _SCALARS[kind]
    raise ValueError(f"no ClickHouse type for Avro type {schema!r}")


_LIST_FIELD = "__items__"  # see sinks.event_container._wrap_nullable_arrays


def _wrapped(schema: Any, named: _Named) -> bool:
    """Whether a value of this type holds a wrapped nullable array anywhere."""
    schema = named.resolve(schema)
    if isinstance(schema, list):
        return any(_wrapped(b, named) for b in schema if b != "null")
    if isinstance(schema, dict):
        if schema.get("type") == "record":
            return schema["name"].endswith("__list") or any(
                _wrapped(f["type"], named) for f in schema["fields"]
            )
        if schema.get("type") == "array":
            return _wrapped(schema["items"], named)
    return False


def _has_array(schema: Any, named: _Named) -> bool:
    schema = named.resolve(schema)
    if isinstance(schema, list):
        return any(_has_array(b, named) for b in schema if b != "null")
    if isinstance(schema, dict):
        if schema.get("type") == "array":
            return True
        if schema.get("type") == "record":
            return any(_has_array(f["type"], named) for f in schema["fields"])
    return False


def _check_wrappers(schema: Any, named: _Named) -> None:
    """The unwrapping regex takes an array whose items hold no array (strings may hold
    brackets: they are matched whole)."""
    schema = named.resolve(schema)
    if isinstance(schema, list):
        for branch in schema:
            if branch != "null":
                _check_wrappers(branch, named)
    elif isinstance(schema, dict) and schema.get("type") == "record":
        if schema["name"].endswith("__list"):
            items = named.resolve(schema["fields"][0]["type"])["items"]
            if _has_array(items, named):
                raise ValueError(
                    f"{schema['name']}: a nullable array of arrays cannot be unwrapped"
                )
        for field in schema["fields"]:
            _check_wrappers(field["type"], named)
    elif isinstance(schema, dict) and schema.get("type") == "array":
        _check_wrappers(schema["items"], named)


# {"__items__":[...]} -> [...]: the array's items as JSON strings (matched whole, so a
# bracket inside one does not end the match) or anything but brackets and quotes
_UNWRAP = (
    r"""replaceRegexpAll({json}, '\\{{"__items__":(\\["""
    r"""(?:"(?:[^"\\\\]|\\\\.)*"|[^\\[\\]"])*\\])\\}}', '\\1')"""
)


def landing_table_columns() -> list[tuple[str, str]]:
    """``(column, ClickHouse type)`` of ``event_landing``: the header schema's fields."""
    schema = landing_schema(default_catalog().current("Inter1Event").schema)
    named = _Named()
    return [(f["name"], _ch_type(f["type"], named)) for f in schema["fields"]]


def _branches() -> tuple[list[tuple[str, str, dict[str, Any]]], _Named]:
    """``(short name, ClickHouse type, record)`` of every payload branch, schema order."""
    schema = landing_schema(default_catalog().current("Inter1Event").schema)
    named = _Named()
    out = []
    for field in schema["fields"]:
        if field["name"] == "payload":
            for branch in field["type"]:
                out.append((branch["name"], _ch_type(branch, named), branch))
        else:
            _ch_type(field["type"], named)
    return out, named


_BRANCH = "substring(splitByString('__', toString(variantType(payload)))[1], 7)"
"""The payload branch's short name, from the Variant type's name (``Tuple(<Branch>__...``)."""


_PREFIXED_KEY = r"""'"[A-Za-z]+__(\\w+)":', '"\\1":'"""
"""A payload branch's field name as the header schema spells it -> the protocol's name."""
_SCORES = (
    "Tuple(quality_index Float64, clarity Float64, authority Float64, energy Float64, "
    "rapport Float64, learning Float64)"
)
_FIELDS = (
    "Tuple(signal_type String, start Float64, end Float64, probability Nullable(String), "
    "rationale Nullable(String), state String, "
    f"overall Nullable({_SCORES}), timeline Array(Tuple(start Float64, end Float64, "
    f"`values` {_SCORES})), ranges Array(Tuple(start Float64, end Float64)), reason String)"
)
"""The payload fields the derived tables read (signals, engagement, quality, coverage)."""


def _field_names(schema: Any, named: _Named, seen: set[str]) -> Iterator[str]:
    schema = named.resolve(schema)
    if isinstance(schema, list):
        for branch in schema:
            yield from _field_names(branch, named, seen)
    elif isinstance(schema, dict) and schema.get("type") == "record":
        if schema["name"] in seen:
            return
        seen.add(schema["name"])
        for field in schema["fields"]:
            yield field["name"]
            yield from _field_names(field["type"], named, seen)
    elif isinstance(schema, dict) and schema.get("type") == "array":
        yield from _field_names(schema["items"], named, seen)


def landing_migration() -> str:
    """The text of ``sinks/migrations/0006_event_landing.sql``."""
    branches, named = _branches()
    # the JSON renaming (_PREFIXED_KEY) takes any key of letters + "__" for a prefixed one
    for _, _, record in branches:
        for field in record["fields"]:
            names = _field_names(field["type"], named, set())
            clashing = [n for n in names if re.match(r"[A-Za-z]+__\w", n)]
            if clashing:
                raise ValueError(f"payload field names {clashing} look like renamed ones")
    columns = ",\n".join(f"    {name} {kind}" for name, kind in landing_table_columns())
    data = _data("toJSONString(payload)", branches, named)
    return _TEMPLATE.format(columns=columns, branch=_BRANCH, data=data, fields=_FIELDS)


def _data(json: str, branches: list[tuple[str, str, dict[str, Any]]], named: _Named) -> str:
    """The payload JSON with the protocol's field names, from ``json`` (the Variant's)."""
    data = f"replaceRegexpAll({json}, {_PREFIXED_KEY})"
    if any(_wrapped(record, named) for _, _, record in branches):
        for _, _, record in branches:
            _check_wrappers(record, named)
        data = _UNWRAP.format(json=data)
    return data


def event_rows_query_migration() -> str:
    """The text of ``sinks/migrations/0007_event_rows_flat.sql``: the same ``event_rows``
    from one flat SELECT, each derived field read by its own key from the payload JSON."""
    branches, named = _branches()
    return _FLAT_TEMPLATE.format(branch=_BRANCH, data=_data("j", branches, named), scores=_SCORES)


def main() -> None:
    """Print a migration: ``python -m sinks.landing_ddl [0006|0007]`` (default 0006)."""
    which = sys.argv[1] if len(sys.argv) > 1 else "0006"
    print(event_rows_query_migration() if which == "0007" else landing_migration(), end="")


_TEMPLATE = """\
-- GENERATED by `python -m sinks.landing_ddl` from the Inter1Event schema: do not edit
-- (tests/sinks/test_event_container.py checks it is current).
-- The sink inserts Inter1Event records as an Avro container (sinks/event_container.py):
-- ClickHouse decodes them and these views fill the analytics tables with the rows the
-- Python row builder (sinks/tables.py) writes, through two Null tables (they store
-- nothing): event_landing takes the container (its constraint refuses rows misread after
-- a damaged record); one view turns each row into event_rows (flat: the events row plus
-- the payload fields the other tables need), from which one view per table writes.
-- Variant: EngagementUpdated and SignalEnded are both (String, Float64), hence
-- allow_suspicious_variant_types (the branch is told apart by its field names).
CREATE TABLE IF NOT EXISTS event_landing
(
{columns},
    CONSTRAINT aligned CHECK row_end = source_offset
)
ENGINE = Null
SETTINGS allow_suspicious_variant_types = 1;

CREATE TABLE IF NOT EXISTS event_rows
(
    event_id String,
    session_id String,
    api_version String,
    event_type String,
    ts DateTime64(6, 'UTC'),
    correlation_id String,
    incarnation UInt32,
    event_seq UInt64,
    media_offset_s Float64,
    chunk_seq Nullable(Int64),
    received_at DateTime64(6, 'UTC'),
    tenant String,
    app String,
    payload_json String,
    source_topic String,
    source_partition UInt32,
    source_offset UInt64,
    branch String COMMENT 'payload branch, e.g. SignalDetected',
    signal_type String COMMENT 'signal branches',
    probability String COMMENT 'signal.detected/updated (empty: not sent)',
    rationale String COMMENT 'signal.detected/updated (empty: not sent)',
    signal_s Float64 COMMENT 'signal start (detected/updated) or end (ended), connection time',
    state String COMMENT 'engagement.updated',
    start_s Float64 COMMENT 'engagement.updated start, connection time',
    overall Nullable(Tuple(quality_index Float64, clarity Float64, authority Float64,
        energy Float64, rapport Float64, learning Float64)),
    timeline Array(Tuple(start Float64, end Float64, `values` Tuple(quality_index Float64,
        clarity Float64, authority Float64, energy Float64, rapport Float64, learning Float64))),
    ranges Array(Tuple(start Float64, end Float64)) COMMENT 'coverage branches',
    reason String COMMENT 'coverage.degraded'
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS event_rows_from_landing TO event_rows AS
SELECT
    event_id, session_id, api_version, event_type, timestamp AS ts, correlation_id,
    incarnation, event_seq, media_offset_s, chunk_seq, received_at,
    ifNull(tenant, '') AS tenant, ifNull(app, '') AS app,
    concat('{{"branch":"', branch, '","data":', data, '}}') AS payload_json,
    source_topic, source_partition, source_offset, branch,
    if(branch IN ('SignalDetected', 'SignalUpdated', 'SignalEnded'), f.signal_type, '')
        AS signal_type,
    ifNull(f.probability, '') AS probability,
    ifNull(f.rationale, '') AS rationale,
    if(branch = 'SignalEnded', f.end, f.start) AS signal_s,
    if(branch = 'EngagementUpdated', f.state, '') AS state,
    f.start AS start_s,
    f.overall AS overall,
    f.timeline AS timeline,
    f.ranges AS ranges,
    if(branch = 'CoverageDegraded', f.reason, '') AS reason
FROM
(
    -- the fields the derived tables read, by name from the payload JSON: one function
    -- (a variantElement per branch cost 1.3 ms of planning each, on every insert)
    SELECT *, JSONExtract(data, '{fields}') AS f
    FROM
    (
        SELECT *, {branch} AS branch, {data} AS data
        FROM event_landing
    )
)
SETTINGS output_format_json_escape_forward_slashes = 0, output_format_json_quote_64bit_integers = 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_from_landing TO events AS
SELECT
    event_id, session_id, api_version, event_type, ts, correlation_id, incarnation,
    event_seq, media_offset_s, chunk_seq, received_at, tenant, app, payload_json,
    source_topic, source_partition, source_offset
FROM event_rows;

CREATE MATERIALIZED VIEW IF NOT EXISTS signal_events_from_landing TO signal_events AS
SELECT
    event_id, session_id, incarnation, event_seq, event_type, signal_type, probability,
    rationale, media_offset_s + signal_s AS media_s, ts, tenant, app
FROM event_rows
WHERE branch IN ('SignalDetected', 'SignalUpdated', 'SignalEnded');

CREATE MATERIALIZED VIEW IF NOT EXISTS engagement_events_from_landing TO engagement_events AS
SELECT
    event_id, session_id, incarnation, event_seq, state,
    media_offset_s + start_s AS start_s, ts, tenant, app
FROM event_rows
WHERE branch = 'EngagementUpdated';

CREATE MATERIALIZED VIEW IF NOT EXISTS quality_overall_from_landing TO quality_overall AS
SELECT
    event_id, session_id, incarnation, event_seq,
    assumeNotNull(overall).quality_index AS quality_index,
    assumeNotNull(overall).clarity AS clarity,
    assumeNotNull(overall).authority AS authority,
    assumeNotNull(overall).energy AS energy,
    assumeNotNull(overall).rapport AS rapport,
    assumeNotNull(overall).learning AS learning,
    ts, tenant, app
FROM event_rows
WHERE branch = 'ConversationQualityUpdated' AND overall IS NOT NULL;

CREATE MATERIALIZED VIEW IF NOT EXISTS quality_timeline_from_landing TO quality_timeline AS
SELECT
    event_id, session_id, incarnation, event_seq, idx - 1 AS idx,
    media_offset_s + entry.start AS start_s, media_offset_s + entry.end AS end_s,
    entry.values.quality_index AS quality_index, entry.values.clarity AS clarity,
    entry.values.authority AS authority, entry.values.energy AS energy,
    entry.values.rapport AS rapport, entry.values.learning AS learning,
    ts, tenant, app
FROM event_rows
ARRAY JOIN timeline AS entry, arrayEnumerate(timeline) AS idx
WHERE branch = 'ConversationQualityUpdated';

CREATE MATERIALIZED VIEW IF NOT EXISTS coverage_from_landing TO coverage AS
SELECT
    event_id, session_id, incarnation,
    if(branch = 'CoverageDropped', 'dropped', 'degraded') AS kind, reason, idx - 1 AS idx,
    media_offset_s + range.start AS start_s, media_offset_s + range.end AS end_s,
    range.end - range.start AS seconds, ts, tenant, app
FROM event_rows
ARRAY JOIN ranges AS range, arrayEnumerate(ranges) AS idx
WHERE branch IN ('CoverageDropped', 'CoverageDegraded');
"""

_FLAT_TEMPLATE = """\
-- GENERATED by `python -m sinks.landing_ddl 0007` from the Inter1Event schema: do not edit
-- (tests/sinks/test_event_container.py checks it is current).
-- Replaces the view of migration 0006 that fills event_rows with one flat SELECT, same
-- rows: ClickHouse plans every view again on each insert, and the nested SELECT *
-- subqueries carrying the payload Variant plus one JSONExtract into a ten-field tuple cost
-- about 4 ms of that per insert. Each derived field is now read by its own key from the
-- payload JSON as the Variant writes it (keys <Branch>__<field>, sinks/event_container.py),
-- only for the branches whose table reads it (the other rows' values are never read); the
-- six views of 0006 that write the tables from event_rows are unchanged.
-- A new view, then the old one dropped (not ALTER ... MODIFY QUERY: a container retried
-- after a crash of the process that ran the ALTER was not deduplicated in the views'
-- tables). Between the two statements both views write event_rows: apply it while no
-- sink inserts (the sink applies migrations at its start, before it consumes).
CREATE MATERIALIZED VIEW IF NOT EXISTS event_rows_from_landing_flat TO event_rows AS
WITH
    {branch} AS br,
    assumeNotNull(toJSONString(payload)) AS j
SELECT
    event_id, session_id, api_version, event_type, timestamp AS ts, correlation_id,
    incarnation, event_seq, media_offset_s, chunk_seq, received_at,
    ifNull(tenant, '') AS tenant, ifNull(app, '') AS app,
    concat('{{"branch":"', br, '","data":', {data}, '}}') AS payload_json,
    source_topic, source_partition, source_offset, br AS branch,
    if(br IN ('SignalDetected', 'SignalUpdated', 'SignalEnded'),
        JSONExtractString(j, concat(br, '__signal_type')), '') AS signal_type,
    if(br IN ('SignalDetected', 'SignalUpdated'),
        JSONExtractString(j, concat(br, '__probability')), '') AS probability,
    if(br IN ('SignalDetected', 'SignalUpdated'),
        JSONExtractString(j, concat(br, '__rationale')), '') AS rationale,
    if(br IN ('SignalDetected', 'SignalUpdated', 'SignalEnded'),
        JSONExtractFloat(j, concat(br, if(br = 'SignalEnded', '__end', '__start'))), 0)
        AS signal_s,
    if(br = 'EngagementUpdated', JSONExtractString(j, 'EngagementUpdated__state'), '') AS state,
    if(br = 'EngagementUpdated', JSONExtractFloat(j, 'EngagementUpdated__start'), 0) AS start_s,
    if(br = 'ConversationQualityUpdated',
        JSONExtract(j, 'ConversationQualityUpdated__overall', 'Nullable({scores})'),
        NULL) AS overall,
    if(br = 'ConversationQualityUpdated',
        JSONExtract(j, 'ConversationQualityUpdated__timeline', '__items__',
            'Array(Tuple(start Float64, end Float64, `values` {scores}))'),
        []) AS timeline,
    if(br IN ('CoverageDropped', 'CoverageDegraded'),
        JSONExtract(j, concat(br, '__ranges'), 'Array(Tuple(start Float64, end Float64))'),
        []) AS ranges,
    if(br = 'CoverageDegraded', JSONExtractString(j, 'CoverageDegraded__reason'), '') AS reason
FROM event_landing
SETTINGS output_format_json_escape_forward_slashes = 0, output_format_json_quote_64bit_integers = 0;

DROP TABLE IF EXISTS event_rows_from_landing;
"""


if __name__ == "__main__":
    main()
