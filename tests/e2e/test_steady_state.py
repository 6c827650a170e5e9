"""Weeks of watching, at compressed time: healthy promoted models stay, a drifted one is reverted.

The default ratio of the analysis (interval 30 s, window 5 m, about 100 labels per window) is
compressed 30 times: a check every second, a 10 s window, 10 labels per second per model. Labels
come from `ControlledTraffic`, so each model's true accuracy is exactly what the test says.
Four promoted models at 0.91 against a threshold of 0.90 are watched for at least 600 checks
each; today's rule (the Wilson gate on the last window, 3 fails in a row) reverted such a model
within 600 checks in about half of the runs (`make bench-decisions`, the "today" columns).
A fifth model's v2 drifts from 0.99 to 0.80 and is reverted to v1.
"""

from __future__ import annotations

import time

import httpx
import joblib
import pytest
from prometheus_client.parser import text_string_to_metric_families

from e2e.conftest import Stack, condition, model_deployment, promoted
from e2e.test_rollouts import _record
from harness.models import TrainedModel, iris
from harness.ports import free_port
from harness.traffic import ControlledTraffic
from harness.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.soak]

COMPRESSED = {"interval": "1s", "window": "10s", "minSamples": 50, "successLimit": 3, "threshold": 0.9}
HEALTHY = ("m1", "m2", "m3", "m4")
CHECKS_TO_WATCH = 600


def checks_by_name(metrics_url: str) -> dict[str, float]:
    """`vigil_operator_checks_total` per ModelDeployment, from the operator's own /metrics."""
    counts: dict[str, float] = {}
    text = httpx.get(metrics_url, timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "vigil_operator_checks":
            for sample in family.samples:
                if sample.name == "vigil_operator_checks_total":
                    name = sample.labels["name"]
                    counts[name] = counts.get(name, 0.0) + sample.value
    return counts


@pytest.mark.timeout(1800)
def test_healthy_models_survive_600_checks_and_a_drift_is_reverted(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    stack.traffic.stop()  # its labels are the truth of iris; these models get chosen accuracies
    model = models["good"]
    features, _ = iris()
    predictions = [int(label) for label in joblib.load(model.path).predict(features)]
    traffic = ControlledTraffic(
        stack.kubelet, predictions, {name: 0.99 for name in (*HEALTHY, "drift")}, labels_per_second=10
    ).start()
    try:
        metrics_port = free_port()
        stack.start_operator(metrics_port=metrics_port)
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        url = stack.prometheus.url
        for name in (*HEALTHY, "drift"):
            stack.apply(
                model_deployment(name, stack.namespace, "v1", model, prometheus_url=url, **COMPRESSED)
            )
        for name in (*HEALTHY, "drift"):
            stack.wait_status(name, promoted("v1"), what="v1 promoted")
        stack.apply(model_deployment("drift", stack.namespace, "v2", model, prometheus_url=url, **COMPRESSED))

        for name in HEALTHY:
            traffic.accuracy[name] = 0.91
        at_switch = checks_by_name(metrics_url)
        sent_at_switch = {name: traffic.sent[(name, "v1")] for name in HEALTHY}
        stack.wait_status("drift", promoted("v2"), what="v2 promoted")

        traffic.accuracy["drift@v2"] = 0.80
        drifted = time.monotonic()
        status = stack.wait_status(
            "drift", lambda s: s.get("phase") == "RolledBack", timeout=300, what="v2 reverted after its drift"
        )
        _record("compressed_drift_to_0.80_reverted", time.monotonic() - drifted)
        assert status["failedVersion"] == "v2"
        assert condition(status, "RolledBack")["reason"] == "AnalysisFailed"
        assert "evidence of a drop below 0.90" in status["history"][0]["reason"]
        wait_for(lambda: stack.deployment_version("drift") == "v1", timeout=60, what="drift back on v1")
        assert stack.wait_reason("drift", "RolledBack").count("RolledBack") == 1

        def watched_long_enough() -> dict[str, float] | None:
            counts = checks_by_name(metrics_url)
            done = {name: counts.get(name, 0) - at_switch.get(name, 0) for name in HEALTHY}
            for name in HEALTHY:  # a false rollback ends the test at once, with its reason
                assert stack.status(name)["phase"] == "Promoted", stack.status(name)
            return done if min(done.values()) >= CHECKS_TO_WATCH else None

        done = wait_for(watched_long_enough, timeout=1500, interval=10, what=f"{CHECKS_TO_WATCH} checks each")
        print(f"checks at 0.91 per model: {done}")
        for name in HEALTHY:
            status = stack.status(name)
            assert status["phase"] == "Promoted"
            assert status.get("failedVersion") is None
            assert [h["outcome"] for h in status["history"]] == ["promoted"]
            assert "RolledBack" not in stack.reasons(name)
            # Every label counted once: the watch saw what was sent, give or take the last scrape.
            sent = traffic.sent[(name, "v1")] - sent_at_switch[name]
            seen_since_promotion = status["watch"]["samples"]
            assert seen_since_promotion <= traffic.sent[(name, "v1")]
            assert seen_since_promotion >= 0.97 * sent, (seen_since_promotion, sent)
            assert "evidence of a drop below 0.90" in status["lastCheck"]["reason"]
        assert not traffic.failures, traffic.failures
    finally:
        traffic.stop()
