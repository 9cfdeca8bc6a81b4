"""Generates migration 0006 (``event_landing`` + materialized views) from the Inter1Event schema.

The landing table's columns and the views' expressions follow the container header schema
(:func:`sinks.event_container.landing_schema`), so they are generated, not typed by hand:
``make_landing_migration`` prints the file; ``tests/sinks/test_event_container.py`` checks the
committed file equals the output. A migration is never edited once applied: a later schema
version gets a new migration.

``events.payload_json`` is built in SQL as the same text the Python row builder writes
(:func:`sinks.record_log.datum_json` with ``ascii_only=False``: sorted keys, no spaces,
``null`` for absent values, non-ASCII as UTF-8, ``/`` unescaped, floats in Python's
``repr`` form ``3.0``, ``0.1``). Left different, the same JSON values either way: floats
below 1e-4 or from 1e16 in magnitude (``0.00001`` where Python writes ``1e-05``),
control characters (``\\u001F`` for ``\\u001f``) and U+2028/U+2029 (escaped by ClickHouse).
"""

from __future__ import annotations

import json
from typing import Any

from schemas.catalog import default_catalog
from sinks.event_container import landing_schema

__all__ = ["landing_migration", "landing_table_columns"]

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


def _py_float(expr: str) -> str:
    # Python's repr: integral values keep ".0" (ClickHouse prints 3 for 3.0)
    text = f"toString({expr})"
    return f"if({expr} = trunc({expr}) AND abs({expr}) < 1e16, {text} || '.0', {text})"


def _json(schema: Any, expr: str, named: _Named, key: str = "") -> str:  # noqa: PLR0911
    """SQL text expression: the value as ``datum_json`` writes it."""
    schema = named.resolve(schema)
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        if len(branches) != 1:
            raise ValueError(f"no JSON form for union {schema!r}")
        inner = named.resolve(branches[0])
        if (
            isinstance(inner, dict)
            and inner.get("type") == "record"
            and inner["name"].endswith("__list")
        ):
            value = _json(inner["fields"][0]["type"], f"assumeNotNull({expr}).items", named)
        else:
            value = _json(inner, f"assumeNotNull({expr})", named)
        return f"if(isNull({expr}), 'null', {value})"
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "string":
        return f"toJSONString({expr})"
    if kind in ("int", "long"):
        return f"toString({expr})"
    if kind in ("double", "float"):
        return _py_float(expr)
    if kind == "boolean":
        return f"if({expr}, 'true', 'false')"
    if kind == "array":
        item = _json(schema["items"], "x", named)
        return f"'[' || arrayStringConcat(arrayMap(x -> {item}, {expr}), ',') || ']'"
    if kind == "record":
        prefix = key
        members = sorted(schema["fields"], key=lambda f: f["name"].removeprefix(prefix))
        parts = []
        for f in members:
            name = f["name"].removeprefix(prefix)
            value = _json(f["type"], f"tupleElement({expr}, '{f['name']}')", named)
            parts.append(f"'{json.dumps(name)}:' || {value}")
        return "'{' || " + " || ',' || ".join(parts) + " || '}'" if parts else "'{}'"
    raise ValueError(f"no JSON form for Avro type {schema!r}")


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


_ABBREV = {
    "SignalDetected": "sd",
    "SignalUpdated": "su",
    "SignalEnded": "se",
    "EngagementUpdated": "eu",
    "ConversationQualityUpdated": "cq",
    "CoverageDropped": "cdr",
    "CoverageDegraded": "cdg",
}


def landing_migration() -> str:
    """The text of ``sinks/migrations/0006_event_landing.sql``."""
    branches, named = _branches()
    columns = ",\n".join(f"    {name} {kind}" for name, kind in landing_table_columns())
    data = ",\n".join(
        f"        variantType(payload) = '{kind}',\n            "
        + _json(record, f"variantElement(payload, '{kind}')", named, key=f"{short}__")
        for short, kind, record in branches
    )
    branch = ",\n".join(
        f"        variantType(payload) = '{kind}', '{short}'" for short, kind, _ in branches
    )
    parts: dict[str, str] = {}
    for short, kind, _ in branches:
        if short in _ABBREV:
            parts[f"is_{_ABBREV[short]}"] = f"variantType(payload) = '{kind}'"
            parts[f"el_{_ABBREV[short]}"] = f"variantElement(payload, '{kind}')"
    return _TEMPLATE.format(columns=columns, branch=branch, data=data, **parts)


def main() -> None:
    """Print the migration: ``python -m sinks.landing_ddl``."""
    print(landing_migration(), end="")


