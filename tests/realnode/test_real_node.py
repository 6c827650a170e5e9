"""Vigil on a real node: installed with helm, its pods in containers, a rollout and a rollback
under steady traffic through the Service without one failed request, monitored the way
kube-prometheus-stack users monitor it, and a node that leaves nothing behind. What each test
asserts was recorded by the scenario (tests/realnode/scenario.py)."""

from __future__ import annotations

import pytest
import yaml

from harness import cluster_dns, prometheus_operator
from harness.helm import kube_prometheus_stack_values
from harness.node import NODE_NAME
from harness.realstack import SERVER_IMAGE

from .scenario import RealNodeRun

# The first of these waits for the whole scenario (node, chart, rollouts, monitoring, a claim,
# the demo), which runs beside the other tiers from the session's start: longer than the default.
pytestmark = [pytest.mark.realnode, pytest.mark.timeout(1800)]


def test_an_interrupted_node_start_leaves_nothing_on_the_machine(real_node: RealNodeRun) -> None:
    interrupted = real_node.fact("interrupted start")
    assert interrupted["exit code"] == 130, interrupted["output"]
    assert "tearing down" in interrupted["output"]
    assert interrupted["leftovers"] == []


def test_the_only_node_is_real_and_runs_containerd(real_node: RealNodeRun) -> None:
    nodes = real_node.fact("nodes")
    assert [n["name"] for n in nodes] == [NODE_NAME]
    assert nodes[0]["runtime"].startswith("containerd://2."), nodes
    assert "containerd://" in real_node.fact("kubectl get nodes -o wide")


def test_the_chart_runs_the_operator_as_a_pod_in_a_restricted_namespace(real_node: RealNodeRun) -> None:
    assert real_node.fact("operator namespace labels")["pod-security.kubernetes.io/enforce"] == "restricted"
    (operator,) = real_node.fact("operator pods")
    assert operator["serviceAccount"] == "vigil-operator"  # the chart's, not an admin's
    assert operator["node"] == NODE_NAME
    assert operator["ready"]
    assert operator["containerID"].startswith("containerd://")


def test_model_servers_run_from_the_image_in_containers(real_node: RealNodeRun) -> None:
    pods = real_node.fact("model-server pods")
    assert len(pods) == 2
    for pod in pods:
        assert pod["ready"]
        assert pod["node"] == NODE_NAME
        assert pod["containerID"].startswith("containerd://")
        assert pod["image"] == SERVER_IMAGE


def test_rollout_and_automatic_rollback_under_traffic_fail_no_request(real_node: RealNodeRun) -> None:
    status = real_node.fact("rollback status")
    assert status == {"phase": "RolledBack", "stableVersion": "v2", "failedVersion": "v3"}
    traffic = real_node.fact("traffic")
    marks = traffic["answered per version (infer, cumulative)"]
    assert set(marks["v2 back on every pod"]) == {"v1", "v2", "v3"}  # each version served users
    assert marks["v2 back on every pod"]["v2"] > marks["v2 promoted"]["v2"]  # and v2 again after
    assert traffic["requests"] > 500
    assert traffic["failed"] == 0, traffic["failures (first 20)"]


def test_a_model_on_a_persistent_volume_claim_is_rolled_out_and_back(real_node: RealNodeRun) -> None:
    volumes = real_node.fact("pvc pod volumes")
    assert volumes == {
        "volumes": [
            {"name": "model-pvc", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}
        ],
        "mounts": [{"name": "model-pvc", "mountPath": "/var/lib/vigil/pvc/models", "readOnly": True}],
    }
    assert "pvc://models/iris/v1/model.joblib" in real_node.fact("pvc model-server log")
    assert real_node.fact("pvc rollback status") == {
        "phase": "RolledBack",
        "stableVersion": "v1",
        "failedVersion": "v2",
        "currentVersion": "v1",
    }
    assert real_node.fact("pvc traffic")["requests"] > 0


def test_kubectl_logs_and_exec_reach_the_containers(real_node: RealNodeRun) -> None:
    assert "model_deployment_changed" in real_node.fact("operator log")
    assert "Uvicorn running" in real_node.fact("model-server log")
    assert real_node.fact("exec uid") == "65532"  # the image's non-root user


