"""Map Inter-1 server envelopes to the ``Inter1Event.payload`` union.

Known event kinds become their own record branch with the protocol's field names; an
unknown kind, or a known kind whose data does not fit its record (a server change), becomes
``UnknownEvent`` with the whole envelope as JSON, so it passes through instead of failing.
Fields the schema does not know are dropped from known kinds (the raw JSON is not kept).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from schemas.catalog import default_catalog

__all__ = [
    "PAYLOAD_BRANCHES",
    "PAYLOAD_NAMESPACE",
    "UNKNOWN_EVENT",
    "payload_from_envelope",
    "unknown_payload",
]

PAYLOAD_NAMESPACE = "ai.interhuman.pipeline.inter1"
_NS = PAYLOAD_NAMESPACE + "."

PAYLOAD_BRANCHES: Mapping[str, str] = {
    "signal.detected": _NS + "SignalDetected",
    "signal.updated": _NS + "SignalUpdated",
    "signal.ended": _NS + "SignalEnded",
    "engagement.updated": _NS + "EngagementUpdated",
    "conversation_quality.updated": _NS + "ConversationQualityUpdated",
    "feedback.generated": _NS + "FeedbackGenerated",
    "coverage.dropped": _NS + "CoverageDropped",
    "coverage.degraded": _NS + "CoverageDegraded",
    "error": _NS + "Error",
    "session.ready": _NS + "SessionReady",
    "session.updated": _NS + "SessionUpdated",
    "session.closing": _NS + "SessionClosing",
    "session.ended": _NS + "SessionEnded",
}
"""Protocol ``type`` string -> full name of its payload branch (the tuple's first item)."""

UNKNOWN_EVENT = _NS + "UnknownEvent"


class _Mismatch(Exception):
    """Raised inside the converter when a value does not fit its field's type."""


def unknown_payload(envelope: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The ``UnknownEvent`` branch for an envelope: its type and compact raw JSON."""
    raw = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, default=str)
    return (UNKNOWN_EVENT, {"type": str(envelope.get("type", "")), "raw_json": raw})


def payload_from_envelope(envelope: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The ``Inter1Event.payload`` value for a server envelope ``{type, timestamp,
    correlation_id, data}`` as received (decoded JSON)."""
    branch = PAYLOAD_BRANCHES.get(str(envelope.get("type", "")))
    data = envelope.get("data")
    if branch is None or not isinstance(data, Mapping):
        return unknown_payload(envelope)
    try:
        return (branch, _branch_converters()[branch](data))
    except _Mismatch:
        return unknown_payload(envelope)


_Converter = Callable[[Any], Any]


@cache
def _branch_converters() -> dict[str, _Converter]:
    """A converter per payload branch, built once from the schema (walking the schema for
    every event was the costliest step of publishing one)."""
    records, names = _payload_schemas()
    compiled: dict[str, _Converter] = {}
    return {branch: _compile(schema, names, compiled) for branch, schema in records.items()}


@cache
def _payload_schemas() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Branch records of the current Inter1Event payload, and every named type by full name."""
    schema = default_catalog().current("Inter1Event").schema
    payload = next(f for f in schema["fields"] if f["name"] == "payload")
    names: dict[str, dict[str, Any]] = {}

    def collect(node: Any, namespace: str) -> None:
        if isinstance(node, list):
            for item in node:
                collect(item, namespace)
        elif isinstance(node, dict):
            if node.get("type") == "record":
                ns = node.get("namespace", namespace)
                names[f"{ns}.{node['name']}"] = node
                for fld in node["fields"]:
                    collect(fld["type"], ns)
            elif node.get("type") in ("array", "map"):
                collect(node.get("items", node.get("values")), namespace)

    collect(payload["type"], PAYLOAD_NAMESPACE)
    branches = {f"{b.get('namespace', PAYLOAD_NAMESPACE)}.{b['name']}": b for b in payload["type"]}
    return branches, names


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# primitive type -> (accepts the JSON value?, conversion)
_PRIMITIVES: dict[str, tuple[Callable[[Any], bool], Callable[[Any], Any]]] = {
    "string": (lambda v: isinstance(v, str), str),
    "double": (_number, float),
    "int": (_integer, int),
    "long": (_integer, int),
    "boolean": (lambda v: isinstance(v, bool), bool),
}
_IMMUTABLE = (type(None), str, int, float, bool)


def _compile(
    typ: Any, names: dict[str, dict[str, Any]], named: dict[str, _Converter]
) -> _Converter:
    """A function converting a JSON value to the Avro datum of ``typ`` (raises _Mismatch)."""
    if isinstance(typ, list):
        return _compile_union(typ, names, named)
    if isinstance(typ, dict):
        if typ["type"] == "array":
            item = _compile(typ["items"], names, named)

            def array(value: Any) -> Any:
                if not isinstance(value, list):
                    raise _Mismatch
                return [item(v) for v in value]

            return array
        if typ["type"] == "record":
            return _compile_record(typ, names, named)
        return _compile(typ["type"], names, named)
    primitive = _PRIMITIVES.get(typ)
    if primitive is not None:
        return _compile_scalar(*primitive)
    return _compile_named(str(typ), names, named)


def _compile_scalar(accepts: Callable[[Any], bool], conversion: Callable[[Any], Any]) -> _Converter:
    def scalar(value: Any) -> Any:
        if not accepts(value):
            raise _Mismatch
        return conversion(value)

    return scalar


def _compile_named(
    typ: str, names: dict[str, dict[str, Any]], named: dict[str, _Converter]
) -> _Converter:
    """A reference to a named record, compiled once (a recursive reference finds the entry
    and calls the record's converter once it is built)."""
    full = typ if typ in names else _NS + typ
    if full not in names:

        def unknown(_value: Any) -> Any:
            raise _Mismatch

        return unknown
    if full not in named:
        slot: list[_Converter] = []

        def forward(value: Any) -> Any:
            return slot[0](value)

        named[full] = forward
        slot.append(_compile_record(names[full], names, named))
    return named[full]


def _compile_union(
    branches: list[Any], names: dict[str, dict[str, Any]], named: dict[str, _Converter]
) -> _Converter:
    """A union value: null, or the first non-null branch the value fits."""
    nullable = "null" in branches
    options = [_compile(b, names, named) for b in branches if b != "null"]

    def union(value: Any) -> Any:
        if value is None and nullable:
            return None
        for option in options:
            try:
                return option(value)
            except _Mismatch:
                continue
        raise _Mismatch

    return union


def _compile_record(
    schema: dict[str, Any], names: dict[str, dict[str, Any]], named: dict[str, _Converter]
) -> _Converter:
    fields = [
        (
            fld["name"],
            _compile(fld["type"], names, named),
            "default" in fld,
            fld.get("default"),
            isinstance(fld.get("default"), _IMMUTABLE),
        )
        for fld in schema["fields"]
    ]

    def record(value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise _Mismatch
        out: dict[str, Any] = {}
        for name, convert, has_default, default, immutable in fields:
            if name in value:
                out[name] = convert(value[name])
            elif has_default:
                out[name] = default if immutable else copy.deepcopy(default)
            else:
                raise _Mismatch
        return out

    return record
