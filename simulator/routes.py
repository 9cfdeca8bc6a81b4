"""The HTTP side of the simulator: upgrade authentication and the JSON usage endpoints.

Runs as ``process_request`` of the WebSocket server, so one port serves both:
``GET /healthz``, ``GET /usage``, ``GET /usage/{session_id}`` and the two stream paths.
"""

from __future__ import annotations

import hashlib
import http
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from simulator.config import FAULT_KEY_PREFIX, KeyGrant, SimulatorConfig
from simulator.exceptions import FaultSpecError
from simulator.faults import FaultPlan, parse_faults
from simulator.protocol import STREAM_PATHS
from simulator.usage import UsageLedger

__all__ = ["StreamRequest", "json_response", "key_id", "parse_stream_request", "route_http"]


@dataclass(frozen=True)
class StreamRequest:
    """An authenticated upgrade request for a stream path."""

    api_version: str
    key: str
    grant: KeyGrant
    model: str | None
    faults: FaultPlan


def key_id(key: str) -> str:
    """A non-secret identifier of an API key for logs and usage records."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def json_response(status: int, body: Any) -> Response:
    """An HTTP response with a JSON body."""
    payload = json.dumps(body, indent=None, separators=(",", ":")).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
    return Response(status, http.HTTPStatus(status).phrase, headers, payload)


def _bearer(request: Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def parse_stream_request(
    path: str, authorization: str | None, config: SimulatorConfig
) -> StreamRequest | Response:
    """Authenticate an upgrade to a stream path; a :class:`Response` means refuse it.

    Fault plans combine: the CLI's, then the key's (``sim-fault:<spec>``), then the
    ``sim_fault`` query parameter's.
    """
    parts = urlsplit(path)
    api_version = STREAM_PATHS.get(parts.path.rstrip("/"))
    if api_version is None:
        return json_response(404, {"error_id": "not_found", "message": f"No route {parts.path}."})
    grant = config.grant_for(authorization) if authorization else None
    if authorization is None or grant is None:
        return json_response(
            401, {"error_id": "ih2001", "message": "Missing or invalid API key.", "link": None}
        )
    query = parse_qs(parts.query)
    faults = config.faults
    try:
        if authorization.startswith(FAULT_KEY_PREFIX) and authorization not in config.keys:
            faults = faults.merged(parse_faults(authorization[len(FAULT_KEY_PREFIX) :]))
        for spec in query.get("sim_fault", []):
            faults = faults.merged(parse_faults(spec))
    except FaultSpecError as exc:
        return json_response(400, {"error_id": "bad_fault_spec", "message": str(exc)})
    models = query.get("model")
    model = models[-1] if models else ("inter-2" if api_version == "v2" else None)
    return StreamRequest(api_version, authorization, grant, model, faults)


def route_http(
    request: Request, config: SimulatorConfig, ledger: UsageLedger
) -> StreamRequest | Response:
    """Answer plain HTTP routes, or authenticate a stream upgrade."""
    path = urlsplit(request.path).path.rstrip("/")
    if path == "/healthz":
        return json_response(200, {"status": "ok"})
    if path == "/usage":
        return json_response(200, ledger.summary())
    if path.startswith("/usage/"):
        usage = ledger.get(path.removeprefix("/usage/"))
        if usage is None:
            return json_response(404, {"error_id": "not_found", "message": "Unknown session."})
        return json_response(200, usage.to_json())
    return parse_stream_request(request.path, _bearer(request), config)
