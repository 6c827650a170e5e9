"""End to end: spec.podTemplate on the local cluster (kwok nodes, the real kube-scheduler).

A ModelDeployment whose podTemplate selects a tainted node pool and tolerates its taint is
scheduled there and promoted, and so is a shadow candidate's pod; without the toleration its pod
stays Pending. Env from a Secret (envFrom) reaches the pod spec. A podTemplate change rolls the
pods without a new release, and a podTemplate that renders the same pod rolls nothing. A
podTemplate the CRD lets through but the API server refuses (an affinity operator that does not
exist) is reported once and not sent again, round after round, until the spec changes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from harness.models import TrainedModel
from harness.ports import free_port
from harness.waiting import wait_for

from .conftest import Stack, condition, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus]

TAINT_KEY = "nvidia.com/gpu"
TOLERATION = {"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture
def tainted_node(stack: Stack) -> Iterator[tuple[str, dict[str, str]]]:
    """A kwok node of a "GPU pool": labelled for a nodeSelector and tainted NoSchedule, so only
    pods that tolerate the taint land there. Its label is unique, so no other test's pods match."""
    name = f"gpu-{uuid.uuid4().hex[:8]}"
    labels = {"pool": name}
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok", **labels},
        },
        "spec": {"taints": [{"key": TAINT_KEY, "value": "present", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    }
    stack.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(node))
    wait_for(lambda: _ready(stack.api.get(f"/api/v1/nodes/{name}")), timeout=60, what=f"node {name} Ready")
    try:
        yield name, labels
    finally:
        stack.cluster.kubectl("delete", "node", name, "--wait=false", check=False)


def _ready(node: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions") or []
    )


def with_pod_template(manifest: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    manifest["spec"]["podTemplate"] = template
    return manifest


def pods_of(stack: Stack, name: str) -> list[dict[str, Any]]:
    return stack.api.get(
        f"/api/v1/namespaces/{stack.namespace}/pods", labelSelector=f"vigil.dev/model={name}"
    )["items"]


def gpu_template(labels: dict[str, str], *, tolerate: bool) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"team": "fraud"}},
        "spec": {
            "nodeSelector": labels,
            **({"tolerations": [TOLERATION]} if tolerate else {}),
            "envFrom": [{"secretRef": {"name": "s3-reader"}}],
            "env": [{"name": "AWS_REGION", "value": "eu-west-1"}],
        },
    }


