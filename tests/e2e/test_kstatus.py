"""What kstatus itself computes for live ModelDeployments (Flux's `wait`, kpt and cli-utils use it).

bin/kstatus (tools/kstatus, built by `make cluster-tools`) runs `status.Compute` of
sigs.k8s.io/cli-utils/pkg/kstatus/status on the object as `kubectl get -o json` prints it. Every
read is checked against the phase in that same read, so there is no race between the two:
InProgress until the operator has observed the spec and while it rolls out or analyses, Current
once the spec's version is promoted, Failed when it was rolled back or is Degraded.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.cluster import REPO_ROOT
from harness.models import TrainedModel
from harness.waiting import wait_for

from .conftest import Stack, condition, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.story]
KSTATUS = REPO_ROOT / "bin" / "kstatus"
EXPECTED = {
    # Before the operator's first status write kstatus has nothing to go on: Current (why the
    # shipped Flux Kustomization adds healthCheckExprs; docs/gitops.md).
    "NoStatus": "Current",
    "NotObserved": "InProgress",
    "Progressing": "InProgress",
    "Analyzing": "InProgress",
    "Promoted": "Current",
    "RolledBack": "Failed",
    "Degraded": "Failed",  # the phase, or the condition alone (MetricsUnavailable)
}


@pytest.fixture(autouse=True)
def _kstatus_is_built() -> None:
    if not KSTATUS.exists():
        pytest.fail(f"{KSTATUS} is missing: run `make cluster-tools`")


def kstatus(manifest: dict[str, Any]) -> dict[str, str]:
    """kstatus's verdict on one object: {"status": ..., "message": ...}."""
    result = subprocess.run(
        [str(KSTATUS)], input=json.dumps(manifest), capture_output=True, text=True, timeout=30, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"bin/kstatus failed: {result.stderr}")
    return json.loads(result.stdout)


def state_of(manifest: dict[str, Any]) -> str:
    """What the operator says, in the words of EXPECTED."""
    status = manifest.get("status") or {}
    if not status:
        return "NoStatus"
    if status.get("observedGeneration") != manifest["metadata"]["generation"]:
        return "NotObserved"
    if condition(status, "Degraded").get("status") == "True":
        return "Degraded"
    return status.get("phase") or "NotObserved"


@dataclass
class KstatusWatch:
    """Reads one ModelDeployment over and over, runs kstatus on each read and checks it."""

    stack: Stack
    name: str
    transitions: list[tuple[str, str, str]] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    def read(self) -> tuple[dict[str, Any], dict[str, str]]:
        manifest = json.loads(
            self.stack.cluster.kubectl(
                "get", "mdep", self.name, "-n", self.stack.namespace, "-o", "json"
            ).stdout
        )
        verdict = kstatus(manifest)
        state = state_of(manifest)
        if verdict["status"] != EXPECTED[state]:
            self.mismatches.append(f"{state}: kstatus says {verdict}; status: {manifest.get('status')}")
        seen = (state, verdict["status"], verdict["message"])
        if not self.transitions or self.transitions[-1][:2] != seen[:2]:
            self.transitions.append(seen)
            print(f"kstatus {self.name}: {state:<12} -> {verdict['status']:<10} {verdict['message']!r}")
        return manifest.get("status") or {}, verdict

    def until(self, predicate, *, what: str, timeout: float = 120) -> dict[str, str]:
        """Read until `predicate(status)` holds; return kstatus's verdict on that read."""

        def step() -> tuple[dict[str, Any], dict[str, str]] | None:
            status, verdict = self.read()
            return (status, verdict) if self.mismatches or predicate(status) else None

        _, verdict = wait_for(step, timeout=timeout, interval=0.1, what=f"{self.name}: {what}")
        assert not self.mismatches, "\n".join(self.mismatches)
        return verdict


def phase(name: str):
    return lambda status: status.get("phase") == name


def test_kstatus_during_analysis_after_promotion_and_after_a_rollback(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    stack.start_operator()
    url = stack.prometheus.url
    watch = KstatusWatch(stack, "iris")
    # successLimit 10: the first analysis lasts long enough to be read several times.
    stack.apply(
        model_deployment("iris", stack.namespace, "v1", models["good"], prometheus_url=url, successLimit=10)
    )
    analysing = watch.until(phase("Analyzing"), what="v1 analysed")
    assert analysing["status"] == "InProgress"
    assert analysing["message"] == "v1: Analyzing"  # the Reconciling condition's message

    current = watch.until(promoted("v1"), what="v1 promoted")
    assert current["status"] == "Current"

    stack.apply(model_deployment("iris", stack.namespace, "v2", models["bad"], prometheus_url=url))
    watch.until(phase("Analyzing"), what="v2 analysed")
    failed = watch.until(phase("RolledBack"), what="v2 rolled back")
    assert failed["status"] == "Failed"
    assert "v2 was rolled back (AnalysisFailed)" in failed["message"]
    assert "kubectl vigil retry" in failed["message"]

    # The user acts: back to v1 in git. kstatus sees the new generation, then Current.
    stack.apply(
        model_deployment("iris", stack.namespace, "v1", models["good"], prometheus_url=url, successLimit=10)
    )
    assert watch.until(promoted("v1"), what="spec back on v1")["status"] == "Current"
    states = [state for state, _, _ in watch.transitions]
    assert {"Analyzing", "Promoted", "RolledBack"} <= set(states), watch.transitions


def test_kstatus_of_a_first_release_that_fails_analysis_is_failed(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    stack.start_operator()
    watch = KstatusWatch(stack, "iris")
    stack.apply(
        model_deployment("iris", stack.namespace, "v1", models["bad"], prometheus_url=stack.prometheus.url)
    )
    assert watch.until(phase("Analyzing"), what="v1 analysed")["status"] == "InProgress"
    failed = watch.until(phase("Degraded"), what="v1 degraded")
    assert failed["status"] == "Failed"
    assert "NoStableRelease" in failed["message"]
    status, _ = watch.read()
    assert condition(status, "Stalled")["reason"] == "NoStableRelease"


def test_kstatus_is_failed_while_metrics_are_unavailable_and_current_again_after(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    stack.start_operator()
    watch = KstatusWatch(stack, "iris")
    stack.apply(
        model_deployment("iris", stack.namespace, "v1", models["good"], prometheus_url=stack.prometheus.url)
    )
    assert watch.until(promoted("v1"), what="v1 promoted")["status"] == "Current"

    stack.prometheus.stop()
    failed = watch.until(
        lambda s: condition(s, "Stalled").get("reason") == "MetricsUnavailable", what="MetricsUnavailable"
    )
    assert failed["status"] == "Failed"
    assert "no usable data; keeping v1" in failed["message"]

    stack.prometheus.restart()
    recovered = watch.until(lambda s: condition(s, "Degraded").get("status") == "False", what="metrics back")
    assert recovered["status"] == "Current"


def test_kstatus_alone_calls_a_modeldeployment_without_status_current() -> None:
    """Before the operator's first status write, kstatus has nothing to wait on: Current. So a
    Flux `wait` on kstatus alone passes a ModelDeployment applied for the first time at once; the
    shipped Kustomization's healthCheckExprs wait instead (tests/e2e/test_gitops.py)."""
    just_applied = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "generation": 1},
        "spec": {"version": "v1", "model": {"uri": "file:///models/iris.joblib"}},
    }
    assert kstatus(just_applied)["status"] == "Current"
