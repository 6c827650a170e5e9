"""The pure parts of `make bench-scale` (bench/scale.py): parsing the API server's metrics, rates,
percentiles, what a Deployment runs, and the goals."""

from __future__ import annotations

import pytest
from scale import (
    Result,
    first_left,
    first_seen,
    missed_goals,
    percentile,
    rates,
    requests_by_verb,
    rolled_out,
    template_version,
)

APISERVER_METRICS = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, ...
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",group="apps",resource="deployments",subresource="",verb="GET"} 120
apiserver_request_total{code="404",group="apps",resource="deployments",subresource="",verb="GET"} 3
apiserver_request_total{code="200",resource="modeldeployments",subresource="status",verb="PATCH"} 40
apiserver_request_total{code="0",group="apps",resource="deployments",subresource="",verb="WATCH"} 2
apiserver_request_total{code="200",group="",resource="pods",subresource="status",verb="PATCH"} 9000
# HELP apiserver_request_duration_seconds Response latency.
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_count{resource="deployments",verb="GET"} 123
"""


def test_requests_are_summed_by_verb_over_the_operators_resources_only() -> None:
    assert requests_by_verb(APISERVER_METRICS) == {"GET": 123.0, "PATCH": 40.0, "WATCH": 2.0}
    assert requests_by_verb(APISERVER_METRICS, {"pods"}) == {"PATCH": 9000.0}


def test_rates_per_second_and_a_restarted_counter_counts_from_zero() -> None:
    assert rates({"GET": 100.0, "PATCH": 50.0}, {"GET": 160.0, "PATCH": 20.0, "LIST": 6.0}, 60) == {
        "GET": 1.0,
        "LIST": 0.1,
        "PATCH": 20.0 / 60,
    }


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([0.3], 99) == 0.3
    assert percentile([], 50) is None
    assert percentile([5.0, 1.0, 3.0], 100) == 5.0


def deployment(
    version: str, *, generation: int = 2, observed: int = 2, updated: int = 1, available: int = 1
) -> dict:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": {"vigil.dev/version": version}}}},
        "status": {
            "observedGeneration": observed,
            "replicas": 1,
            "updatedReplicas": updated,
            "availableReplicas": available,
        },
    }


def test_what_a_deployment_runs_and_whether_it_rolled_out() -> None:
    assert template_version(deployment("v2")) == "v2"
    assert template_version({}) is None
    assert rolled_out(deployment("v2"))
    assert not rolled_out(deployment("v2", observed=1))
    assert not rolled_out(deployment("v2", updated=0))
    assert not rolled_out(deployment("v2", available=0))


def test_spec_change_and_rollback_times_from_a_timeline() -> None:
    timeline = [(10.0, "v1", True), (10.4, "bad", False), (12.0, "bad", True), (44.0, "v1", False)]
    assert first_seen(timeline, "bad", after=10.1) == 10.4
    assert first_seen(timeline, "bad", after=10.1, rolled=True) == 12.0
    assert first_left(timeline, "bad", after=12.0) == 44.0
    assert first_seen(timeline, "v9", after=0) is None


def result(**changes: object) -> Result:
    values: dict = {
        "size": 1000,
        "operator": "after",
        "window_seconds": 60.0,
        "rss_mb": 150.0,
        "cpu_cores": 0.2,
        "requests_per_second": {"GET": 1.0},
        "reads_per_object": 0.01,
        "prometheus_queries_per_second": 0.1,
        "queries_per_interval": 1.0,
        "spec_to_deployment": [0.2, 0.3, 0.5],
        "breach_to_rollback": [31.0, 33.5],
    }
    return Result(**(values | changes))


def test_goals_met_and_each_goal_missed() -> None:
    assert missed_goals(result(), interval=10, failure_limit=3) == []
    assert len(missed_goals(result(rss_mb=300.0), 10, 3)) == 1
    assert len(missed_goals(result(queries_per_interval=1000.0), 10, 3)) == 1
    assert len(missed_goals(result(reads_per_object=0.2), 10, 3)) == 1
    assert len(missed_goals(result(spec_to_deployment=[0.1, 2.5]), 10, 3)) == 1
    assert len(missed_goals(result(spec_to_deployment=[]), 10, 3)) == 1
    assert len(missed_goals(result(spec_missed=1), 10, 3)) == 1
    assert len(missed_goals(result(breach_to_rollback=[41.0]), 10, 3)) == 1
    assert len(missed_goals(result(breach_to_rollback=[30.0, None]), 10, 3)) == 1


@pytest.mark.parametrize("interval", [5, 10, 30])
def test_the_rollback_goal_is_failure_limit_intervals_plus_ten_seconds(interval: int) -> None:
    limit = 3 * interval + 10
    assert missed_goals(result(breach_to_rollback=[float(limit)]), interval, 3) == []
    assert missed_goals(result(breach_to_rollback=[limit + 0.5]), interval, 3) != []
