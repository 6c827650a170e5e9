"""Day-two behaviour on the real stack: many objects at once, custom queries, the operator's
own metrics, and the manual actions (promote, retry) that survive a GitOps re-apply."""

from __future__ import annotations

import httpx
import pytest

from harness.models import TrainedModel
from harness.ports import free_port
from harness.silent import silent_server
from harness.waiting import wait_for

from .conftest import Stack, condition, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus]
CUSTOM_ACCURACY = (
    'avg(vigil_model_accuracy{namespace="{{namespace}}", model="{{name}}", version="{{version}}"})'
)


def _metric(text: str, metric: str, **labels: str) -> float:
    """The value of one sample of the operator's /metrics."""
    for line in text.splitlines():
        if line.startswith((metric + "{", metric + " ")) and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {metric} sample with {labels}")


def test_a_hung_prometheus_for_one_model_never_delays_another(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    metrics_port = free_port()
    stack.start_operator(metrics_port=metrics_port)
    with silent_server() as hung_url:
        stack.apply(
            model_deployment(
                "slow", stack.namespace, "v1", models["good"], prometheus_url=hung_url, queryTimeout="120s"
            )
        )
        stack.apply(
            model_deployment(
                "fast",
                stack.namespace,
                "v1",
                models["good"],
                prometheus_url=stack.prometheus.url,
                query=CUSTOM_ACCURACY,
            )
        )
        fast = stack.wait_status("fast", promoted("v1"), what="fast promoted while slow's query hangs")
        slow = stack.status("slow")
        assert slow.get("phase") == "Analyzing"
        assert slow.get("lastCheck") is None, "slow's first query is still waiting for the hung Prometheus"
    assert 'vigil_model_accuracy{namespace="' in fast["lastCheck"]["query"]
    assert "{{" not in fast["lastCheck"]["query"]

    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    labels = {"namespace": stack.namespace, "name": "fast"}
    assert _metric(text, "vigil_operator_checks_total", verdict="pass", **labels) >= 3
    assert _metric(text, "vigil_operator_promotions_total", **labels) == 1
    assert 0.9 < _metric(text, "vigil_operator_last_accuracy", version="v1", **labels) <= 1
    assert _metric(text, "vigil_operator_reconcile_duration_seconds_count") > 0


def test_manual_promote_and_retry_survive_a_gitops_reapply(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    stack.start_operator()
    url = stack.prometheus.url
    stack.apply(model_deployment("iris", stack.namespace, "v1", models["good"], prometheus_url=url))
    stack.wait_status("iris", promoted("v1"), what="v1 promoted")

    # promote: v2 would need 50 passing checks; a person promotes it at once.
    v2 = model_deployment(
        "iris", stack.namespace, "v2", models["good-too"], prometheus_url=url, successLimit=50
    )
    stack.apply(v2)
    stack.wait_status("iris", lambda s: s.get("phase") == "Analyzing", what="v2 under analysis")
    stack.cluster.kubectl("annotate", "mdep", "iris", "-n", stack.namespace, "vigil.dev/action=promote")
    stack.wait_status("iris", promoted("v2"), what="v2 promoted by annotation")
    wait_for(
        lambda: "vigil.dev/action" not in (stack.mdep("iris")["metadata"].get("annotations") or {}),
        timeout=30,
        what="the handled action annotation removed",
    )

    # retry: a bad v3 is rolled back; re-applying git does not retry it, the annotation does.
    v3 = model_deployment("iris", stack.namespace, "v3", models["bad"], prometheus_url=url)
    stack.apply(v3)
    stack.wait_status("iris", lambda s: s.get("phase") == "RolledBack", what="v3 rolled back")
    stack.apply(v3)  # GitOps sync of the same manifest
    assert stack.status("iris")["currentVersion"] == "v2"
    reasons = stack.wait_reason("iris", "RolledBack")
    assert reasons.count("RolloutStarted") == 3  # v1, v2, v3: the re-apply started nothing

    stack.cluster.kubectl("annotate", "mdep", "iris", "-n", stack.namespace, "vigil.dev/action=retry")
    stack.wait_status(
        "iris",
        lambda s: s.get("currentVersion") == "v3" and s.get("phase") != "RolledBack",
        what="v3 retried",
    )
    status = stack.wait_status("iris", lambda s: s.get("phase") == "RolledBack", what="v3 rolled back again")
    assert status["failedVersion"] == "v3"
    assert condition(status, "RolledBack")["status"] == "True"
    reasons = stack.wait_reason("iris", "RolledBack", count=2)
    assert "RetryRequested" in reasons
    assert reasons.count("RolledBack") == 2
