"""The values docs/operations.md gives kube-prometheus-stack users, rendered by the real helm.

The block is read from the docs themselves, so the docs cannot drift from what the chart does:
every prometheus-operator object carries `release: kps` (what kube-prometheus-stack's default
selectors match), the operator queries kube-prometheus-stack's Prometheus Service, and the
operator's ServiceMonitor scrapes the Service in front of its metrics port.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from test_chart import CHART, HELM, by_kind, container, helm, one, render

from harness.helm import kube_prometheus_stack_values
from vigil_operator.main import parse_args

MONITORS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")

pytestmark = pytest.mark.skipif(not HELM.exists(), reason="bin/helm missing: run `make cluster-tools`")


@pytest.fixture(scope="module")
def objects(helm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    values = tmp_path_factory.mktemp("values") / "values-kube-prometheus-stack.yaml"
    values.write_text(kube_prometheus_stack_values())
    rendered = helm(
        helm_env, "template", "vigil", str(CHART), "--namespace", "vigil-system", "-f", str(values)
    ).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def test_every_monitor_and_the_rule_carry_the_release_label(objects: list[dict[str, Any]]) -> None:
    found = [o for o in objects if o["kind"] in MONITORS]
    assert sorted((o["kind"], o["metadata"]["name"]) for o in found) == [
        ("PodMonitor", "vigil-model-servers"),
        ("PrometheusRule", "vigil"),
        ("ServiceMonitor", "vigil-operator"),
    ]
    assert all(o["metadata"]["labels"]["release"] == "kps" for o in found)


def test_the_operator_queries_kube_prometheus_stacks_prometheus(objects: list[dict[str, Any]]) -> None:
    args = parse_args(container(objects)["args"])
    assert args.prometheus_url == "http://kps-kube-prometheus-prometheus.monitoring:9090"


def test_the_dashboard_configmap_has_the_sidecar_label(objects: list[dict[str, Any]]) -> None:
    dashboard = one(objects, "ConfigMap", "vigil-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_the_operator_service_monitor_scrapes_the_metrics_port(objects: list[dict[str, Any]]) -> None:
    """How prometheus-operator resolves it: Services in the release namespace whose labels match
    the selector, their port named `metrics`, which targets the container port named `metrics`."""
    monitor = one(objects, "ServiceMonitor", "vigil-operator")
    service = one(objects, "Service", "vigil-operator-metrics")
    deployment = one(objects, "Deployment", "vigil-operator")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["vigil-system"]}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "30s")
    [port] = service["spec"]["ports"]
    assert (port["name"], port["targetPort"], port["port"]) == ("metrics", "metrics", 8000)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {"name": "metrics", "containerPort": 8000, "protocol": "TCP"} in container(objects)["ports"]
    assert parse_args(container(objects)["args"]).metrics_port == 8000


def test_each_monitors_own_labels_add_to_and_win_over_the_common_ones(helm_env: dict[str, str]) -> None:
    objects = render(
        helm_env,
        "monitoring.labels.release=kps",
        "monitoring.labels.team=ml",
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.team=platform",
        "modelServers.podMonitor.enabled=true",
    )
    labels = one(objects, "ServiceMonitor")["metadata"]["labels"]
    assert (labels["release"], labels["team"]) == ("kps", "platform")
    pod_monitor = one(objects, "PodMonitor", "vigil-model-servers")["metadata"]["labels"]
    assert (pod_monitor["release"], pod_monitor["team"]) == ("kps", "ml")


def test_without_monitoring_values_nothing_changes(helm_env: dict[str, str]) -> None:
    assert not [o for o in render(helm_env) if o["kind"] in (*MONITORS, "ConfigMap")]
    monitor = one(render(helm_env, "metrics.serviceMonitor.enabled=true"), "ServiceMonitor")
    assert "release" not in monitor["metadata"]["labels"]
    assert not by_kind(render(helm_env, "metrics.serviceMonitor.enabled=true"), "PrometheusRule")
