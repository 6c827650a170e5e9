"""The operator's built-in query against a real Prometheus: each labelled prediction counts once.

One model server is scraped by two jobs, as a Prometheus with both the common `kubernetes-pods`
annotation job and the chart's PodMonitor would: same `namespace`, `pod` and `instance`, other
`job`. The check's counts (the operator's own rendered query, run by its own `prometheus.measure`
at the check's time) must equal the labels sent, ranges of consecutive checks must add up to the
total, and a restarted server must give neither negative nor doubled counts.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from model_server_harness import MODEL_NAME, MODEL_VERSION, ModelServer, pinned, server_argv
from sklearn.linear_model import LogisticRegression

from harness.ports import free_port
from harness.processes import ProcessGroup
from harness.prometheus import LocalPrometheus, ScrapeTarget
from vigil_operator import prometheus as adapter
from vigil_operator.analysis import Measurement
from vigil_operator.decisions import QueryPlan
from vigil_operator.queries import Target, builtin_accuracy_query

pytestmark = pytest.mark.prometheus

NAMESPACE, POD = "ml", "iris-6c9f7b-x2x7q"
TARGET = Target(name=MODEL_NAME, namespace=NAMESPACE, version=MODEL_VERSION)
SELECTOR = f'namespace="{NAMESPACE}", model="{MODEL_NAME}", version="{MODEL_VERSION}"'
FEEDBACK_SERIES = f"vigil_model_feedback_total{{{SELECTOR}}}"


def two_jobs(address: str) -> list[ScrapeTarget]:
    """The same pod as the `kubernetes-pods` annotation job and a PodMonitor label it."""
    pod = {"namespace": NAMESPACE, "pod": POD}
    return [
        ScrapeTarget(address, pod, job="kubernetes-pods"),
        ScrapeTarget(address, {**pod, "container": "model-server", "endpoint": "http"}, job="ml/vigil"),
    ]


def start_server_on(processes: ProcessGroup, model_file: Path, port: int) -> ModelServer:
    """A model server on a given port: a restarted container keeps its pod's address."""
    argv = server_argv(str(model_file), port, *pinned(model_file))
    return ModelServer(processes.start("model-server", argv), port).wait_ready()


def check_time() -> datetime:
    """Now, to the millisecond, as the operator keeps a check's time in status."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def measure(prometheus: LocalPrometheus, since: datetime, until: datetime) -> Measurement:
    """The operator's check over [since, until], evaluated at `until` like a real check."""
    seconds = (until - since).total_seconds()
    query = builtin_accuracy_query(
        TARGET, QueryPlan(cumulative=False, range_seconds=seconds, window_seconds=seconds)
    )
    access = adapter.PrometheusAccess(url=prometheus.url)

    async def run() -> Measurement:
        try:
            return await adapter.measure(access, query, builtin=True, at=until)
        finally:
            await adapter.close()

    measurement = asyncio.run(run())
    assert measurement.error is None, measurement.error
    return measurement


class Labeller:
    """Sends labelled rows and keeps the tally the checks must find."""

    def __init__(self, classifier: LogisticRegression, data: tuple[np.ndarray, np.ndarray]) -> None:
        self.classifier = classifier
        self.features, self.labels = data
        self.sent = self.correct = 0

    def send(self, server: ModelServer, count: int) -> tuple[int, int]:
        """Label `count` rows (the model gets some wrong); returns (labelled, correct) of this batch."""
        chosen = np.random.default_rng(self.sent).choice(len(self.labels), size=count, replace=False)
        rows, truth = self.features[chosen], self.labels[chosen]
        response = server.client.post(
            f"/v2/models/{MODEL_NAME}/feedback", json={"instances": rows.tolist(), "labels": truth.tolist()}
        )
        assert response.status_code == 200, response.text
        right = int((self.classifier.predict(rows) == truth).sum())
        self.sent, self.correct = self.sent + count, self.correct + right
        return count, right


def wait_until_both_jobs_read(prometheus: LocalPrometheus, value: int) -> None:
    """Both jobs have scraped the server's feedback counter at `value`."""
    prometheus.wait_for_value(f"count({FEEDBACK_SERIES} == {value})", lambda found: found == 2, timeout=30)


def counts(measurement: Measurement) -> tuple[float | None, float | None]:
    return measurement.samples, measurement.correct


def test_a_pod_scraped_by_two_jobs_counts_each_label_once_and_ranges_add_up(
    processes: ProcessGroup,
    prometheus: LocalPrometheus,
    iris_model_file: Path,
    iris_classifier: LogisticRegression,
    iris_data: tuple[np.ndarray, np.ndarray],
) -> None:
    labeller = Labeller(iris_classifier, iris_data)
    started = check_time()  # before the first scrape: the pod is new within the first range
    server = start_server_on(processes, iris_model_file, free_port())
    prometheus.set_targets(two_jobs(f"127.0.0.1:{server.port}"))
    wait_until_both_jobs_read(prometheus, 0)

    first_batch = labeller.send(server, 7)
    wait_until_both_jobs_read(prometheus, 7)
    first = check_time()
    second_batch = labeller.send(server, 12)
    wait_until_both_jobs_read(prometheus, 19)
    second = check_time()

    assert counts(measure(prometheus, started, first)) == first_batch
    assert counts(measure(prometheus, first, second)) == second_batch
    assert counts(measure(prometheus, started, second)) == (labeller.sent, labeller.correct)
    # What the query is up against: Prometheus holds every count twice.
    assert prometheus.query(f"sum({FEEDBACK_SERIES})")[0]["value"][1] == str(2 * labeller.sent)


def test_a_restarted_server_is_neither_negative_nor_counted_twice(
    processes: ProcessGroup,
    prometheus: LocalPrometheus,
    iris_model_file: Path,
    iris_classifier: LogisticRegression,
    iris_data: tuple[np.ndarray, np.ndarray],
) -> None:
    labeller = Labeller(iris_classifier, iris_data)
    port = free_port()
    server = start_server_on(processes, iris_model_file, port)
    prometheus.set_targets(two_jobs(f"127.0.0.1:{port}"))
    wait_until_both_jobs_read(prometheus, 0)
    before_labels = check_time()
    before_batch = labeller.send(server, 9)
    wait_until_both_jobs_read(prometheus, 9)
    before_restart = check_time()

    server.process.stop()
    server = start_server_on(processes, iris_model_file, port)  # same pod, counters from zero
    wait_until_both_jobs_read(prometheus, 0)
    after_restart = labeller.send(server, 4)
    wait_until_both_jobs_read(prometheus, 4)
    restarted = check_time()

    # The check after the restart counts what the new process scored: nothing was labelled
    # between the previous check and the restart, so this is exact.
    assert counts(measure(prometheus, before_restart, restarted)) == after_restart
    # Across the restart the counter's earlier part cannot be told from the range's start: the
    # range reads what the new process scored, fewer labels than sent but never more.
    assert counts(measure(prometheus, before_labels, restarted)) == after_restart
    assert counts(measure(prometheus, before_labels, before_restart)) == before_batch
