"""The PromQL of a check (vigil_operator.queries): the built-in accuracy query and custom templates."""

from __future__ import annotations

import pytest

from vigil_operator.decisions import QueryPlan
from vigil_operator.queries import MIN_RANGE_SECONDS, Target, builtin_accuracy_query, custom_query

IRIS = Target(name="iris", namespace="ml", version="v2")
CUMULATIVE = QueryPlan(cumulative=True, range_seconds=95.0)
WINDOW = QueryPlan(cumulative=False, range_seconds=300.0)


def test_the_builtin_query_counts_correct_and_all_labelled_predictions_of_one_version() -> None:
    selector = 'namespace="ml", model="iris", version="v2"'
    assert builtin_accuracy_query(IRIS, CUMULATIVE) == (
        f"label_replace(sum(increase(vigil_model_feedback_correct_total{{{selector}}}[95s])), "
        '"vigil_series", "correct", "", "")'
        f" or label_replace(sum(increase(vigil_model_feedback_total{{{selector}}}[95s])), "
        '"vigil_series", "total", "", "")'
    )


@pytest.mark.parametrize(
    ("plan", "window"),
    [
        (WINDOW, "[300s]"),  # after promotion: the recent window
        (QueryPlan(True, 3600.0), "[3600s]"),  # before: everything since the version started serving
        (QueryPlan(True, 90.2), "[91s]"),  # rounded up, so no labelled prediction is left out
        (QueryPlan(True, 4.0), f"[{MIN_RANGE_SECONDS:.0f}s]"),  # increase() needs two scrapes
    ],
)
def test_the_builtin_query_reads_the_plans_range(plan: QueryPlan, window: str) -> None:
    query = builtin_accuracy_query(IRIS, plan)
    assert query.count(window) == 2


def test_label_values_are_quoted_so_they_cannot_break_out_of_the_selector() -> None:
    query = builtin_accuracy_query(Target("iris", "ml", 'v2"} or vector(1) #\\'), WINDOW)
    assert 'version="v2\\"} or vector(1) #\\\\"}' in query
    assert query.count("vector(1)") == 2  # only ever inside the quoted label value


def test_a_custom_query_gets_its_placeholders_filled_in() -> None:
    template = (
        'avg_over_time(my_accuracy{namespace="{{namespace}}", app="{{ name }}", '
        'version="{{version}}"}[{{window}}]) * on() group_left() ({{window}} > bool 0)'
    )
    assert custom_query(template, IRIS, WINDOW) == (
        'avg_over_time(my_accuracy{namespace="ml", app="iris", version="v2"}[300s]) '
        "* on() group_left() (300s > bool 0)"
    )


def test_a_custom_query_window_is_the_plans_range_rounded_up() -> None:
    assert custom_query("x[{{window}}]", IRIS, QueryPlan(True, 61.5)) == "x[62s]"
    assert custom_query("x[{{window}}]", IRIS, QueryPlan(True, 0.0)) == "x[1s]"


def test_a_custom_query_without_placeholders_or_with_unknown_ones_is_left_alone() -> None:
    assert custom_query("vector(0.95)", IRIS, WINDOW) == "vector(0.95)"
    assert custom_query("x{a='{{team}}'}", IRIS, WINDOW) == "x{a='{{team}}'}"
