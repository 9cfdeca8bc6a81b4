"""deploy/k8s: every object against its schema, and against the code it deploys.

Built-in kinds are validated with kubernetes-validate in strict mode (unknown fields are
errors) for the oldest and the newest Kubernetes version we support; the KEDA ScaledObject
against KEDA's own CRD schema (vendored, see tests/fixtures/schemas/README.md), made strict
the same way the API server's strict field validation treats it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from deploy_files import (
    FIXTURES,
    K8S,
    PIPELINE_UID,
    REQUIRED,
    K8sObject,
    command_of,
    container_env,
    dockerfile,
    example_secrets,
    find,
    k8s_objects,
    known_names,
    kustomization,
    project_version,
    read_settings,
    topics_toml,
)

from runtime.settings import CuesSettings, KafkaSettings, SessionWorkerSettings, SinkSettings

K8S_VERSIONS = ("1.31", "1.37")  # unhealthyPodEvictionPolicy is GA from 1.31
KEDA_CRD = FIXTURES / "keda-v2.20.2-scaledobjects.keda.sh.yaml"
WORKERS = ("session-worker", "sink", "cues")


def _strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` wherever it lists properties."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def _crd_validator(path: Path) -> tuple[str, str, jsonschema.Draft7Validator]:
    crd = yaml.safe_load(path.read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v["served"] and v["storage"]]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    api_version = f"{crd['spec']['group']}/{version['name']}"
    return api_version, crd["spec"]["names"]["kind"], jsonschema.Draft7Validator(schema)


def validate_object(body: dict[str, Any]) -> None:
    """Raise when ``body`` does not match its kind's schema (built-in or KEDA)."""
    api_version, kind, validator = _crd_validator(KEDA_CRD)
    if (body["apiVersion"], body["kind"]) == (api_version, kind):
        validator.validate(body)
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": body["metadata"]},
            K8S_VERSIONS[-1],
            strict=True,
        )  # the CRD schema leaves metadata open: check it as ObjectMeta
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(body, version, strict=True)


OBJECTS = k8s_objects(include_examples=True)


def _deployment(name: str) -> dict[str, Any]:
    return find(OBJECTS, "Deployment", name)


