"""A small synchronous client for the Confluent Schema Registry REST API (v1).

Meant for Confluent Schema Registry, Redpanda's built-in registry, Karapace and Apicurio
Registry in its Confluent-compatible (``/apis/ccompat/v7``) mode. Results are cached both
ways (subject+schema -> id, id -> schema), so after first use the codec's hot path does no
I/O. The HTTP connection is opened lazily on the first request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from runtime.errors import ConfigError
from runtime.redact import redact_url
from schemas.exceptions import (
    RegistryError,
    RegistryNotFoundError,
    RegistryUnavailableError,
)

__all__ = ["CONTENT_TYPE", "CompatibilityResult", "RegistryClient"]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass(frozen=True)
class CompatibilityResult:
    """Answer of a compatibility check: the verdict and the registry's reasons (verbose)."""

    is_compatible: bool
    messages: tuple[str, ...] = ()


class RegistryClient:
    """Register, look up and check Avro schemas against one Confluent-compatible registry.

    Args:
        url: base URL, e.g. ``http://localhost:8081`` or
            ``https://host/apis/ccompat/v7``; ``user:password@`` in it is used for basic auth.
        username: basic-auth user (``SCHEMA_REGISTRY_USERNAME``); wins over the URL's.
        password: basic-auth password (``SCHEMA_REGISTRY_PASSWORD``).
        timeout_s: per-request timeout in seconds.
        transport: an httpx transport (tests and proxies); default: plain HTTP(S).
    """

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"SCHEMA_REGISTRY_URL {redact_url(url)!r} is not an http(s) URL; "
                "set it like http://host:8081"
            )
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self._base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._display = redact_url(url)
        user = username if username is not None else parts.username
        secret = password if password is not None else parts.password
        self._auth = httpx.BasicAuth(user, secret or "") if user else None
        self._timeout_s = timeout_s
        self._transport = transport
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, str] = {}

    @property
    def url(self) -> str:
        """The registry URL with any password masked (safe to log)."""
        return self._display

    def register(self, subject: str, schema_json: str) -> int:
        """Register ``schema_json`` under ``subject`` (idempotent) and return its global id."""
        key = (subject, schema_json)
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        body = self._request("POST", f"/subjects/{_q(subject)}/versions", {"schema": schema_json})
        schema_id = int(body["id"])
        self._remember(key, schema_id)
        return schema_id

    def lookup(self, subject: str, schema_json: str) -> int:
        """Id of ``schema_json`` if it is already registered under ``subject`` (no registering)."""
        key = (subject, schema_json)
        cached = self._ids.get(key)
        if cached is not None:
            return cached
        body = self._request("POST", f"/subjects/{_q(subject)}", {"schema": schema_json})
        schema_id = int(body["id"])
        self._remember(key, schema_id)
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        """The schema text registered with global id ``schema_id`` (cached forever: ids are
        immutable)."""
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        body = self._request("GET", f"/schemas/ids/{schema_id}")
        schema_type = body.get("schemaType", "AVRO")
        if schema_type != "AVRO":
            raise RegistryError(
                f"schema id {schema_id} at {self._display} is {schema_type}, not AVRO; "
                "the record was not written by this pipeline"
            )
        text = str(body["schema"])
        self._schemas[schema_id] = text
        return text

    def check_compatibility(self, subject: str, schema_json: str) -> CompatibilityResult:
        """Whether ``schema_json`` is compatible with the latest version under ``subject``,
        by the subject's configured level. Raises RegistryNotFoundError for a new subject."""
        body = self._request(
            "POST",
            f"/compatibility/subjects/{_q(subject)}/versions/latest?verbose=true",
            {"schema": schema_json},
        )
        messages = body.get("messages") or []
        return CompatibilityResult(bool(body["is_compatible"]), tuple(str(m) for m in messages))

    def set_compatibility(self, subject: str, level: str) -> str:
        """Set the subject's compatibility level (BACKWARD, FULL, ...); returns the level set."""
        body = self._request("PUT", f"/config/{_q(subject)}", {"compatibility": level})
        return str(body.get("compatibility", level))

    def close(self) -> None:
        """Close the HTTP connection (safe to call twice; the client reopens on next use)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _remember(self, key: tuple[str, str], schema_id: int) -> None:
        self._ids[key] = schema_id
        self._schemas.setdefault(schema_id, key[1])

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    base_url=self._base,
                    auth=self._auth,
                    timeout=self._timeout_s,
                    transport=self._transport,
                    headers={"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE},
                )
            return self._client

    def _request(self, method: str, path: str, payload: Any = None) -> dict[str, Any]:
        where = f"{method} {self._display}{path.split('?', 1)[0]}"
        try:
            response = self._http().request(method, path, json=payload)
        except httpx.TransportError as exc:
            raise RegistryUnavailableError(
                f"schema registry unreachable ({where}): {type(exc).__name__}: {exc}; check "
                "SCHEMA_REGISTRY_URL and that the registry is running"
            ) from None
        if response.is_success:
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise RegistryError(
                    f"schema registry answered {where} with a body that is not a JSON object; "
                    "is SCHEMA_REGISTRY_URL a Confluent-compatible registry?",
                    status=response.status_code,
                )
            return body
        raise _error_for(response, where)


def _q(subject: str) -> str:
    return quote(subject, safe="")


def _error_for(response: httpx.Response, where: str) -> RegistryError:
    status = response.status_code
    error_code = 0
    message = response.text.strip()[:300]
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error_code = int(body.get("error_code") or 0)
        message = str(body.get("message") or message)
    text = f"schema registry refused {where}: HTTP {status}"
    if error_code:
        text += f" error_code {error_code}"
    text += f": {message}"
    if status == 404:
        return RegistryNotFoundError(text, status=status, error_code=error_code)
    if status >= 500 or status == 429:
        return RegistryUnavailableError(
            text + " (retry later)", status=status, error_code=error_code
        )
    if status in (401, 403):
        text += "; check SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD"
    return RegistryError(text, status=status, error_code=error_code)
