"""The PromQL of a check (vigil_operator.queries): the built-in accuracy query and custom templates."""

from __future__ import annotations

import itertools

import pytest

from vigil_operator.decisions import QueryPlan
from vigil_operator.queries import (
    MIN_WINDOW_SECONDS,
    PAIRED_FEEDBACK,
    PairedOutcome,
    Target,
    builtin_accuracy_query,
    custom_query,
    format_offset,
    paired_comparison_query,
)

IRIS = Target(name="iris", namespace="ml", version="v2")
CUMULATIVE = QueryPlan(cumulative=True, range_seconds=95.0, window_seconds=95.0)
WATCH = QueryPlan(cumulative=False, range_seconds=30.0, window_seconds=300.0)


def test_the_builtin_query_counts_each_pods_labelled_predictions_once_over_the_range() -> None:
    def per_pod(metric: str) -> str:
        series = f'{metric}{{namespace="ml", model="iris", version="v2"}}'
        now = f"max by (namespace, pod, instance) ({series})"
        before = f"max by (namespace, pod, instance) ({series} offset 95s)"
        lowest = f"max by (namespace, pod, instance) (min_over_time({series}[95s]))"
        return f"sum(({now} - {before}) >= 0 or ({now} - {lowest}))"

    assert builtin_accuracy_query(IRIS, CUMULATIVE) == (
        f'label_replace({per_pod("vigil_model_feedback_correct_total")}, "vigil_series", "correct", "", "")'
        f' or label_replace({per_pod("vigil_model_feedback_total")}, "vigil_series", "total", "", "")'
    )


def test_the_builtin_query_neither_extrapolates_nor_adds_up_scrape_jobs() -> None:
    query = builtin_accuracy_query(IRIS, WATCH)
    assert "increase(" not in query
    assert "rate(" not in query
    assert query.count("max by (namespace, pod, instance)") == 8


@pytest.mark.parametrize(
    ("plan", "offset"),
    [
        (WATCH, "offset 30s"),  # after promotion: since the previous check, not the window
        (QueryPlan(True, 3600.0, 3600.0), "offset 3600s"),  # before: since the version started serving
        (QueryPlan(False, 30.25, 300.0), "offset 30250ms"),  # to the millisecond: ranges meet exactly
        (QueryPlan(False, 4.0, 300.0), "offset 4s"),  # no floor: a floor would overlap the previous check
    ],
)
def test_the_builtin_query_reads_exactly_the_plans_range(plan: QueryPlan, offset: str) -> None:
    query = builtin_accuracy_query(IRIS, plan)
    assert query.count(offset) == 2
    assert query.count(f"[{offset.removeprefix('offset ')}]") == 2  # the lowest value within the range


@pytest.mark.parametrize(
    ("seconds", "offset"),
    [
        (95.0, "95s"),
        (30.0005, "30s"),  # the check's sub-millisecond part; check times are kept to the millisecond
        (30.123, "30123ms"),
        (30.12299999999, "30123ms"),  # float noise does not lose a millisecond
        (0.0, "1ms"),
    ],
)
def test_offsets_are_whole_milliseconds_rounded_down(seconds: float, offset: str) -> None:
    assert format_offset(seconds) == offset


def test_back_to_back_offsets_add_up_to_the_whole_range() -> None:
    def millis(offset: str) -> int:
        return (
            int(offset.removesuffix("ms")) if offset.endswith("ms") else 1000 * int(offset.removesuffix("s"))
        )

    checks_ms = [0, 30_017, 60_101, 90_000, 121_999]  # check times as status keeps them
    ranges = [millis(format_offset((b - a) / 1000)) for a, b in itertools.pairwise(checks_ms)]
    assert sum(ranges) == checks_ms[-1] - checks_ms[0]


def test_label_values_are_quoted_so_they_cannot_break_out_of_the_selector() -> None:
    query = builtin_accuracy_query(Target("iris", "ml", 'v2"} or vector(1) #\\'), WATCH)
    assert 'version="v2\\"} or vector(1) #\\\\"}' in query
    assert query.count("vector(1)") == 8  # only ever inside the quoted label values (8 selectors)


def test_a_custom_query_gets_its_placeholders_filled_in() -> None:
    template = (
        'avg_over_time(my_accuracy{namespace="{{namespace}}", app="{{ name }}", '
        'version="{{version}}"}[{{window}}]) * on() group_left() ({{window}} > bool 0)'
    )
    assert custom_query(template, IRIS, WATCH) == (
        'avg_over_time(my_accuracy{namespace="ml", app="iris", version="v2"}[300s]) '
        "* on() group_left() (300s > bool 0)"
    )


def test_a_custom_query_window_is_the_plans_window_not_the_builtin_range() -> None:
    assert custom_query("x[{{window}}]", IRIS, QueryPlan(False, 10.0, 300.0)) == "x[300s]"
    assert custom_query("x[{{window}}]", IRIS, QueryPlan(True, 61.5, 61.5)) == "x[62s]"


@pytest.mark.parametrize("seconds", [0.0, 10.0, MIN_WINDOW_SECONDS - 0.5])
def test_a_custom_query_window_is_floored_so_range_functions_see_several_scrapes(seconds: float) -> None:
    plan = QueryPlan(cumulative=True, range_seconds=seconds, window_seconds=seconds)
    assert custom_query("x[{{window}}]", IRIS, plan) == f"x[{MIN_WINDOW_SECONDS:.0f}s]"


def test_a_custom_query_without_placeholders_or_with_unknown_ones_is_left_alone() -> None:
    assert custom_query("vector(0.95)", IRIS, WATCH) == "vector(0.95)"
    assert custom_query("x{a='{{team}}'}", IRIS, WATCH) == "x{a='{{team}}'}"


# --- the paired counts of a shadow candidate -----------------------------------------------------


def test_the_paired_query_counts_each_outcome_once_per_pod_over_the_range() -> None:
    series = (
        'vigil_model_paired_feedback_total{namespace="ml", model="iris", version="v2", stable_version="v1"}'
    )
    identity = "namespace, pod, instance, outcome"
    now = f"max by ({identity}) ({series})"
    before = f"max by ({identity}) ({series} offset 95s)"
    lowest = f"max by ({identity}) (min_over_time({series}[95s]))"
    assert paired_comparison_query(IRIS, "v1", CUMULATIVE) == (
        f"sum by (outcome) (({now} - {before}) >= 0 or ({now} - {lowest}))"
    )


def test_the_paired_query_reads_exactly_the_plans_range_without_extrapolating() -> None:
    query = paired_comparison_query(IRIS, "v1", QueryPlan(False, 30.25, 300.0))
    assert query.count("offset 30250ms") == 1
    assert query.count("[30250ms]") == 1
    assert "increase(" not in query
    assert "rate(" not in query


def test_the_paired_query_quotes_the_stable_version() -> None:
    query = paired_comparison_query(IRIS, 'v1"} or vector(1) #', CUMULATIVE)
    assert 'stable_version="v1\\"} or vector(1) #"' in query


def test_the_paired_outcomes_are_the_four_cells_of_mcnemars_table() -> None:
    assert {outcome.value for outcome in PairedOutcome} == {
        "both_right",
        "both_wrong",
        "only_stable_right",
        "only_candidate_right",
    }
    assert PAIRED_FEEDBACK.endswith("_total")  # a counter
