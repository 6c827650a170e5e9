"""An empty built-in answer names its cause, asked of a real Prometheus (vigil_operator.diagnosis).

One Prometheus goes through the four situations a user meets, in the order they usually meet
them: nothing scrapes the pods; a scrape job without the `namespace` label; the pods' targets
down; the pods up but without the version's counters. Each time the operator's own adapter
(`prometheus.measure`, the built-in query, then its diagnosis query) must say which it is.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from model_server_harness import MODEL_NAME, MODEL_VERSION, pinned, start_server

from harness.ports import free_port
from harness.processes import ProcessGroup
from harness.prometheus import LocalPrometheus, ScrapeTarget
from harness.waiting import wait_for
from vigil_operator import prometheus as adapter
from vigil_operator.decisions import QueryPlan
from vigil_operator.queries import Target, builtin_accuracy_query

pytestmark = pytest.mark.prometheus

NAMESPACE, POD = "ml", "iris-6c9f7b5d4-x2x7q"


def check_error(prometheus: LocalPrometheus, version: str = MODEL_VERSION) -> str:
    """The error of a built-in check of `version`, as the operator would record it."""
    target = Target(name=MODEL_NAME, namespace=NAMESPACE, version=version)
    query = builtin_accuracy_query(target, QueryPlan(cumulative=True, range_seconds=60, window_seconds=60))

    async def run() -> str | None:
        try:
            access = adapter.PrometheusAccess(url=prometheus.url)
            return (await adapter.measure(access, query, builtin=True, target=target)).error
        finally:
            await adapter.close()

    error = asyncio.run(run())
    assert error is not None
    return error


def scraped(prometheus: LocalPrometheus, promql: str) -> bool:
    return bool(prometheus.query(promql))


def test_each_cause_of_an_empty_answer_is_named_with_its_fix(
    processes: ProcessGroup, prometheus: LocalPrometheus, iris_model_file: Path
) -> None:
    assert "Prometheus scrapes no pod of ml/iris" in check_error(prometheus)

    server = start_server(processes, str(iris_model_file), *pinned(iris_model_file)).wait_ready()
    address = f"127.0.0.1:{server.port}"
    # An older example configuration: the namespace under another label name.
    old_style = {"kubernetes_namespace": NAMESPACE, "kubernetes_pod_name": POD}
    prometheus.set_targets([ScrapeTarget(address, old_style)])
    wait_for(
        lambda: scraped(prometheus, 'vigil_model_feedback_total{namespace=""}'),
        timeout=30,
        what="the server scraped without a namespace label",
    )
    assert "without a namespace label" in check_error(prometheus)

    closed = f"127.0.0.1:{free_port()}"  # nothing listens: every scrape fails
    prometheus.set_targets([ScrapeTarget(closed, {"namespace": NAMESPACE, "pod": POD})])
    wait_for(
        lambda: (
            scraped(prometheus, f'up{{namespace="{NAMESPACE}"}} == 0')
            and not scraped(prometheus, 'vigil_model_feedback_total{namespace=""}')
        ),
        timeout=30,
        what="the pod's target down and the unlabelled series gone",
    )
    assert "every scrape fails (up == 0)" in check_error(prometheus)

    prometheus.set_targets([ScrapeTarget(address, {"namespace": NAMESPACE, "pod": POD})])
    wait_for(
        lambda: scraped(prometheus, f'up{{namespace="{NAMESPACE}", pod="{POD}"}} == 1'),
        timeout=30,
        what="the pod's target up",
    )
    # The server serves version 3; a check of version 4 finds the pod up but no counters of 4.
    assert "(1 target up) but has no feedback counters of this version yet" in check_error(
        prometheus, version="4"
    )
