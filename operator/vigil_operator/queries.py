"""PromQL for a check, rendered from the spec and the query plan. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from vigil_operator.decisions import QueryPlan
from vigil_operator.releases import format_duration

FEEDBACK_TOTAL = "vigil_model_feedback_total"
FEEDBACK_CORRECT = "vigil_model_feedback_correct_total"
# The built-in query returns two series told apart by this label: correct and total counts.
SERIES_LABEL = "vigil_series"
# `increase()` needs two scrapes in its range: a version that started serving a moment ago is
# read over this much at least (still only its own series: they carry its version label).
MIN_RANGE_SECONDS = 30.0


@dataclass(frozen=True)
class Target:
    """Which model server's series a check reads."""

    name: str
    namespace: str
    version: str


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def builtin_accuracy_query(target: Target, plan: QueryPlan) -> str:
    """Correct and total labelled predictions of one version over the plan's range.

    Before promotion the range reaches back to when the version started serving, so every
    labelled prediction counts; after promotion it is the recent `window`.
    """
    selector = (
        f"namespace={_quote(target.namespace)}, model={_quote(target.name)}, version={_quote(target.version)}"
    )
    window = format_duration(max(plan.range_seconds, MIN_RANGE_SECONDS))

    def counted(metric: str, series: str) -> str:
        return (
            f"label_replace(sum(increase({metric}{{{selector}}}[{window}])), "
            f'"{SERIES_LABEL}", "{series}", "", "")'
        )

    return f"{counted(FEEDBACK_CORRECT, 'correct')} or {counted(FEEDBACK_TOTAL, 'total')}"


def custom_query(template: str, target: Target, plan: QueryPlan) -> str:
    """The user's query with {{name}}, {{namespace}}, {{version}} and {{window}} filled in."""
    values = {
        "name": target.name,
        "namespace": target.namespace,
        "version": target.version,
        "window": format_duration(plan.range_seconds),
    }
    rendered = template
    for key, value in values.items():
        rendered = rendered.replace("{{" + key + "}}", value).replace("{{ " + key + " }}", value)
    return rendered
