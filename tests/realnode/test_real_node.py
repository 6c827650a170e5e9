"""Vigil on a real node: installed with helm, its pods in containers, a rollout and a rollback
under steady traffic through the Service without one failed request, and a node that leaves
nothing behind. What each test asserts was recorded by the scenario (tests/realnode/scenario.py)."""

from __future__ import annotations

import pytest

from harness.node import NODE_NAME
from harness.realstack import SERVER_IMAGE

from .scenario import RealNodeRun

pytestmark = [pytest.mark.realnode]


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


def test_kubectl_logs_and_exec_reach_the_containers(real_node: RealNodeRun) -> None:
    assert "model_deployment_changed" in real_node.fact("operator log")
    assert "Uvicorn running" in real_node.fact("model-server log")
    assert real_node.fact("exec uid") == "65532"  # the image's non-root user


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