_TEMPLATE = """\
-- GENERATED by `python -m sinks.landing_ddl` from the Inter1Event schema: do not edit
-- (tests/sinks/test_event_container.py checks it is current).
-- The sink inserts Inter1Event records as an Avro container (sinks/event_container.py):
-- ClickHouse decodes them and these views fill the analytics tables with the rows the
-- Python row builder (sinks/tables.py) would write. event_landing stores nothing (Null
-- engine); its constraint refuses rows misread after a damaged record.
-- Variant: EngagementUpdated and SignalEnded are both (String, Float64), hence
-- allow_suspicious_variant_types (the branch is told apart by its field names).
CREATE TABLE IF NOT EXISTS event_landing
(
{columns},
    CONSTRAINT aligned CHECK row_end = source_offset
)
ENGINE = Null
SETTINGS allow_suspicious_variant_types = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS events_from_landing TO events AS
SELECT
    event_id, session_id, api_version, event_type, timestamp AS ts, correlation_id,
    incarnation, event_seq, media_offset_s, chunk_seq, received_at,
    ifNull(tenant, '') AS tenant, ifNull(app, '') AS app,
    '{{"branch":"' || multiIf(
{branch},
        '') || '","data":' || multiIf(
{data},
        'null') || '}}' AS payload_json,
    source_topic, source_partition, source_offset
FROM event_landing
SETTINGS output_format_json_escape_forward_slashes = 0;

CREATE MATERIALIZED VIEW IF NOT EXISTS signal_events_from_landing TO signal_events AS
SELECT
    event_id, session_id, incarnation, event_seq, event_type,
    multiIf({is_sd}, {el_sd}.SignalDetected__signal_type,
        {is_su}, {el_su}.SignalUpdated__signal_type,
        {el_se}.SignalEnded__signal_type) AS signal_type,
    ifNull(multiIf({is_sd}, {el_sd}.SignalDetected__probability,
        {is_su}, {el_su}.SignalUpdated__probability, NULL), '') AS probability,
    ifNull(multiIf({is_sd}, {el_sd}.SignalDetected__rationale,
        {is_su}, {el_su}.SignalUpdated__rationale, NULL), '') AS rationale,
    media_offset_s + multiIf({is_sd}, {el_sd}.SignalDetected__start,
        {is_su}, {el_su}.SignalUpdated__start,
        {el_se}.SignalEnded__end) AS media_s,
    timestamp AS ts, ifNull(tenant, '') AS tenant, ifNull(app, '') AS app
FROM event_landing
WHERE {is_sd} OR {is_su} OR {is_se};

CREATE MATERIALIZED VIEW IF NOT EXISTS engagement_events_from_landing TO engagement_events AS
SELECT
    event_id, session_id, incarnation, event_seq,
    {el_eu}.EngagementUpdated__state AS state,
    media_offset_s + {el_eu}.EngagementUpdated__start AS start_s,
    timestamp AS ts, ifNull(tenant, '') AS tenant, ifNull(app, '') AS app
FROM event_landing
WHERE {is_eu};

CREATE MATERIALIZED VIEW IF NOT EXISTS quality_overall_from_landing TO quality_overall AS
SELECT
    event_id, session_id, incarnation, event_seq,
    overall.quality_index AS quality_index, overall.clarity AS clarity,
    overall.authority AS authority, overall.energy AS energy, overall.rapport AS rapport,
    overall.learning AS learning,
    timestamp AS ts, ifNull(tenant, '') AS tenant, ifNull(app, '') AS app
FROM
(
    SELECT *, assumeNotNull({el_cq}.ConversationQualityUpdated__overall) AS overall
    FROM event_landing
    WHERE {is_cq} AND {el_cq}.ConversationQualityUpdated__overall IS NOT NULL
);

CREATE MATERIALIZED VIEW IF NOT EXISTS quality_timeline_from_landing TO quality_timeline AS
SELECT
    event_id, session_id, incarnation, event_seq, idx - 1 AS idx,
    media_offset_s + entry.start AS start_s, media_offset_s + entry.end AS end_s,
    entry.values.quality_index AS quality_index, entry.values.clarity AS clarity,
    entry.values.authority AS authority, entry.values.energy AS energy,
    entry.values.rapport AS rapport, entry.values.learning AS learning,
    timestamp AS ts, ifNull(tenant, '') AS tenant, ifNull(app, '') AS app
FROM
(
    SELECT *, assumeNotNull({el_cq}.ConversationQualityUpdated__timeline).items AS entries
    FROM event_landing
    WHERE {is_cq} AND {el_cq}.ConversationQualityUpdated__timeline IS NOT NULL
)
ARRAY JOIN entries AS entry, arrayEnumerate(entries) AS idx;

CREATE MATERIALIZED VIEW IF NOT EXISTS coverage_from_landing TO coverage AS
SELECT
    event_id, session_id, incarnation, kind, reason, idx - 1 AS idx,
    media_offset_s + range.start AS start_s, media_offset_s + range.end AS end_s,
    range.end - range.start AS seconds,
    timestamp AS ts, ifNull(tenant, '') AS tenant, ifNull(app, '') AS app
FROM
(
    SELECT *,
        if({is_cdr}, 'dropped', 'degraded') AS kind,
        if({is_cdr}, '', {el_cdg}.CoverageDegraded__reason) AS reason,
        if({is_cdr}, {el_cdr}.CoverageDropped__ranges, {el_cdg}.CoverageDegraded__ranges)
            AS ranges
    FROM event_landing
    WHERE {is_cdr} OR {is_cdg}
)
ARRAY JOIN ranges AS range, arrayEnumerate(ranges) AS idx;
"""


if __name__ == "__main__":
    main()