def test_pods_resolve_service_names_through_the_nodes_cluster_dns(real_node: RealNodeRun) -> None:
    (coredns,) = real_node.fact("monitoring pods")["coredns"]
    assert coredns["ready"]
    assert coredns["node"] == NODE_NAME
    assert coredns["image"] == cluster_dns.IMAGE
    resolv = real_node.fact("pod resolv.conf")
    assert f"nameserver {cluster_dns.CLUSTER_DNS_IP}" in resolv
    assert "search ml.svc.cluster.local svc.cluster.local cluster.local" in resolv


def test_prometheus_operator_runs_prometheus_as_a_statefulset_under_restricted_pod_security(
    real_node: RealNodeRun,
) -> None:
    pods = real_node.fact("monitoring pods")
    (operator,) = pods["prometheus-operator"]
    (prometheus,) = pods["prometheus"]
    assert operator["ready"]
    assert operator["image"] == prometheus_operator.OPERATOR_IMAGE
    assert prometheus["ready"]
    assert prometheus["images"] == {
        "prometheus": prometheus_operator.PROMETHEUS_IMAGE,
        "config-reloader": prometheus_operator.RELOADER_IMAGE,
    }
    assert prometheus["name"] == "prometheus-kps-kube-prometheus-prometheus-0"  # the StatefulSet's
    assert {operator["node"], prometheus["node"]} == {NODE_NAME}
    assert real_node.fact("prometheus conditions") == {"Available": "True", "Reconciled": "True"}
    # Its ClusterRole is enough: no request was forbidden, nothing failed.
    assert real_node.fact("prometheus-operator log errors") == []
    for labels in real_node.fact("monitoring namespace labels").values():
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_chart_takes_the_documented_values_verbatim(real_node: RealNodeRun) -> None:
    """The operator asks the Prometheus the docs name, by its Service's DNS name; the rollout and the
    rollback above were judged on what that Prometheus scraped through the chart's PodMonitor."""
    url = yaml.safe_load(kube_prometheus_stack_values())["prometheusUrl"]
    assert f"--prometheus-url={url}" in real_node.fact("operator args")
    rollback = real_node.fact("rollback check")
    assert (rollback["version"], rollback["outcome"]) == ("v3", "failed"), rollback
    assert "accuracy" in rollback["reason"], rollback


def test_each_labelled_prediction_is_counted_once_by_the_checks(real_node: RealNodeRun) -> None:
    counts = real_node.fact("count comparison")
    assert counts["labels sent"] == 100
    assert counts["servers counted"] == counts["labels sent"], counts
    assert counts["check samples"] == counts["servers counted"], counts  # no double count
    assert 'namespace="ml"' in counts["after"]["check query"]
    # One series per pod, from the PodMonitor's job alone, with the namespace label.
    series = real_node.fact("v2 feedback series")
    expected = [
        {"job": "vigil-system/vigil-model-servers", "namespace": "ml", "pod": pod}
        for pod in real_node.fact("v2 pods")
    ]
    assert series == expected


def test_prometheus_scrapes_the_servers_and_the_operator_through_the_charts_monitors(
    real_node: RealNodeRun,
) -> None:
    found = real_node.fact("prometheus targets")
    pools = {t["scrapePool"] for t in found}
    assert pools == {
        "podMonitor/vigil-system/vigil-model-servers/0",
        "serviceMonitor/vigil-system/vigil-operator/0",
    }, found
    assert all(t["health"] == "up" for t in found), found
    (operator,) = [t for t in found if t["scrapePool"].startswith("serviceMonitor/")]
    assert operator["service"] == "vigil-operator-metrics"


def test_teardown_leaves_nothing_on_the_machine(real_node: RealNodeRun) -> None:
    assert real_node.fact("leftovers after teardown") == []


def test_make_demo_tells_the_story_on_the_real_node(real_node: RealNodeRun) -> None:
    demo = real_node.fact("demo")
    assert demo["exit code"] == 0, demo["output"]
    summary = demo["summary"]
    assert summary["path"] == "real"
    assert summary["rolled_back"] is True
    assert summary["serving"] == "v1"
    assert summary["requests"]["sent"] > 100
    assert summary["requests"]["failed"] == 0, demo["output"]
    assert "Path: a real node" in demo["output"]
    assert "=== Summary ===" in demo["output"]
    assert not demo["state file left"]
    assert demo["leftovers"] == []
