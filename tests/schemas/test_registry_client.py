"""The registry client against the in-test Confluent-compatible registry server."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest

from runtime.errors import ConfigError
from schemas.catalog import SchemaCatalog
from schemas.exceptions import (
    RegistryError,
    RegistryNotFoundError,
    RegistryUnavailableError,
)
from schemas.registry_client import CompatibilityResult, RegistryClient

SUBJECT = "inter1.video-chunks-ai.interhuman.pipeline.VideoChunk"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_register_is_idempotent_and_cached(
    registry: RegistryClient, registry_server: Any, catalog: SchemaCatalog
) -> None:
    v1, v2 = catalog.versions("VideoChunk")
    assert registry.register(SUBJECT, v1.schema_json) == 1
    assert registry.register(SUBJECT, v2.schema_json) == 2
    assert registry.register(SUBJECT, v2.schema_json) == 2
    assert registry_server.state.subjects == {SUBJECT: [1, 2]}
    # the repeated register and the id lookups of our own schemas do no I/O
    assert registry.schema_by_id(2) == v2.schema_json
    assert registry_server.state.requests == [
        ("POST", f"/subjects/{SUBJECT}/versions"),
        ("POST", f"/subjects/{SUBJECT}/versions"),
    ]


def test_same_schema_under_two_subjects_gets_one_id(
    registry: RegistryClient, catalog: SchemaCatalog
) -> None:
    schema = catalog.current("SessionEnded").schema_json
    assert registry.register("a-ai.interhuman.pipeline.SessionEnded", schema) == 1
    assert registry.register("b-ai.interhuman.pipeline.SessionEnded", schema) == 1


def test_schema_by_id_fetches_once(
    registry_server: Any, registry: RegistryClient, catalog: SchemaCatalog
) -> None:
    schema = catalog.current("UsageRecord").schema_json
    with RegistryClient(registry_server.url) as writer:
        schema_id = writer.register("inter1.usage-ai.interhuman.pipeline.UsageRecord", schema)
    before = len(registry_server.state.requests)
    assert registry.schema_by_id(schema_id) == schema
    assert registry.schema_by_id(schema_id) == schema
    assert registry_server.state.requests[before:] == [("GET", f"/schemas/ids/{schema_id}")]


def test_schema_by_unknown_id(registry: RegistryClient, registry_server: Any) -> None:
    with pytest.raises(RegistryNotFoundError) as info:
        registry.schema_by_id(99)
    assert str(info.value) == (
        f"schema registry refused GET {registry_server.url}/schemas/ids/99: HTTP 404 "
        "error_code 40403: Schema 99 not found"
    )
    assert (info.value.status, info.value.error_code, info.value.retriable) == (404, 40403, False)


def test_lookup(registry: RegistryClient, catalog: SchemaCatalog) -> None:
    v1, v2 = catalog.versions("VideoChunk")
    with pytest.raises(RegistryNotFoundError) as info:
        registry.lookup(SUBJECT, v1.schema_json)
    assert info.value.error_code == 40401
    registry.register(SUBJECT, v1.schema_json)
    assert registry.lookup(SUBJECT, v1.schema_json) == 1
    with pytest.raises(RegistryNotFoundError) as info:
        registry.lookup(SUBJECT, v2.schema_json)
    assert info.value.error_code == 40403


def test_compatibility_check(registry: RegistryClient, catalog: SchemaCatalog) -> None:
    v1, v2 = catalog.versions("VideoChunk")
    with pytest.raises(RegistryNotFoundError) as info:
        registry.check_compatibility(SUBJECT, v2.schema_json)
    assert info.value.error_code == 40401
    registry.register(SUBJECT, v1.schema_json)
    assert registry.check_compatibility(SUBJECT, v2.schema_json) == CompatibilityResult(True, ())

    broken = json.loads(v2.schema_json)
    broken["fields"].append({"name": "camera", "type": "string", "doc": "no default"})
    result = registry.check_compatibility(SUBJECT, json.dumps(broken))
    assert result == CompatibilityResult(
        False,
        (
            "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'camera', "
            "location:'/fields/10', direction:'BACKWARD'}",
        ),
    )


def test_register_incompatible_is_refused(registry: RegistryClient, catalog: SchemaCatalog) -> None:
    v1 = catalog.versions("VideoChunk")[0]
    registry.register(SUBJECT, v1.schema_json)
    broken = json.loads(v1.schema_json)
    broken["fields"][1]["type"] = "string"  # seq: long -> string
    with pytest.raises(RegistryError) as info:
        registry.register(SUBJECT, json.dumps(broken))
    assert type(info.value) is RegistryError
    assert (info.value.status, info.value.error_code) == (409, 409)
    assert "is incompatible with an earlier schema" in str(info.value)


def test_set_compatibility(registry: RegistryClient, registry_server: Any) -> None:
    assert registry.set_compatibility(SUBJECT, "FULL") == "FULL"
    assert registry_server.state.config == {SUBJECT: "FULL"}
    with pytest.raises(RegistryError) as info:
        registry.set_compatibility(SUBJECT, "SIDEWAYS")
    assert (info.value.status, info.value.error_code) == (422, 42203)


def test_server_error_is_retriable(registry: RegistryClient, registry_server: Any) -> None:
    registry_server.state.fail_next.append(500)
    with pytest.raises(RegistryUnavailableError) as info:
        registry.schema_by_id(1)
    assert str(info.value) == (
        f"schema registry refused GET {registry_server.url}/schemas/ids/1: HTTP 500 "
        "error_code 50001: Error in the backend data store (retry later)"
    )
    assert info.value.retriable is True


def test_unreachable_registry_is_retriable_and_redacted() -> None:
    port = _free_port()
    client = RegistryClient(f"http://svc:s3cret@127.0.0.1:{port}", timeout_s=2.0)
    with client, pytest.raises(RegistryUnavailableError) as info:
        client.schema_by_id(1)
    message = str(info.value)
    assert message.startswith(
        f"schema registry unreachable (GET http://svc:***@127.0.0.1:{port}/schemas/ids/1): "
        "ConnectError: "
    )
    assert message.endswith("; check SCHEMA_REGISTRY_URL and that the registry is running")
    assert "s3cret" not in message


def test_basic_auth(registry_server_factory: Callable[..., Any], catalog: SchemaCatalog) -> None:
    server = registry_server_factory(username="svc", password="s3cret")
    schema = catalog.current("DeadLetter").schema_json
    with RegistryClient(server.url, username="svc", password="s3cret") as client:
        assert client.register("dlq-ai.interhuman.pipeline.DeadLetter", schema) == 1
    host = server.url.removeprefix("http://")
    with RegistryClient(f"http://svc:s3cret@{host}") as client:  # credentials in the URL
        assert client.lookup("dlq-ai.interhuman.pipeline.DeadLetter", schema) == 1
    client = RegistryClient(f"http://svc:wrong@{host}")
    with client, pytest.raises(RegistryError) as info:
        client.schema_by_id(1)
    assert str(info.value) == (
        f"schema registry refused GET http://svc:***@{host}/schemas/ids/1: HTTP 401 "
        "error_code 401: Unauthorized; check SCHEMA_REGISTRY_USERNAME and "
        "SCHEMA_REGISTRY_PASSWORD"
    )


def test_bad_url() -> None:
    with pytest.raises(ConfigError) as info:
        RegistryClient("localhost:8081")
    assert str(info.value) == (
        "SCHEMA_REGISTRY_URL 'localhost:8081' is not an http(s) URL; set it like http://host:8081"
    )
