"""Batched checks against a real Prometheus fed by the bench's label stream.

N objects due on the same tick cost one query (counted by Prometheus itself), each object's counts
are those its own single query returns, an object without series gets no data, and a hung
Prometheus delays only its own objects.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from harness.ports import free_port
from harness.processes import ProcessGroup
from harness.prometheus import LocalPrometheus, ScrapeTarget, queries_answered
from harness.silent import silent_server
from vigil_operator import prometheus as adapter
from vigil_operator.analysis import Measurement
from vigil_operator.batcher import Batcher
from vigil_operator.batching import tick_floor
from vigil_operator.decisions import QueryPlan
from vigil_operator.queries import Target, builtin_accuracy_query
from vigil_operator.reconcile import run_check
from vigil_operator.releases import AnalysisSpec, ModelDeploymentSpec, Release

pytestmark = pytest.mark.prometheus

LABEL_STREAM = Path(__file__).resolve().parents[2] / "bench" / "label_stream.py"
NAMESPACE = "ml"
MODELS = 20
LABELS_PER_SECOND = 20
INTERVAL = 1.0  # the local Prometheus scrapes every second
WATCH = QueryPlan(cumulative=False, range_seconds=INTERVAL, window_seconds=300.0)


def targets(count: int, prefix: str = "model-") -> list[Target]:
    return [Target(name=f"{prefix}{index:04d}", namespace=NAMESPACE, version="v1") for index in range(count)]


def spec(url: str, timeout: float = 10.0) -> ModelDeploymentSpec:
    analysis = AnalysisSpec(prometheus_url=url, interval=INTERVAL, query_timeout=timeout)
    return ModelDeploymentSpec(release=Release("v1", "/m.joblib", "img"), analysis=analysis)


@pytest.fixture(scope="module")
def streamed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    """Prometheus scraping the label stream of MODELS models at 0.9 (shared: it takes a while)."""
    workdir = tmp_path_factory.mktemp("batched")
    processes = ProcessGroup(log_dir=workdir / "logs")
    try:
        yield _stream(processes, LocalPrometheus.start(workdir / "prometheus", processes))
    finally:
        processes.close()


def _stream(processes: ProcessGroup, prometheus: LocalPrometheus) -> LocalPrometheus:
    port = free_port()
    argv = [sys.executable, str(LABEL_STREAM), "--port", str(port), "--models", str(MODELS)]
    argv += ["--namespace", NAMESPACE, "--accuracy", "0.9", "--labels-per-second", str(LABELS_PER_SECOND)]
    processes.start("label-stream", argv)
    # No target label `namespace`: the stream's series carry their own.
    prometheus.set_targets([ScrapeTarget(f"127.0.0.1:{port}")])
    # Scraped for several seconds: the checks below read ranges up to six seconds in the past.
    prometheus.wait_for_value(
        f'count(count_over_time(vigil_model_feedback_total{{namespace="{NAMESPACE}"}}[10s]) >= 8)',
        lambda found: found == MODELS,
    )
    return prometheus


async def checks_at(
    batcher: Batcher,
    url: str,
    due: list[Target],
    at: datetime,
    plan: QueryPlan = WATCH,
    timeout: float = 10.0,
) -> list[Measurement]:
    """What reconcile does for each due object of a tick, all at once."""
    runs: list[Awaitable[tuple[Measurement, str]]] = [
        run_check(spec(url, timeout), target, plan, at=at, batcher=batcher) for target in due
    ]
    return [measurement for measurement, _ in await asyncio.gather(*runs)]


def test_objects_due_on_a_tick_share_one_query_and_get_their_own_counts(streamed: LocalPrometheus) -> None:
    due = targets(MODELS)
    # Three ticks far enough in the past that every scrape of their ranges is in.
    last_tick = tick_floor(datetime.now(UTC) - timedelta(seconds=3), INTERVAL)
    ticks = [last_tick - timedelta(seconds=INTERVAL * back) for back in (2, 1, 0)]
    operator_count = REGISTRY.get_sample_value(
        "vigil_operator_prometheus_queries_total", {"prometheus": streamed.url}
    )

    async def run() -> tuple[float, list[list[Measurement]], list[Measurement]]:
        batcher = Batcher()
        try:
            before = queries_answered(streamed.url)
            batched = [await checks_at(batcher, streamed.url, due, tick) for tick in ticks]
            sent = queries_answered(streamed.url) - before
            access = adapter.PrometheusAccess(url=streamed.url)
            single = [
                await adapter.measure(access, builtin_accuracy_query(t, WATCH), builtin=True, at=ticks[-1])
                for t in due
            ]
            return sent, batched, single
        finally:
            await adapter.close()

    sent, batched, single = asyncio.run(run())
    assert sent == len(ticks), f"{MODELS} objects over {len(ticks)} ticks took {sent} queries"
    after = REGISTRY.get_sample_value("vigil_operator_prometheus_queries_total", {"prometheus": streamed.url})
    assert after is not None
    assert after - (operator_count or 0) == len(ticks) + MODELS  # and the single ones
    for measurements in batched:
        for measurement in measurements:
            assert measurement.error is None, measurement.error
            # 20 labels a second, 90% right, over each one-second range (a scrape's jitter moves a
            # second's worth of labels into the neighbouring range, never counts it twice).
            assert measurement.samples is not None
            assert 0 <= measurement.samples <= 2 * LABELS_PER_SECOND
    assert sum(m.samples or 0 for tick in batched for m in tick) > 0
    for mine, alone in zip(batched[-1], single, strict=True):
        assert (mine.samples, mine.correct) == (alone.samples, alone.correct)


def test_analysed_and_promoted_objects_share_the_query_and_a_missing_one_has_no_data(
    streamed: LocalPrometheus,
) -> None:
    tick = tick_floor(datetime.now(UTC) - timedelta(seconds=3), INTERVAL)
    promoted, analysed = targets(MODELS)[:10], targets(MODELS)[10:]
    since_serving = QueryPlan(cumulative=True, range_seconds=4.0, window_seconds=4.0)
    missing = Target(name="model-9999", namespace=NAMESPACE, version="v1")

    async def run() -> tuple[float, list[Measurement], list[Measurement], Measurement]:
        batcher = Batcher()
        try:
            before = queries_answered(streamed.url)
            both = await asyncio.gather(
                checks_at(batcher, streamed.url, promoted, tick),
                checks_at(batcher, streamed.url, analysed, tick, since_serving),
            )
            sent = queries_answered(streamed.url) - before
            (gone,) = await checks_at(batcher, streamed.url, [missing], tick)
            return sent, both[0], both[1], gone
        finally:
            await adapter.close()

    sent, watched, cumulative, gone = asyncio.run(run())
    assert sent == 1
    for measurement in watched:
        assert measurement.samples is not None
        assert measurement.samples <= 2 * LABELS_PER_SECOND
    for measurement in cumulative:  # four seconds of labels: more than any one-second range
        assert measurement.samples is not None
        assert measurement.samples >= 2 * LABELS_PER_SECOND
    # No series is no data (an error verdict, explained), never a count of 0.
    assert gone.samples is None
    assert gone.error is not None
    assert "scrapes no pod of ml/model-9999" in gone.error


def test_a_hung_prometheus_delays_only_its_own_objects(streamed: LocalPrometheus) -> None:
    """A Prometheus that accepts connections and never answers: a fault the real one cannot show on
    demand, so a TCP listener (harness.silent) stands in for it."""
    tick = tick_floor(datetime.now(UTC) - timedelta(seconds=3), INTERVAL)
    hung_timeout = 8.0

    with silent_server() as hung_url:

        async def run() -> tuple[list[Measurement], bool, list[Measurement]]:
            batcher = Batcher()
            try:
                hung = asyncio.ensure_future(
                    checks_at(batcher, hung_url, targets(10, "hung-"), tick, timeout=hung_timeout)
                )
                healthy = await checks_at(batcher, streamed.url, targets(MODELS), tick)
                hung_still_waiting = not hung.done()
                return healthy, hung_still_waiting, await hung
            finally:
                await adapter.close()

        healthy, hung_still_waiting, hung = asyncio.run(run())

    assert all(m.error is None and m.samples is not None for m in healthy)
    assert hung_still_waiting, "the healthy Prometheus' objects waited for the hung one"
    for measurement in hung:
        assert measurement.error is not None
        assert f"did not answer within {hung_timeout:g}s" in measurement.error
