"""A small Confluent-compatible Schema Registry server for the tests (stdlib http.server).

No registry server can be installed from the package registries here, so this follows the
documented Confluent REST API (v1) for the calls the pipeline makes: register, look up a
schema under a subject, fetch by global id, check compatibility against the latest version,
get/set a subject's compatibility level; error bodies are ``{"error_code", "message"}``
with Confluent's codes (40401 subject not found, 40403 schema not found, 409 incompatible,
42201 invalid schema, 42203 invalid compatibility level, 50001 store error). Compatibility
is judged by the Apache Avro library's checker (as the Java registry does with Avro's).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

__all__ = ["RegistryServer"]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_LEVELS = {
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
}


class _Reply(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _error(status: int, code: int, message: str) -> _Reply:
    return _Reply(status, {"error_code": code, "message": message})


@dataclass
class _State:
    schemas: list[str] = field(default_factory=list)  # index + 1 = global id
    canonical: dict[str, int] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)  # subject -> ids by version
    config: dict[str, str] = field(default_factory=dict)
    default_level: str = "BACKWARD"
    requests: list[tuple[str, str]] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # statuses to answer the next requests


class RegistryServer:
    """Serve a registry on 127.0.0.1 (free port) in a thread; ``url`` once started."""

    def __init__(self, *, username: str | None = None, password: str | None = None) -> None:
        self.state = _State()
        self._credentials = (username, password) if username else None
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = server.dispatch(
                    method, self.path, raw, self.headers.get("Authorization")
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # -- request handling ---------------------------------------------------------------

    def dispatch(self, method: str, target: str, raw: bytes, auth: str | None) -> tuple[int, Any]:
        parts = urlsplit(target)
        path, query = parts.path, parts.query
        with self._lock:
            self.state.requests.append((method, path))
            try:
                if self.state.fail_next:
                    status = self.state.fail_next.pop(0)
                    raise _error(status, status * 100 + 1, "Error in the backend data store")
                self._authorize(auth)
                payload = json.loads(raw) if raw else {}
                return 200, self._route(method, path, query, payload)
            except _Reply as reply:
                return reply.status, reply.body
            except ValueError:
                return 400, {"error_code": 400, "message": "Malformed JSON"}

    def _authorize(self, auth: str | None) -> None:
        if self._credentials is None:
            return
        expected = base64.b64encode(":".join(self._credentials).encode()).decode()  # type: ignore[arg-type]
        if auth != f"Basic {expected}":
            raise _error(401, 401, "Unauthorized")

    def _route(self, method: str, path: str, query: str, payload: dict[str, Any]) -> Any:  # noqa: PLR0911  # one return per REST route
        m = re.fullmatch(r"/subjects/([^/]+)/versions", path)
        if m and method == "POST":
            return self._register(unquote(m.group(1)), payload)
        m = re.fullmatch(r"/subjects/([^/]+)", path)
        if m and method == "POST":
            return self._lookup(unquote(m.group(1)), payload)
        m = re.fullmatch(r"/schemas/ids/(\d+)", path)
        if m and method == "GET":
            schema_id = int(m.group(1))
            if not 1 <= schema_id <= len(self.state.schemas):
                raise _error(404, 40403, f"Schema {schema_id} not found")
            return {"schema": self.state.schemas[schema_id - 1]}
        m = re.fullmatch(r"/compatibility/subjects/([^/]+)/versions/latest", path)
        if m and method == "POST":
            return self._compatibility(unquote(m.group(1)), payload, "verbose=true" in query)
        m = re.fullmatch(r"/config/([^/]+)", path)
        if m and method == "PUT":
            level = str(payload.get("compatibility", ""))
            if level not in _LEVELS:
                raise _error(422, 42203, "Invalid compatibility level")
            self.state.config[unquote(m.group(1))] = level
            return {"compatibility": level}
        if m and method == "GET":
            subj = unquote(m.group(1))
            if subj not in self.state.config:
                raise _error(
                    404,
                    40408,
                    f"Subject '{subj}' does not have subject-level compatibility configured",
                )
            return {"compatibilityLevel": self.state.config[subj]}
        if path == "/subjects" and method == "GET":
            return sorted(self.state.subjects)
        raise _error(404, 404, "HTTP 404 Not Found")

    def _parse(self, payload: dict[str, Any]) -> tuple[str, avro.schema.Schema]:
        text = payload.get("schema")
        if payload.get("schemaType", "AVRO") != "AVRO" or not isinstance(text, str):
            raise _error(422, 42201, "Either the input schema or one its references is invalid")
        try:
            parsed = avro.schema.parse(text)
        except Exception:
            raise _error(
                422, 42201, "Either the input schema or one its references is invalid"
            ) from None
        canonical = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
        return canonical, parsed

    def _register(self, subject: str, payload: dict[str, Any]) -> dict[str, Any]:
        canonical, parsed = self._parse(payload)
        versions = self.state.subjects.get(subject, [])
        existing = self.state.canonical.get(canonical)
        if existing is not None and existing in versions:
            return {"id": existing}
        messages = self._incompatibilities(subject, parsed)
        if messages:
            raise _error(
                409,
                409,
                f"Schema being registered is incompatible with an earlier schema for subject "
                f'"{subject}", details: {messages}',
            )
        if existing is None:
            self.state.schemas.append(payload["schema"])
            existing = len(self.state.schemas)
            self.state.canonical[canonical] = existing
        self.state.subjects.setdefault(subject, []).append(existing)
        return {"id": existing}

    def _lookup(self, subject: str, payload: dict[str, Any]) -> dict[str, Any]:
        canonical, _ = self._parse(payload)
        if subject not in self.state.subjects:
            raise _error(404, 40401, f"Subject '{subject}' not found.")
        schema_id = self.state.canonical.get(canonical)
        versions = self.state.subjects[subject]
        if schema_id is None or schema_id not in versions:
            raise _error(404, 40403, "Schema not found")
        return {
            "subject": subject,
            "id": schema_id,
            "version": versions.index(schema_id) + 1,
            "schema": self.state.schemas[schema_id - 1],
        }

    def _compatibility(
        self, subject: str, payload: dict[str, Any], verbose: bool
    ) -> dict[str, Any]:
        _, parsed = self._parse(payload)
        if subject not in self.state.subjects:
            raise _error(404, 40401, f"Subject '{subject}' not found.")
        messages = self._incompatibilities(subject, parsed)
        body: dict[str, Any] = {"is_compatible": not messages}
        if verbose:
            body["messages"] = messages
        return body

    def _incompatibilities(self, subject: str, new: avro.schema.Schema) -> list[str]:
        level = self.state.config.get(subject, self.state.default_level)
        versions = self.state.subjects.get(subject, [])
        if level == "NONE" or not versions:
            return []
        olds = versions if level.endswith("_TRANSITIVE") else versions[-1:]
        messages: list[str] = []
        for schema_id in olds:
            old = avro.schema.parse(self.state.schemas[schema_id - 1])
            pairs = []
            if level.startswith(("BACKWARD", "FULL")):
                pairs.append((new, old, "BACKWARD"))
            if level.startswith(("FORWARD", "FULL")):
                pairs.append((old, new, "FORWARD"))
            for reader, writer, direction in pairs:
                result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
                if result.compatibility is SchemaCompatibilityType.incompatible:
                    locations = sorted(result.locations - {"/"}) or ["/"]
                    for loc in locations:
                        messages.append(
                            f"{{errorType:'{result.incompatibilities[0].name.upper()}', "
                            f"description:'{'; '.join(sorted(result.messages))}', "
                            f"location:'{loc}', direction:'{direction}'}}"
                        )
        return messages
