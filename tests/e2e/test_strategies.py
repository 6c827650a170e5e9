"""End to end: Shadow and Canary on the real stack, counted from what users were answered.

Users reach the ModelDeployment only the way its Service routes them (`UserTraffic`: each
inference to a uniformly random Ready pod the Service selects, labels later by id). A shadow
candidate gets mirrored copies from the stable servers (the stand-in kubelet plays kube-proxy for
`MIRROR_URL`); a canary gets its share of the pods. The log of answers says who answered users.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from harness.models import TrainedModel
from harness.traffic import UserTraffic
from harness.waiting import wait_for

from .conftest import Stack, condition, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus]


def spec(
    stack: Stack,
    version: str,
    model: TrainedModel,
    *,
    strategy: dict[str, Any] | None = None,
    replicas: int = 1,
    **analysis: Any,
) -> dict[str, Any]:
    manifest = model_deployment(
        "iris", stack.namespace, version, model, prometheus_url=stack.prometheus.url, **analysis
    )
    manifest["spec"]["replicas"] = replicas
    if strategy is not None:
        manifest["spec"]["strategy"] = strategy
    return manifest


def users(stack: Stack) -> UserTraffic:
    """Only users' traffic from here on: the stack's own label poster would reach every pod."""
    assert stack.traffic is not None
    stack.traffic.stop()
    return UserTraffic(stack.kubelet, "iris").start()


def requests_counted(server_url: str, endpoint: str) -> float:
    """The sum of a server's own `vigil_model_requests_total` for one endpoint."""
    text = httpx.get(f"{server_url}/metrics", timeout=5).text
    pattern = re.compile(r"^vigil_model_requests_total\{([^}]*)\} (\S+)$", re.MULTILINE)
    return sum(float(value) for labels, value in pattern.findall(text) if f'endpoint="{endpoint}"' in labels)


def gone(stack: Stack, kind: str, name: str) -> bool:
    result = stack.cluster.kubectl(
        "get", f"{kind}/{name}", "-n", stack.namespace, "--ignore-not-found", "-o", "name"
    )
    return result.stdout.strip() == ""


def main_env(stack: Stack) -> dict[str, str]:
    env = stack.deployment("iris")["spec"]["template"]["spec"]["containers"][0]["env"]
    return {item["name"]: item.get("value", "") for item in env}


