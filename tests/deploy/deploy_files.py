"""Readers for the deployment files (compose, Kubernetes, Dockerfile) and the settings they feed.

Shared by the tests in ``tests/deploy/`` (registered by name in their conftest.py).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser

from runtime.settings import (
    ClickHouseSettings,
    CuesSettings,
    Inter1Settings,
    KafkaSettings,
    LogSettings,
    SchemaSettings,
    SessionWorkerSettings,
    Settings,
    SinkSettings,
    StackSettings,
)
from runtime.settings_reference import settings_classes

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
FIXTURES = ROOT / "tests" / "fixtures" / "schemas"
PIPELINE_UID = 10001

# The settings groups each subcommand works with (read from the code: the command module and
# what it calls). Every command also validates all groups at start (cli.validate_all), so a
# variable of another group would be read, validated and ignored: the tests call that unknown.
COMMAND_SETTINGS: dict[tuple[str, ...], tuple[type[Settings], ...]] = {
    ("session-worker",): (
        KafkaSettings,
        SchemaSettings,
        Inter1Settings,
        SessionWorkerSettings,
        Settings,
        LogSettings,
    ),
    ("sink",): (
        KafkaSettings,
        SchemaSettings,
        ClickHouseSettings,
        StackSettings,
        SinkSettings,
        LogSettings,
    ),
    ("cues",): (KafkaSettings, SchemaSettings, CuesSettings, StackSettings, LogSettings),
    ("topics", "ensure"): (KafkaSettings, StackSettings, LogSettings),
    ("migrate",): (ClickHouseSettings, StackSettings, LogSettings),
    ("simulate",): (LogSettings,),
}

# What a containerised command needs set: a default that only works on a developer machine
# (local broker, embedded store, loopback-only or random ports) is wrong in a container.
REQUIRED: dict[tuple[str, ...], frozenset[str]] = {
    ("session-worker",): frozenset(
        {
            "KAFKA_BOOTSTRAP_SERVERS",
            "INTER1_API_KEY",
            "INTER1_BASE_URL",
            "PIPELINE_WORKER_HTTP_HOST",
        }
    ),
    ("sink",): frozenset({"KAFKA_BOOTSTRAP_SERVERS", "CLICKHOUSE_URL", "PIPELINE_SINK_QUERY_PORT"}),
    ("cues",): frozenset(
        {"KAFKA_BOOTSTRAP_SERVERS", "PIPELINE_CUES_WEB_HOST", "PIPELINE_STATE_DIR"}
    ),
    ("topics", "ensure"): frozenset({"KAFKA_BOOTSTRAP_SERVERS"}),
    ("migrate",): frozenset({"CLICKHOUSE_URL"}),
    ("simulate",): frozenset(),
}


def env_names(kind: type[Settings]) -> dict[str, str]:
    """``{ENV_NAME: field}`` of one settings class."""
    return {kind.env_name(name): name for name in kind.__struct_fields__}


ALL_ENV_NAMES = frozenset(name for kind in settings_classes() for name in env_names(kind))


def command_of(args: list[str]) -> tuple[str, ...]:
    """The subcommand key of COMMAND_SETTINGS that ``args`` (after the entry point) run."""
    for length in (2, 1):
        key = tuple(args[:length])
        if key in COMMAND_SETTINGS:
            return key
    raise KeyError(f"no settings mapping for command {args}")


def known_names(command: tuple[str, ...]) -> frozenset[str]:
    """Every variable the command's settings groups read."""
    return frozenset(name for kind in COMMAND_SETTINGS[command] for name in env_names(kind))


def read_settings(command: tuple[str, ...], values: Mapping[str, str]) -> dict[type, Any]:
    """Build every settings group of ``command`` from exactly ``values`` (validated as at
    start: a bad value raises ConfigError naming it)."""
    return {kind: kind.from_env(dict(values)) for kind in COMMAND_SETTINGS[command]}


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document of ``path``."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def kustomization() -> dict[str, Any]:
    return load_documents(K8S / "kustomization.yaml")[0]


@dataclass(frozen=True)
class K8sObject:
    file: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.file}:{self.kind}/{self.name}"


def k8s_objects(*, include_examples: bool = False) -> list[K8sObject]:
    """The objects of the kustomization's resources (and the example Secrets if asked)."""
    files = list(kustomization()["resources"])
    if include_examples:
        files.append("secrets.example.yaml")
    return [K8sObject(name, doc) for name in files for doc in load_documents(K8S / name)]


def find(objects: list[K8sObject], kind: str, name: str) -> dict[str, Any]:
    matches = [o.body for o in objects if o.kind == kind and o.name == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def config_maps(objects: list[K8sObject]) -> dict[str, dict[str, str]]:
    return {o.name: dict(o.body.get("data", {})) for o in objects if o.kind == "ConfigMap"}


def example_secrets() -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: dict(doc["stringData"])
        for doc in load_documents(K8S / "secrets.example.yaml")
    }


# What a fieldRef gives at run time, for validating the settings it feeds.
FIELD_REF_SAMPLES = {"metadata.name": "session-worker-7d9f-x2x4q", "status.podIP": "10.1.2.3"}


def container_env(objects: list[K8sObject], container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet would build it (secrets from the example)."""
    maps, secrets = config_maps(objects), example_secrets()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            env[item["name"]] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            env[item["name"]] = maps[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]]
        else:
            env[item["name"]] = FIELD_REF_SAMPLES[ref["fieldRef"]["fieldPath"]]
    return env


def compose() -> dict[str, Any]:
    """deploy/compose.yaml as Compose reads it (YAML merge keys resolved)."""
    with COMPOSE.open(encoding="utf-8") as handle:
        data: dict[str, Any] = yaml.safe_load(handle)
    return data


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose env file (comments and blank lines skipped)."""
    values = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def dockerfile() -> DockerfileParser:
    return DockerfileParser(str(ROOT / "Dockerfile"))


def image_env() -> dict[str, str]:
    """The final stage's ENV of the Dockerfile, restricted to settings variables."""
    return {k: v for k, v in dockerfile().envs.items() if k in ALL_ENV_NAMES}


def compose_service_env(name: str, *, with_image: bool = True) -> dict[str, str]:
    """A pipeline service's environment: image ENV, then env files (examples), then environment.

    ``with_image=False``: only what the service itself sets (the image's ENV is the same
    baseline for every subcommand).
    """
    service = compose()["services"][name]
    env = image_env() if with_image else {}
    for entry in service.get("env_file", []):
        path = COMPOSE.parent / (entry["path"] if isinstance(entry, dict) else entry)
        env.update(env_file(path.with_name(path.name + ".example")))
    env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    return env


def topics_toml() -> dict[str, Any]:
    with (DEPLOY / "topics.toml").open("rb") as handle:
        return tomllib.load(handle)["topics"]


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def url_port(text: str) -> int:
    """The port of the one ``http://host:port/`` URL in ``text``."""
    ports = re.findall(r"http://[\w.\-]+:(\d+)/", text)
    assert len(ports) == 1, f"expected one URL with a port in {text!r}"
    return int(ports[0])