def test_a_pod_template_schedules_the_pods_onto_a_tainted_pool_it_tolerates(
    stack: Stack, models: dict[str, TrainedModel], tainted_node: tuple[str, dict[str, str]]
) -> None:
    node, labels = tainted_node
    stack.cluster.kubectl(
        "-n", stack.namespace, "create", "secret", "generic", "s3-reader",
        "--from-literal=AWS_ACCESS_KEY_ID=iris-reader", "--from-literal=AWS_SECRET_ACCESS_KEY=not-a-real-key",
    )  # fmt: skip
    stack.start_operator()
    url = stack.prometheus.url
    stack.apply(
        with_pod_template(
            model_deployment("iris", stack.namespace, "v1", models["good"], prometheus_url=url),
            gpu_template(labels, tolerate=True),
        )
    )
    stack.wait_status("iris", promoted("v1"), timeout=180, what="v1 promoted on the tainted pool")
    [pod] = [p for p in pods_of(stack, "iris") if not p["metadata"].get("deletionTimestamp")]
    assert pod["spec"]["nodeName"] == node
    assert pod["spec"]["tolerations"][0] == TOLERATION
    [server] = pod["spec"]["containers"]
    assert server["envFrom"] == [{"secretRef": {"name": "s3-reader"}}]
    env = {item["name"]: item.get("value") for item in server["env"]}
    assert env["AWS_REGION"] == "eu-west-1"
    assert env["MODEL_VERSION"] == "v1"
    assert pod["metadata"]["labels"]["team"] == "fraud"

    # A shadow candidate gets the same template: its own Deployment's pods land on the pool too.
    shadow = model_deployment("iris", stack.namespace, "v2", models["good-too"], prometheus_url=url)
    shadow["spec"]["strategy"] = {"type": "Shadow"}
    stack.apply(with_pod_template(shadow, gpu_template(labels, tolerate=True)))
    candidate = wait_for(
        lambda: next(
            (
                p
                for p in stack.api.get(
                    f"/api/v1/namespaces/{stack.namespace}/pods", labelSelector="vigil.dev/candidate-of=iris"
                )["items"]
                if p["spec"].get("nodeName")
            ),
            None,
        ),
        timeout=60,
        what="the shadow candidate's pod scheduled",
    )
    assert candidate["spec"]["nodeName"] == node
    assert candidate["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "s3-reader"}}]
    assert "vigil.dev/model" not in candidate["metadata"]["labels"], "a shadow answers no user"

    # The same pool without the toleration: the scheduler finds no node, and the pod stays Pending.
    stack.apply(
        with_pod_template(
            model_deployment("untolerated", stack.namespace, "v1", models["good"], prometheus_url=url),
            gpu_template(labels, tolerate=False),
        )
    )

    def unschedulable() -> dict[str, Any] | None:
        for candidate in pods_of(stack, "untolerated"):
            scheduled = next(
                (c for c in candidate["status"].get("conditions") or [] if c["type"] == "PodScheduled"), {}
            )
            if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
                return candidate
        return None

    pending = wait_for(unschedulable, timeout=60, what="the untolerated pod Unschedulable")
    assert pending["status"]["phase"] == "Pending"
    assert "nodeName" not in pending["spec"]
    message = next(c for c in pending["status"]["conditions"] if c["type"] == "PodScheduled")["message"]
    assert "untolerated taint" in message, message
    assert stack.status("untolerated").get("phase") == "Progressing"


def test_a_pod_template_change_rolls_the_pods_but_is_not_a_new_release(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    stack.start_operator()
    manifest = model_deployment(
        "iris", stack.namespace, "v1", models["good"], prometheus_url=stack.prometheus.url
    )
    stack.apply(with_pod_template(manifest, {"metadata": {"labels": {"tier": "bronze"}}}))
    before = stack.wait_status("iris", promoted("v1"), what="v1 promoted")
    first = stack.deployment("iris")
    assert first["spec"]["template"]["metadata"]["labels"]["tier"] == "bronze"

    # What renders the same pod rolls nothing: other map order, empty lists and maps.
    same = {
        "spec": {"env": [], "tolerations": [], "nodeSelector": {}},
        "metadata": {"labels": {"tier": "bronze"}},
    }
    stack.apply(with_pod_template(manifest, same))
    generation = stack.mdep("iris")["metadata"]["generation"]
    stack.wait_status(
        "iris", lambda s: s.get("observedGeneration") == generation, what="the equivalent spec observed"
    )
    assert stack.deployment("iris")["metadata"]["generation"] == first["metadata"]["generation"]

    # Another label and more memory: the pods roll, the release stays v1, promoted, unjudged.
    changed = {
        "metadata": {"labels": {"tier": "gold"}},
        "spec": {"resources": {"requests": {"memory": "300Mi"}, "limits": {"memory": "600Mi"}}},
    }
    stack.apply(with_pod_template(manifest, changed))
    wait_for(
        lambda: any(
            p["metadata"]["labels"].get("tier") == "gold"
            and condition(p["status"], "Ready").get("status") == "True"
            for p in pods_of(stack, "iris")
        ),
        timeout=90,
        what="a Ready pod of the new template",
    )
    rolled = stack.deployment("iris")
    assert rolled["metadata"]["generation"] > first["metadata"]["generation"]
    assert rolled["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"memory": "600Mi"}
    assert (
        rolled["spec"]["template"]["metadata"]["annotations"]["vigil.dev/release"]
        == first["spec"]["template"]["metadata"]["annotations"]["vigil.dev/release"]
    )
    after = stack.status("iris")
    assert (after["phase"], after["stableVersion"], after["currentVersion"]) == ("Promoted", "v1", "v1")
    assert after.get("history") == before.get("history")
    assert after["servingSince"] == before["servingSince"], "no new rollout, no new analysis"
    assert stack.reasons("iris").count("RolloutStarted") == 1


def refused_applies(stack: Stack) -> float:
    """Server-side applies of Deployments the API server refused as invalid, from its own metrics."""
    text = stack.api.client.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("apiserver_request_total{")
        and 'resource="deployments"' in line
        and 'verb="APPLY"' in line
        and 'code="422"' in line
    )


def reconcile_rounds(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vigil_operator_reconcile_duration_seconds_count")
    )


def test_a_pod_template_the_api_server_refuses_is_reported_once_and_not_resent(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    metrics_port = free_port()
    stack.start_operator(metrics_port=metrics_port)
    # The CRD passes affinity on as it is (its schema would be enormous); the API server knows
    # no operator "Near".
    bad = {
        "spec": {
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "Near"}]}]
                    }
                }
            }
        }
    }
    manifest = model_deployment(
        "iris", stack.namespace, "v1", models["good"], prometheus_url=stack.prometheus.url
    )
    stack.apply(with_pod_template(manifest, bad))
    status = stack.wait_status(
        "iris", lambda s: condition(s, "Degraded").get("reason") == "ApplyFailed", what="Degraded/ApplyFailed"
    )
    assert "Near" in status["applyError"], status["applyError"]
    assert "affinity" in condition(status, "Degraded")["message"]
    assert len(status["refusedSpecHashes"]) == 1
    assert status["phase"] == "Progressing"

    # Round after round (about 10 s apart while the Deployment is refused), it is not sent again:
    # three rounds, well within the 60 s after which a refused Deployment is tried once more.
    refused, rounds = refused_applies(stack), reconcile_rounds(metrics_port)
    wait_for(lambda: reconcile_rounds(metrics_port) >= rounds + 3, timeout=50, what="3 more rounds")
    assert refused_applies(stack) == refused
    assert stack.reasons("iris").count("ApplyFailed") == 1

    # A fixed spec is sent at once, and serves.
    good = {"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}}}
    stack.apply(with_pod_template(manifest, good))
    status = stack.wait_status(
        "iris", promoted("v1"), timeout=180, what="v1 promoted once the affinity is fixed"
    )
    assert condition(status, "Degraded")["status"] == "False"
    assert "applyError" not in status
    assert "refusedSpecHashes" not in status