def test_a_shadow_worse_than_the_stable_release_is_rejected_having_answered_no_user(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    """v2 (accuracy ~0.79) clears the threshold (0.7) on its own, but the paired comparison on the
    same labelled requests finds it worse than v1 (~0.97): rejected, and not one user met it."""
    traffic = users(stack)
    stack.start_operator()
    stack.apply(spec(stack, "v1", models["good"], threshold=0.7))
    stack.wait_status("iris", promoted("v1"), what="v1 promoted")
    shadow = {"type": "Shadow", "shadow": {"margin": 0.05}}
    stack.apply(spec(stack, "v2", models["bad"], strategy=shadow, threshold=0.7))

    status = stack.wait_status(
        "iris", lambda s: (s.get("strategy") or {}).get("stage") == "Shadow", what="the shadow stage"
    )
    assert status["strategy"]["candidatePercent"] == 0
    wait_for(lambda: main_env(stack).get("MIRROR_URL", "").startswith("http://"), timeout=30, what="mirror")
    mirror_url = main_env(stack)["MIRROR_URL"]
    service = stack.api.get(f"/api/v1/namespaces/{stack.namespace}/services/iris-candidate")
    assert mirror_url == f"http://{service['spec']['clusterIP']}:80"

    def rejected(status: dict[str, Any]) -> bool:
        return status.get("phase") == "RolledBack" and status.get("rollbackReason") == "ShadowRejected"

    status = stack.wait_status("iris", rejected, timeout=180, what="shadow rejected")
    reasons = stack.wait_reason("iris", "ShadowRejected")
    candidate = stack.kubelet.server_for("v2")
    assert candidate is not None
    served = traffic.answered()
    traffic.stop()

    # Who answered users: the traffic log and the candidate's own request counters agree.
    print(f"shadow: user inferences answered {dict(served)}; failures {len(traffic.failures)}")
    assert served["v2"] == 0
    assert served["v1"] > 100
    assert requests_counted(candidate.url, "infer") == 0
    assert requests_counted(candidate.url, "mirror") > 0  # it predicted the mirrored copies
    # Rejected on the paired comparison, not the threshold, and not a rollback of user traffic.
    assert status["failedVersion"] == "v2"
    assert condition(status, "RolledBack")["reason"] == "ShadowRejected"
    assert "worse than the stable release" in status["lastCheck"]["reason"]
    assert "vigil_model_paired_feedback_total" in status["lastCheck"]["query"]
    assert "rejected as a shadow" in status["message"]
    assert "RolledBack" not in reasons
    assert "ShadowStarted" in reasons
    assert status.get("strategy") is None
    # The candidate's Deployment and Service go, and the stable servers stop mirroring.
    wait_for(
        lambda: gone(stack, "deployment", "iris-candidate"), timeout=60, what="candidate Deployment gone"
    )
    wait_for(lambda: gone(stack, "service", "iris-candidate"), timeout=60, what="candidate Service gone")
    wait_for(lambda: "MIRROR_URL" not in main_env(stack), timeout=60, what="MIRROR_URL dropped")
    assert stack.deployment_version("iris") == "v1"


def test_a_better_shadow_goes_through_a_canary_step_and_is_promoted(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    traffic = users(stack)
    stack.start_operator()
    stack.apply(spec(stack, "v1", models["bad"], replicas=2, threshold=0.7))
    stack.wait_status("iris", promoted("v1"), timeout=180, what="v1 promoted")
    staged = {
        "type": "Shadow",
        "shadow": {"margin": 0.05, "next": "Canary"},
        "canary": {"steps": [{"percent": 50}]},
    }
    stack.apply(spec(stack, "v2", models["good"], strategy=staged, replicas=2, threshold=0.7))

    stack.wait_status("iris", lambda s: (s.get("strategy") or {}).get("stage") == "Shadow", what="shadow")
    canary = stack.wait_status(
        "iris", lambda s: (s.get("strategy") or {}).get("stage") == "Canary", timeout=180, what="canary step"
    )
    assert (canary["strategy"]["step"], canary["strategy"]["steps"]) == (2, 3)
    assert canary["strategy"]["candidatePercent"] == 50
    wait_for(lambda: traffic.answered()["v2"] > 0, timeout=60, what="v2 answering users as a canary")
    status = stack.wait_status("iris", promoted("v2"), timeout=180, what="v2 promoted")
    wait_for(
        lambda: gone(stack, "deployment", "iris-candidate"), timeout=60, what="candidate Deployment gone"
    )
    traffic.stop()

    status = stack.wait_status("iris", lambda s: s.get("strategy") is None, what="no candidate track")
    assert stack.deployment_version("iris") == "v2"
    assert "MIRROR_URL" not in main_env(stack)
    assert status["stableVersion"] == "v2"
    reasons = stack.wait_reason("iris", "CanaryStepPassed")
    for reason in ("ShadowStarted", "ShadowPassed", "CanaryStepStarted", "CanaryStepPassed", "Promoted"):
        assert reason in reasons
    assert "RolledBack" not in reasons
    print(f"shadow -> canary -> full: user inferences answered {dict(traffic.answered())}")


def test_a_failing_canary_is_rolled_back_having_answered_only_its_share(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    traffic = users(stack)
    stack.start_operator()
    stack.apply(spec(stack, "v1", models["good"], replicas=4))
    stack.wait_status("iris", promoted("v1"), what="v1 promoted")
    canary = {"type": "Canary", "canary": {"steps": [{"percent": 25}]}}
    stack.apply(spec(stack, "v2", models["bad"], strategy=canary, replicas=4))

    # 1 of 5 replicas until the candidate serves (the stable ones are kept), then 1 of 4.
    status = stack.wait_status(
        "iris", lambda s: (s.get("strategy") or {}).get("candidatePercent") == 25, what="the canary at 25%"
    )
    assert status["strategy"]["stage"] == "Canary"
    status = stack.wait_status(
        "iris", lambda s: s.get("phase") == "RolledBack", timeout=180, what="rolled back"
    )
    reasons = stack.wait_reason("iris", "RolledBack")
    wait_for(
        lambda: gone(stack, "deployment", "iris-candidate"), timeout=60, what="candidate Deployment gone"
    )
    wait_for(lambda: stack.deployment("iris")["spec"]["replicas"] == 4, timeout=30, what="v1 on 4 replicas")
    traffic.stop()

    # The canary's share: of the inferences answered from its first answer to its last, v2's.
    log = traffic.answers
    first, last = log.index("v2"), len(log) - 1 - log[::-1].index("v2")
    window = traffic.answered(first, last + 1)
    share = window["v2"] / sum(window.values())
    print(f"canary: {window['v2']} of {sum(window.values())} inferences answered by v2 ({share:.1%})")
    assert sum(window.values()) >= 100
    assert 0.12 <= share <= 0.38  # 1 of 4 Ready pods (1 of 5 while the stable one scales down)
    assert condition(status, "RolledBack")["reason"] == "AnalysisFailed"
    assert status["failedVersion"] == "v2"
    assert "ShadowRejected" not in reasons
    assert "CanaryStepStarted" in reasons
    assert stack.deployment_version("iris") == "v1"


def test_a_canary_beside_an_hpa_runs_one_replica_and_never_writes_the_stable_ones(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    """`spec.replicas` unset: whoever scales the stable Deployment (an HPA; here `kubectl scale`)
    keeps its replicas; the canary runs one replica at every step, and is promoted."""
    stack.start_operator()
    manifest = spec(stack, "v1", models["good"])
    del manifest["spec"]["replicas"]
    stack.apply(manifest)
    stack.wait_status("iris", promoted("v1"), what="v1 promoted")
    stack.cluster.kubectl("scale", "deployment/iris", "--replicas=3", "-n", stack.namespace)

    canary = {"type": "Canary", "canary": {"steps": [{"percent": 50}]}}
    manifest = spec(stack, "v2", models["good-too"], strategy=canary)
    del manifest["spec"]["replicas"]
    stack.apply(manifest)
    status = stack.wait_status(
        "iris", lambda s: (s.get("strategy") or {}).get("stage") == "Canary", what="the canary stage"
    )
    assert status["strategy"]["candidateReplicas"] == 1
    assert "candidatePercent" not in status["strategy"]  # the HPA's replicas: no share to claim
    wait_for(
        lambda: stack.deployment("iris-candidate")["spec"]["replicas"] == 1, timeout=30, what="one canary pod"
    )
    assert stack.deployment("iris")["spec"]["replicas"] == 3
    stack.wait_status("iris", promoted("v2"), timeout=180, what="v2 promoted")
    wait_for(lambda: gone(stack, "deployment", "iris-candidate"), timeout=60, what="no candidate Deployment")
    assert stack.deployment("iris")["spec"]["replicas"] == 3  # still the scaler's
    assert stack.deployment_version("iris") == "v2"
