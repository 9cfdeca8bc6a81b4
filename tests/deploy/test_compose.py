"""deploy/compose.yaml: the Compose Specification schema, and every service against the code.

No container engine runs here, so the file is checked the way Compose reads it: YAML (with
merge keys) validated against the Compose Specification's JSON schema (vendored), each
pipeline service's command parsed by the real CLI, its environment (image ENV + env files
+ environment) checked against the settings classes its command reads.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

import click
import jsonschema
import pytest
from deploy_files import (
    COMPOSE,
    DEPLOY,
    FIXTURES,
    PIPELINE_UID,
    REQUIRED,
    command_of,
    compose,
    compose_service_env,
    env_file,
    known_names,
    project_version,
    read_settings,
    url_port,
)

from inter1_pipeline.cli import cli
from runtime.settings import CuesSettings, SessionWorkerSettings, SinkSettings

PIPELINE_SERVICES = ("simulator", "topics", "migrate", "session-worker", "sink", "cues")
SECRET_NAMES = {"INTER1_API_KEY", "CLICKHOUSE_URL", "CLICKHOUSE_PASSWORD", "KAFKA_SASL_PASSWORD"}


def _validator() -> jsonschema.Draft7Validator:
    schema = json.loads((FIXTURES / "compose-spec.json").read_text(encoding="utf-8"))
    return jsonschema.Draft7Validator(schema)


def _services() -> dict[str, Any]:
    return dict(compose()["services"])


def _healthcheck_url(name: str) -> str:
    test = _services()[name]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], test
    return str(test[3])


def test_file_matches_the_compose_specification() -> None:
    errors = sorted(_validator().iter_errors(compose()), key=str)
    assert errors == []


@pytest.mark.parametrize(
    ("service", "old", "wrong"),
    [("sink", "depends_on", "depends"), ("kafka", "healthcheck", "health_check")],
)
def test_a_misspelt_key_fails_the_schema(service: str, old: str, wrong: str) -> None:
    data = copy.deepcopy(compose())
    data["services"][service][wrong] = data["services"][service].pop(old)
    with pytest.raises(jsonschema.ValidationError, match=wrong):
        _validator().validate(data)


def test_the_whole_stack_is_there() -> None:
    services = _services()
    assert sorted(services) == sorted(
        ["kafka", "clickhouse", "simulator", "topics", "migrate", "session-worker", "sink", "cues"]
    )
    pom = ElementTree.parse(DEPLOY / "kafka" / "pom.xml").getroot()
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    kafka_version = pom.find("m:properties/m:kafka.version", namespace)
    assert kafka_version is not None
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version.text}"
    assert re.fullmatch(r"clickhouse/clickhouse-server:\d+\.\d+", services["clickhouse"]["image"])
    for name in PIPELINE_SERVICES:
        assert services[name]["image"] == f"inter1-pipeline:{project_version()}"
        assert services[name]["build"] == {"context": "..", "dockerfile": "Dockerfile"}


@pytest.mark.parametrize("name", PIPELINE_SERVICES)
def test_command_parses_with_the_real_cli(name: str) -> None:
    args = list(_services()[name]["command"])
    context = click.Context(cli)
    command_name, command, rest = cli.resolve_command(context, args)
    assert command is not None, f"{name}: unknown subcommand {args[0]}"
    if isinstance(command, click.Group):
        _sub, command, rest = command.resolve_command(context, rest)
    assert command is not None
    command.make_context(str(command_name), list(rest))  # raises on an unknown option


@pytest.mark.parametrize("name", PIPELINE_SERVICES)
def test_environment_is_what_the_command_reads(name: str) -> None:
    command = command_of(list(_services()[name]["command"]))
    own = compose_service_env(name, with_image=False)
    unknown = sorted(set(own) - known_names(command))
    assert unknown == [], f"{name} sets variables `{' '.join(command)}` does not read"
    env = compose_service_env(name)
    missing = sorted(REQUIRED[command] - set(env))
    assert missing == [], f"{name} must set {missing}"
    read_settings(command, env)  # every value passes the settings' own validation


@pytest.mark.parametrize("name", PIPELINE_SERVICES)
def test_pipeline_containers_are_hardened(name: str) -> None:
    service = _services()[name]
    assert service["user"] == f"{PIPELINE_UID}:{PIPELINE_UID}"
    assert service["read_only"] is True
    assert service["tmpfs"] == ["/tmp"]
    assert service["cap_drop"] == ["ALL"]
    assert service["security_opt"] == ["no-new-privileges:true"]


def test_secrets_come_only_from_ignored_env_files() -> None:
    services = _services()
    for name, service in services.items():
        literal = SECRET_NAMES & set(service.get("environment") or {})
        assert literal == set(), f"{name} has secrets written into compose.yaml: {literal}"
    files = {
        name: [entry["path"] for entry in service.get("env_file", [])]
        for name, service in services.items()
        if service.get("env_file")
    }
    assert files == {
        "clickhouse": ["secrets/clickhouse-server.env"],
        "migrate": ["secrets/clickhouse-url.env"],
        "session-worker": ["secrets/inter1.env"],
        "sink": ["secrets/clickhouse-url.env"],
    }
    ignored = (DEPLOY / "secrets" / ".gitignore").read_text(encoding="utf-8").split()
    for path in {p for paths in files.values() for p in paths}:
        assert any(fnmatch.fnmatch(path.rsplit("/", 1)[1], pattern) for pattern in ignored)
        assert (COMPOSE.parent / f"{path}.example").is_file()


def test_clickhouse_credentials_agree_between_server_and_clients() -> None:
    clickhouse = _services()["clickhouse"]["environment"]
    password = env_file(DEPLOY / "secrets" / "clickhouse-server.env.example")
    url = urlsplit(env_file(DEPLOY / "secrets" / "clickhouse-url.env.example")["CLICKHOUSE_URL"])
    assert (url.username, url.password) == (
        clickhouse["CLICKHOUSE_USER"],
        password["CLICKHOUSE_PASSWORD"],
    )
    assert (url.hostname, url.port, url.path) == (
        "clickhouse",
        8123,
        f"/{clickhouse['CLICKHOUSE_DB']}",
    )


def test_dependencies_wait_for_health_or_completion() -> None:
    services = _services()
    depends = {
        name: {dep: spec["condition"] for dep, spec in service.get("depends_on", {}).items()}
        for name, service in services.items()
    }
    assert depends == {
        "kafka": {},
        "clickhouse": {},
        "simulator": {},
        "topics": {"kafka": "service_healthy"},
        "migrate": {"clickhouse": "service_healthy"},
        "session-worker": {
            "topics": "service_completed_successfully",
            "simulator": "service_healthy",
        },
        "sink": {
            "topics": "service_completed_successfully",
            "migrate": "service_completed_successfully",
        },
        "cues": {"topics": "service_completed_successfully"},
    }
    for name, deps in depends.items():
        for dep, condition in deps.items():
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits on {dep}'s healthcheck"
    jobs = {name for name in services if services[name]["restart"].startswith("on-failure")}
    assert jobs == {"topics", "migrate"}
    assert all("healthcheck" in services[n] for n in services if n not in jobs)


def test_healthchecks_hit_the_ports_the_settings_give() -> None:
    worker = read_settings(("session-worker",), compose_service_env("session-worker"))
    sink = read_settings(("sink",), compose_service_env("sink"))
    cues = read_settings(("cues",), compose_service_env("cues"))
    assert url_port(_healthcheck_url("session-worker")) == worker[SessionWorkerSettings].http_port
    assert "/healthz'" in _healthcheck_url("session-worker")
    assert url_port(_healthcheck_url("sink")) == sink[SinkSettings].http_port
    assert "/healthz'" in _healthcheck_url("sink")
    assert url_port(_healthcheck_url("cues")) == cues[CuesSettings].web_port
    assert "/healthz'" in _healthcheck_url("cues")
    simulator = _services()["simulator"]["command"]
    port = int(simulator[simulator.index("--port") + 1])
    assert url_port(_healthcheck_url("simulator")) == port
    assert "/healthz'" in _healthcheck_url("simulator")
    inter1 = env_file(DEPLOY / "secrets" / "inter1.env.example")
    assert inter1["INTER1_BASE_URL"] == f"http://simulator:{port}"


def test_stop_grace_covers_the_session_drain() -> None:
    worker = read_settings(("session-worker",), compose_service_env("session-worker"))
    grace = _services()["session-worker"]["stop_grace_period"]
    assert grace == "45s"
    assert int(grace.removesuffix("s")) >= worker[SessionWorkerSettings].shutdown_timeout_s + 15


def test_workers_reach_kafka_inside_the_compose_network() -> None:
    kafka = _services()["kafka"]["environment"]
    advertised = dict(
        item.split("://", 1)[::-1] for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    inside = advertised["kafka:9092"]
    for name in ("topics", "session-worker", "sink", "cues"):
        env = compose_service_env(name)
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
    assert inside == "PLAINTEXT"
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics are code
