"""Two operator replicas in Kopf peering: one works, the other takes over when it stops."""

from __future__ import annotations

import pytest

from harness.cluster import REPO_ROOT
from harness.models import TrainedModel
from harness.waiting import wait_for

from .conftest import Stack, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus]
PEERING_CRDS = REPO_ROOT / "charts" / "vigil" / "crds" / "kopf-peering.yaml"


def test_two_replicas_one_active_and_failover(stack: Stack, models: dict[str, TrainedModel]) -> None:
    stack.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PEERING_CRDS))
    stack.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(PEERING_CRDS))
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "vigil"}}
    peering["metadata"]["namespace"] = stack.namespace
    stack.apply(peering)
    standby = stack.start_operator(
        args=["--namespace", stack.namespace, "--peering", "vigil", "--priority", "1"]
    )
    active = stack.start_operator(
        args=["--namespace", stack.namespace, "--peering", "vigil", "--priority", "2"]
    )

    stack.apply(
        model_deployment("iris", stack.namespace, "v1", models["good"], prometheus_url=stack.prometheus.url)
    )
    stack.wait_status("iris", promoted("v1"), what="v1 promoted by the active replica")
    assert "RolloutStarted" in active.log()
    assert "RolloutStarted" not in standby.log(), (
        "the standby replica must not act while the active one lives"
    )

    active.stop()
    stack.apply(
        model_deployment(
            "iris", stack.namespace, "v2", models["good-too"], prometheus_url=stack.prometheus.url
        )
    )
    stack.wait_status("iris", promoted("v2"), timeout=180, what="v2 promoted by the standby replica")
    wait_for(
        lambda: "RolloutStarted" in standby.log(), timeout=10, what="the standby's own log of the rollout"
    )
    assert stack.wait_reason("iris", "RolloutStarted", count=2).count("RolloutStarted") == 2