def _container(name: str) -> dict[str, Any]:
    (container,) = _deployment(name)["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _settings(name: str) -> dict[type, Any]:
    container = _container(name)
    return read_settings(command_of(container["args"]), container_env(OBJECTS, container))


def test_kustomization_lists_every_manifest_but_the_example_secrets() -> None:
    files = sorted(p.name for p in K8S.glob("*.yaml"))
    assert files == [
        "common.yaml",
        "cues.yaml",
        "kustomization.yaml",
        "namespace.yaml",
        "secrets.example.yaml",
        "session-worker.yaml",
        "sink.yaml",
    ]
    assert kustomization()["resources"] == [
        "namespace.yaml",
        "common.yaml",
        "session-worker.yaml",
        "sink.yaml",
        "cues.yaml",
    ]
    kinds = sorted(str(o) for o in k8s_objects())
    assert kinds == [
        "common.yaml:ConfigMap/inter1-common",
        "common.yaml:ServiceAccount/inter1-pipeline",
        "cues.yaml:ConfigMap/inter1-cues",
        "cues.yaml:Deployment/cues",
        "cues.yaml:PodDisruptionBudget/cues",
        "cues.yaml:Service/cues",
        "namespace.yaml:Namespace/inter1",
        "session-worker.yaml:ConfigMap/inter1-session-worker",
        "session-worker.yaml:Deployment/session-worker",
        "session-worker.yaml:PodDisruptionBudget/session-worker",
        "session-worker.yaml:ScaledObject/session-worker",
        "sink.yaml:ConfigMap/inter1-sink",
        "sink.yaml:Deployment/sink",
        "sink.yaml:PodDisruptionBudget/sink",
        "sink.yaml:ScaledObject/sink",
    ]
    assert not [o for o in k8s_objects() if o.kind == "Secret"], "real secrets stay out of git"


@pytest.mark.parametrize("obj", OBJECTS, ids=str)
def test_object_matches_its_schema(obj: K8sObject) -> None:
    validate_object(obj.body)


@pytest.mark.parametrize(
    ("name", "kind", "path", "old", "wrong"),
    [
        (
            "session-worker",
            "Deployment",
            ("spec", "template", "spec", "containers", 0),
            "livenessProbe",
            "livenesProbe",
        ),
        ("sink", "PodDisruptionBudget", ("spec",), "maxUnavailable", "maxUnavailible"),
        ("session-worker", "ScaledObject", ("spec",), "minReplicaCount", "minReplicas"),
        ("sink", "ScaledObject", ("spec",), "cooldownPeriod", "cooldownPeriodSeconds"),
    ],
)
def test_a_misspelt_field_fails_validation(
    name: str, kind: str, path: tuple[str | int, ...], old: str, wrong: str
) -> None:
    body = copy.deepcopy(find(OBJECTS, kind, name))
    target: Any = body
    for step in path:
        target = target[step]
    target[wrong] = target.pop(old)
    with pytest.raises(jsonschema.ValidationError, match=wrong):
        validate_object(body)


@pytest.mark.parametrize("name", WORKERS)
def test_worker_pods_are_non_root_read_only_and_bounded(name: str) -> None:
    spec = _deployment(name)["spec"]["template"]["spec"]
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": PIPELINE_UID,
        "runAsGroup": PIPELINE_UID,
        "fsGroup": PIPELINE_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["automountServiceAccountToken"] is False
    container = _container(name)
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert set(container["resources"]) == {"requests", "limits"}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/tmp"] == "tmp"
    assert container["image"] == f"inter1-pipeline:{project_version()}"
    assert dockerfile().envs["HOME"] == "/var/lib/inter1"


def test_image_user_is_the_pods_user() -> None:
    users = [s["value"] for s in dockerfile().structure if s["instruction"] == "USER"]
    assert users == [f"{PIPELINE_UID}:{PIPELINE_UID}"]
    assert kustomization()["images"] == [{"name": "inter1-pipeline", "newTag": project_version()}]


@pytest.mark.parametrize("name", WORKERS)
def test_environment_is_what_the_command_reads(name: str) -> None:
    container = _container(name)
    command = command_of(container["args"])
    env = container_env(OBJECTS, container)
    unknown = sorted(set(env) - known_names(command))
    assert unknown == [], f"{name} sets variables `{' '.join(command)}` does not read"
    missing = sorted(REQUIRED[command] - set(env))
    assert missing == [], f"{name} must set {missing}"
    read_settings(command, env)  # every value passes the settings' own validation


def test_secrets_come_from_secret_key_refs_that_the_example_defines() -> None:
    refs = {
        (
            item["name"],
            item["valueFrom"]["secretKeyRef"]["name"],
            item["valueFrom"]["secretKeyRef"]["key"],
        )
        for name in WORKERS
        for item in _container(name).get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    assert refs == {
        ("INTER1_API_KEY", "inter1-api", "INTER1_API_KEY"),
        ("CLICKHOUSE_URL", "inter1-clickhouse", "CLICKHOUSE_URL"),
    }
    examples = example_secrets()
    assert {(secret, key) for _, secret, key in refs} == {
        (secret, key) for secret, data in examples.items() for key in data
    }
    assert all("REPLACE_ME" in value for data in examples.values() for value in data.values())
    config_values = {key for o in k8s_objects() if o.kind == "ConfigMap" for key in o.body["data"]}
    assert not config_values & {"INTER1_API_KEY", "CLICKHOUSE_URL", "KAFKA_SASL_PASSWORD"}


def test_session_worker_probes_hit_its_http_server() -> None:
    worker: SessionWorkerSettings = _settings("session-worker")[SessionWorkerSettings]
    container = _container("session-worker")
    assert container["ports"] == [
        {"name": "http", "containerPort": worker.http_port, "protocol": "TCP"}
    ]
    assert worker.http_port == 9464
    assert worker.http_host == "0.0.0.0"  # the kubelet probes the pod IP
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    annotations = _deployment("session-worker")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(worker.http_port),
        "prometheus.io/path": "/metrics",
    }


def test_sink_probes_hit_its_http_server() -> None:
    sink: SinkSettings = _settings("sink")[SinkSettings]
    container = _container("sink")
    assert sink.query_host == "127.0.0.1"  # the query endpoint stays local
    assert container["ports"] == [
        {"name": "http", "containerPort": sink.http_port, "protocol": "TCP"}
    ]
    assert (sink.http_host, sink.http_port) == ("0.0.0.0", 9465)  # the kubelet probes the pod IP
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    annotations = _deployment("sink")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(sink.http_port),
        "prometheus.io/path": "/metrics",
    }


