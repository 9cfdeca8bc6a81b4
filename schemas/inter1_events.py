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
    records, names = _payload_schemas()
    try:
        return (branch, _record(data, records[branch], names))
    except _Mismatch:
        return unknown_payload(envelope)


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


def _record(value: Any, schema: dict[str, Any], names: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _Mismatch
    out: dict[str, Any] = {}
    for fld in schema["fields"]:
        if fld["name"] in value:
            out[fld["name"]] = _convert(value[fld["name"]], fld["type"], names)
        elif "default" in fld:
            out[fld["name"]] = copy.deepcopy(fld["default"])
        else:
            raise _Mismatch
    return out


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


def _union(value: Any, branches: list[Any], names: dict[str, dict[str, Any]]) -> Any:
    """A union value: null, or the first non-null branch the value fits."""
    if value is None and "null" in branches:
        return None
    for branch in branches:
        if branch == "null":
            continue
        try:
            return _convert(value, branch, names)
        except _Mismatch:
            continue
    raise _Mismatch


def _convert(value: Any, typ: Any, names: dict[str, dict[str, Any]]) -> Any:
    if isinstance(typ, list):
        return _union(value, typ, names)
    if isinstance(typ, dict):
        if typ["type"] == "array":
            if not isinstance(value, list):
                raise _Mismatch
            return [_convert(v, typ["items"], names) for v in value]
        return (
            _record(value, typ, names)
            if typ["type"] == "record"
            else _convert(value, typ["type"], names)
        )
    primitive = _PRIMITIVES.get(typ)
    if primitive is not None:
        accepts, conversion = primitive
        if not accepts(value):
            raise _Mismatch
        return conversion(value)
    named = names.get(typ) or names.get(_NS + str(typ))
    if named is None:
        raise _Mismatch
    return _record(value, named, names)
