"""Fixtures for the schema, codec and registry tests."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.settings import load
from schemas.catalog import SCHEMA_DIR, SchemaCatalog, default_catalog
from schemas.codec import Codec, get_codec
from schemas.registry_client import RegistryClient


def _load_registry_server() -> Any:
    # --import-mode=importlib leaves sys.path alone, so load the sibling module by path.
    name = "tests_schemas_registry_server"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("registry_server.py")
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name].RegistryServer


RegistryServer = _load_registry_server()


@pytest.fixture
def catalog() -> SchemaCatalog:
    return default_catalog()


@pytest.fixture
def codec(catalog: SchemaCatalog) -> Codec:
    return Codec(catalog)


@pytest.fixture
def registry_server_factory() -> Iterator[Callable[..., Any]]:
    """Start test registry servers (``username``/``password`` to require basic auth)."""
    started: list[Any] = []

    def start(**kwargs: Any) -> Any:
        server = RegistryServer(**kwargs)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def registry_server(registry_server_factory: Callable[..., Any]) -> Any:
    return registry_server_factory()


@pytest.fixture
def registry(registry_server: Any) -> Iterator[RegistryClient]:
    with RegistryClient(registry_server.url) as client:
        yield client


@pytest.fixture
def confluent_codec(catalog: SchemaCatalog, registry: RegistryClient) -> Codec:
    return Codec(catalog, registry=registry)


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped schema directory."""
    target = tmp_path / "avsc"
    shutil.copytree(SCHEMA_DIR, target)
    return target


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Clear SCHEMA_REGISTRY_* and the settings/codec caches before and after the test."""
    for var in ("URL", "USERNAME", "PASSWORD", "COMPATIBILITY"):
        monkeypatch.delenv(f"SCHEMA_REGISTRY_{var}", raising=False)
    load.cache_clear()
    get_codec.cache_clear()
    yield monkeypatch
    load.cache_clear()
    get_codec.cache_clear()
