"""deploy/prometheus/alerts.yaml: rule structure, every expression parsed, every name real.

Expressions are parsed with promql-parser (a PromQL parser); each metric they select is one
a worker exports (workers/session/metrics.py, sinks/metrics.py, workers/cues/metrics.py) or
one of the named exporters' metrics, and each group or topic label value is the one the
pipeline uses.
"""

from __future__ import annotations

from typing import Any

import promql_parser
import pytest
from deploy_files import DEPLOY, load_documents, topics_toml
from prometheus_client.metrics import MetricWrapperBase

from runtime.settings import CuesSettings
from sinks import metrics as sink_metrics
from sinks.handler import SinkStats
from sinks.metrics import SinkCollector
from workers.cues import metrics as cues_metrics
from workers.session import metrics

ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
# Metrics from outside the pipeline: Prometheus itself and a Kafka exporter
# (danielqsj/kafka_exporter; the cues app's group lag).
EXTERNAL = {"up", "kafka_consumergroup_lag", "kafka_topic_partition_current_offset"}
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def _worker_series() -> set[str]:
    names = set()
    families = [
        family
        for module in (metrics, sink_metrics, cues_metrics)
        for value in vars(module).values()
        if isinstance(value, MetricWrapperBase)
        for family in value.describe()
    ]
    families += SinkCollector(SinkStats, lambda: False).collect()
    for family in families:
        names |= {family.name + suffix for suffix in SUFFIXES[family.type]}
    return names


def _rules() -> list[dict[str, Any]]:
    (document,) = load_documents(ALERTS)
    return [rule for group in document["groups"] for rule in group["rules"]]


def _selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def test_groups_and_rules_are_well_formed() -> None:
    (document,) = load_documents(ALERTS)
    assert [g["name"] for g in document["groups"]] == [
        "inter1-session-worker",
        "inter1-sink",
        "inter1-cues",
        "inter1-kafka",
    ]
    names = [rule["alert"] for rule in _rules()]
    assert len(names) == len(set(names)) == 13
    for rule in _rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]
        if "for" in rule:
            assert promql_parser.parse_duration(rule["for"]).total_seconds() >= 60


@pytest.mark.parametrize("rule", _rules(), ids=lambda rule: rule["alert"])
def test_expression_parses_and_selects_real_series(rule: dict[str, Any]) -> None:
    selectors = _selectors(rule["expr"])
    assert selectors, f"{rule['alert']} selects nothing"
    known = _worker_series() | EXTERNAL
    unknown = sorted({s.name for s in selectors} - known)
    assert unknown == [], f"{rule['alert']} uses metrics nobody exports: {unknown}"


def test_label_values_are_the_pipelines_groups_and_topics() -> None:
    values = {
        (matcher.name, matcher.value)
        for rule in _rules()
        for selector in _selectors(rule["expr"])
        if selector.matchers
        for matcher in selector.matchers.matchers
    }
    assert values == {
        ("job", "inter1-session-worker"),
        ("job", "inter1-sink"),
        ("consumergroup", CuesSettings().app_id),
        ("topic", topics_toml()["dead_letter"]["name"]),
    }


def test_a_broken_expression_is_rejected() -> None:
    with pytest.raises(ValueError, match="unclosed left parenthesis"):
        promql_parser.parse("sum(rate(inter1_worker_shed_seconds_total[5m]) > 0")
