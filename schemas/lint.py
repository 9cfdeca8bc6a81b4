"""House rules for the ``.avsc`` files beyond Avro validity: every record and field documented."""

from __future__ import annotations

from typing import Any

from schemas.catalog import RecordVersion

__all__ = ["doc_problems"]


def doc_problems(rv: RecordVersion) -> list[str]:
    """One line per record or field in ``rv`` that has no ``doc`` (empty when all do)."""
    out: list[str] = []
    _walk(rv.schema, rv.name, out)
    return [f"{rv.name} v{rv.version}: {p}" for p in out]


def _walk(node: Any, path: str, out: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _walk(item, path, out)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind == "record":
        if not str(node.get("doc", "")).strip():
            out.append(f"record {node.get('name')} has no doc")
        for fld in node.get("fields", []):
            fpath = f"{path}.{fld.get('name')}" if path != node.get("name") else fld.get("name")
            if not str(fld.get("doc", "")).strip():
                out.append(f"field {fpath} has no doc")
            _walk(fld.get("type"), str(fpath), out)
    elif kind == "array":
        _walk(node.get("items"), path, out)
    elif kind == "map":
        _walk(node.get("values"), path, out)