def test_cues_probes_hit_faust_web_server_on_the_pod_ip() -> None:
    cues: CuesSettings = _settings("cues")[CuesSettings]
    container = _container("cues")
    assert container["ports"] == [
        {"name": "web", "containerPort": cues.web_port, "protocol": "TCP"}
    ]
    assert cues.web_host == "10.1.2.3"  # status.podIP
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "web"}
    annotations = _deployment("cues")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(cues.web_port),
        "prometheus.io/path": "/metrics",
    }
    service = find(OBJECTS, "Service", "cues")
    assert service["spec"]["ports"] == [
        {"name": "web", "port": cues.web_port, "targetPort": "web", "protocol": "TCP"}
    ]
    pod_labels = _deployment("cues")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == pod_labels


def test_grace_periods_cover_the_sigterm_drain() -> None:
    worker: SessionWorkerSettings = _settings("session-worker")[SessionWorkerSettings]
    grace = {
        name: _deployment(name)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for name in WORKERS
    }
    assert grace == {"session-worker": 60, "sink": 30, "cues": 45}
    # sessions drain within shutdown_timeout_s, then publish, commit and leave the group
    assert grace["session-worker"] >= worker.shutdown_timeout_s + 15


@pytest.mark.parametrize("name", WORKERS)
def test_each_deployment_has_one_disruption_budget(name: str) -> None:
    labels = _deployment(name)["spec"]["template"]["metadata"]["labels"]
    budgets = [
        o.body
        for o in OBJECTS
        if o.kind == "PodDisruptionBudget"
        and o.body["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert [b["metadata"]["name"] for b in budgets] == [name]
    assert budgets[0]["spec"]["maxUnavailable"] == 1
    assert _deployment(name)["spec"]["selector"]["matchLabels"] == labels


def _partitions(*keys: str) -> int:
    topics = topics_toml()
    return max(int(topics[key]["partitions"]) for key in keys)


def test_scaled_objects_scale_on_the_groups_and_topics_the_workers_use() -> None:
    worker = _settings("session-worker")
    sink = _settings("sink")
    scaled = {o.name: o.body for o in OBJECTS if o.kind == "ScaledObject"}
    assert sorted(scaled) == ["session-worker", "sink"]
    chunks = topics_toml()["chunks"]["name"]
    expected = {
        "session-worker": (worker, worker[SessionWorkerSettings].group_id, chunks),
        "sink": (sink, sink[SinkSettings].group_id, None),
    }
    for name, (settings, group, topic) in expected.items():
        spec = scaled[name]["spec"]
        assert spec["scaleTargetRef"] == {"name": name}
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert meta["bootstrapServers"] == settings[KafkaSettings].bootstrap_servers
        assert meta["consumerGroup"] == group
        assert meta.get("topic") == topic
        assert settings[KafkaSettings].topic_prefix == ""
        assert spec["minReplicaCount"] >= 1  # live sessions: never scale to zero
    assert scaled["session-worker"]["spec"]["maxReplicaCount"] == _partitions("chunks")
    # sink_topics(): events, usage, cues, chunks
    assert scaled["sink"]["spec"]["maxReplicaCount"] == _partitions(
        "events", "usage", "cues", "chunks"
    )
