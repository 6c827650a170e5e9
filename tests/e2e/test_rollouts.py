"""End to end on the real stack: rollout, promotion, automatic rollback and its edge cases.

The operator runs as a real process against the local cluster; the model servers are real
processes started from the pods' env by the stand-in kubelet (tests/harness/kubelet.py),
scraped by a real Prometheus; labelled traffic goes to whichever release has Ready pods.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from harness.cluster import REPO_ROOT
from harness.models import TrainedModel
from harness.waiting import wait_for

from .conftest import Stack, condition, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus]
TIMINGS = REPO_ROOT / ".work" / "e2e-timings.json"


def _record(name: str, seconds: float) -> None:
    """Timings for the closing note and docs (never asserted: no timed assertions in tests)."""
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    data[name] = round(seconds, 2)
    TIMINGS.write_text(json.dumps(data, indent=2))
    print(f"timing {name}: {seconds:.2f}s")


def deploy_v1(stack: Stack, name: str, model: TrainedModel, **analysis) -> dict:
    stack.start_operator()
    stack.apply(
        model_deployment(name, stack.namespace, "v1", model, prometheus_url=stack.prometheus.url, **analysis)
    )
    status = stack.wait_status(name, promoted("v1"), what="v1 promoted")
    assert condition(status, "Ready")["status"] == "True"
    return status


def test_good_new_version_ispromoted(stack: Stack, models: dict[str, TrainedModel]) -> None:
    deploy_v1(stack, "iris", models["good"])
    stack.apply(
        model_deployment(
            "iris", stack.namespace, "v2", models["good-too"], prometheus_url=stack.prometheus.url
        )
    )
    status = stack.wait_status("iris", promoted("v2"), what="v2 promoted")
    assert status["currentVersion"] == "v2"
    assert status.get("failedVersion") is None
    assert condition(status, "Ready")["status"] == "True"
    assert condition(status, "RolledBack")["status"] == "False"
    assert stack.deployment_version("iris") == "v2"
    assert [h["version"] for h in status["history"] if h["outcome"] == "promoted"][:2] == ["v2", "v1"]
    reasons = stack.wait_reason("iris", "Promoted", count=2)
    assert reasons.count("Promoted") == 2
    assert "RolledBack" not in reasons
    # kubectl wait works on the kstatus Ready condition.
    stack.cluster.kubectl(
        "wait", "--for=condition=Ready", "mdep/iris", "-n", stack.namespace, "--timeout=10s"
    )


def test_bad_new_version_is_rolled_back_and_not_retried(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    deploy_v1(stack, "iris", models["good"])
    applied = time.monotonic()
    stack.apply(
        model_deployment("iris", stack.namespace, "v2", models["bad"], prometheus_url=stack.prometheus.url)
    )
    wait_for(lambda: stack.deployment_version("iris") == "v2", timeout=60, what="Deployment on v2")
    _record("apply_to_deployment_updated", time.monotonic() - applied)

    def limit_reached(status: dict) -> bool:
        return (status.get("streaks") or {}).get("failures", 0) >= 2 or status.get("phase") == "RolledBack"

    stack.wait_status("iris", limit_reached, what="failing checks")
    wait_for(lambda: stack.deployment_version("iris") == "v1", timeout=60, interval=0.05, what="v1 again")
    back_on_v1 = datetime.now(UTC)
    status = stack.wait_status("iris", lambda s: s.get("phase") == "RolledBack", what="rolled back")
    # lastCheck is the check that crossed failureLimit (same machine, same clock).
    crossing_check = datetime.fromisoformat(status["lastCheck"]["time"].replace("Z", "+00:00"))
    _record("limit_crossing_check_to_deployment_on_v1", (back_on_v1 - crossing_check).total_seconds())

    mdep = stack.mdep("iris")
    assert mdep["spec"]["version"] == "v2", "the operator must never write spec"
    assert status["currentVersion"] == "v1"
    assert status["stableVersion"] == "v1"
    assert status["failedVersion"] == "v2"
    assert status["lastCheck"]["verdict"] == "fail"
    assert status["lastCheck"]["value"] < 0.9
    assert "vigil_model_feedback_correct_total" in status["lastCheck"]["query"]
    assert condition(status, "RolledBack")["status"] == "True"
    assert condition(status, "RolledBack")["reason"] == "AnalysisFailed"
    assert condition(status, "Ready")["status"] == "False"
    assert [h["outcome"] for h in status["history"] if h["version"] == "v2"] == ["failed"]

    stack.wait_reason("iris", "RolledBack")
    events = stack.events("iris")
    rolled_back = [e for e in events if e["reason"] == "RolledBack"]
    assert len(rolled_back) == 1
    assert rolled_back[0]["type"] == "Warning"
    assert "v2" in rolled_back[0]["message"]
    assert "v1" in rolled_back[0]["message"]
    failed = [e for e in events if e["reason"] == "AnalysisFailed"]
    assert len(failed) >= 3
    assert all("query:" in e["message"] and "accuracy" in e["message"] for e in failed)

    # v2 is not retried while the spec still names it: the v1 release stays, over several checks.
    checks_seen = status["lastCheck"]["time"]
    stack.wait_status("iris", lambda s: s["lastCheck"]["time"] != checks_seen, what="a later check")
    stack.wait_status("iris", lambda s: s.get("phase") == "RolledBack", what="still rolled back")
    assert stack.deployment_version("iris") == "v1"
    assert stack.reasons("iris").count("RolloutStarted") == 2  # v1, v2; the revert is a RolledBack


def test_prometheus_outage_never_rolls_back(stack: Stack, models: dict[str, TrainedModel]) -> None:
    deploy_v1(stack, "iris", models["good"])
    stack.apply(
        model_deployment(
            "iris",
            stack.namespace,
            "v2",
            models["good-too"],
            prometheus_url=stack.prometheus.url,
            successLimit=50,
        )
    )
    stack.wait_status("iris", lambda s: s.get("phase") == "Analyzing" and s.get("lastCheck"), what="analysis")
    stack.prometheus.stop()
    status = stack.wait_status(
        "iris",
        lambda s: condition(s, "Degraded").get("reason") == "MetricsUnavailable",
        what="Degraded/MetricsUnavailable",
    )
    assert condition(status, "Degraded")["status"] == "True"
    assert status["lastCheck"]["verdict"] == "error"
    assert status["currentVersion"] == "v2"
    assert stack.deployment_version("iris") == "v2"
    assert "RolledBack" not in stack.wait_reason("iris", "MetricsUnavailable")

    stack.prometheus.restart()
    status = stack.wait_status(
        "iris", lambda s: condition(s, "Degraded").get("status") == "False", what="metrics recovered"
    )
    assert status["currentVersion"] == "v2"
    assert "RolledBack" not in stack.wait_reason("iris", "MetricsRecovered")


def test_version_that_never_becomes_ready_is_rolled_back_at_the_deadline(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    deploy_v1(stack, "iris", models["good"])
    wrong = "0" * 64
    stack.apply(
        model_deployment(
            "iris",
            stack.namespace,
            "v2",
            models["good-too"],
            prometheus_url=stack.prometheus.url,
            sha256=wrong,
            progress_deadline=10,
        )
    )
    status = stack.wait_status("iris", lambda s: s.get("phase") == "RolledBack", what="rolled back")
    assert condition(status, "RolledBack")["reason"] == "ProgressDeadlineExceeded"
    assert status["failedVersion"] == "v2"
    wait_for(lambda: stack.deployment_version("iris") == "v1", timeout=30, what="Deployment back on v1")
    server = stack.kubelet.server_for("v2")
    assert server is not None, "the v2 server was started from the pod's env"
    assert "sha256" in server.process.log().lower(), "the server says why it is not ready"


def test_operator_killed_mid_analysis_reaches_the_same_outcome(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    deploy_v1(stack, "iris", models["good"])
    stack.apply(
        model_deployment("iris", stack.namespace, "v2", models["bad"], prometheus_url=stack.prometheus.url)
    )
    stack.wait_status(
        "iris", lambda s: (s.get("streaks") or {}).get("failures", 0) >= 1, what="first failing check"
    )
    assert stack.operator is not None
    stack.operator.kill()
    stack.start_operator()
    status = stack.wait_status("iris", lambda s: s.get("phase") == "RolledBack", what="rolled back")
    assert status["failedVersion"] == "v2"
    wait_for(lambda: stack.deployment_version("iris") == "v1", timeout=30, what="Deployment back on v1")
    assert stack.wait_reason("iris", "RolledBack").count("RolledBack") == 1


def test_deleting_a_model_deployment_collects_its_deployment_and_service(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    deploy_v1(stack, "iris", models["good"])
    stack.cluster.kubectl("get", "deployment/iris", "service/iris", "-n", stack.namespace)
    stack.cluster.kubectl("delete", "mdep", "iris", "-n", stack.namespace, "--timeout=30s")

    def collected() -> bool:
        result = stack.cluster.kubectl(
            "get",
            "deployment/iris",
            "service/iris",
            "-n",
            stack.namespace,
            "--ignore-not-found",
            "-o",
            "name",
        )
        return result.stdout.strip() == ""

    wait_for(collected, timeout=60, what="Deployment and Service garbage-collected")
