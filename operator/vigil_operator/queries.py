"""PromQL for a check, rendered from the spec and the query plan. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass

from vigil_operator.decisions import QueryPlan
from vigil_operator.releases import format_duration

FEEDBACK_TOTAL = "vigil_model_feedback_total"
FEEDBACK_CORRECT = "vigil_model_feedback_correct_total"
# The built-in query returns two series told apart by this label: correct and total counts.
SERIES_LABEL = "vigil_series"
# What tells one model server process from another, whichever job scraped it: pod discovery
# (a PodMonitor, the common `kubernetes-pods` job, the sample scrape config) sets `namespace`,
# `pod` and `instance` (the pod's IP and port) alike; `job`, `endpoint` and `container` differ.
# Without `pod`, `instance` still tells pods apart.
POD_IDENTITY = "namespace, pod, instance"
# A custom query's `{{window}}` usually feeds range functions (`increase`, `rate`,
# `avg_over_time`), which need several scrapes in their range: four at the documented 15 s.
# The built-in query reads two instants, not a range, so it needs no floor, and must have none:
# back-to-back ranges would overlap and count labelled predictions twice.
MIN_WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Target:
    """Which model server's series a check reads."""

    name: str
    namespace: str
    version: str


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_offset(seconds: float) -> str:
    """A PromQL offset of `seconds` to the millisecond (Prometheus' resolution), rounded down.

    Check times are kept to the millisecond, so the range since the previous check is a whole
    number of milliseconds plus this check's sub-millisecond part, which rounding down drops.
    """
    millis = max(1, math.floor(seconds * 1000 + 1e-6))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def builtin_accuracy_query(target: Target, plan: QueryPlan) -> str:
    """Correct and total labelled predictions of one version over exactly the plan's range.

    Per model server process (`POD_IDENTITY`; `max` keeps one copy of a pod scraped by several
    jobs): the counter now minus the counter `range_seconds` ago; when there is nothing to
    subtract (the pod started within the range, or Prometheus lost its data) or the difference
    is negative (the server restarted), the counter now minus its lowest value within the range
    (the servers expose their counters at 0 from the start). Either way a label is never counted
    twice; a restart or lost data can only leave labels out. No `increase()`: it extrapolates, so
    counts would not be whole and back-to-back ranges would not add up to the total.
    """
    selector = (
        f"namespace={_quote(target.namespace)}, model={_quote(target.name)}, version={_quote(target.version)}"
    )
    offset = format_offset(plan.range_seconds)

    def counted(metric: str, series: str) -> str:
        now = f"max by ({POD_IDENTITY}) ({metric}{{{selector}}})"
        before = f"max by ({POD_IDENTITY}) ({metric}{{{selector}}} offset {offset})"
        lowest = f"max by ({POD_IDENTITY}) (min_over_time({metric}{{{selector}}}[{offset}]))"
        since = f"({now} - {before}) >= 0 or ({now} - {lowest})"
        return f'label_replace(sum({since}), "{SERIES_LABEL}", "{series}", "", "")'

    return f"{counted(FEEDBACK_CORRECT, 'correct')} or {counted(FEEDBACK_TOTAL, 'total')}"


def custom_query(template: str, target: Target, plan: QueryPlan) -> str:
    """The user's query with {{name}}, {{namespace}}, {{version}} and {{window}} filled in."""
    values = {
        "name": target.name,
        "namespace": target.namespace,
        "version": target.version,
        "window": format_duration(max(plan.window_seconds, MIN_WINDOW_SECONDS)),
    }
    rendered = template
    for key, value in values.items():
        rendered = rendered.replace("{{" + key + "}}", value).replace("{{ " + key + " }}", value)
    return rendered


def object_pods_regex(name: str) -> str:
    """The names of a Deployment's pods (`<name>-<template hash>-<suffix>`), and no other's:
    neither segment after the name holds a dash, so `iris-eu`'s pods never match `iris`. Object
    names hold only lowercase letters, digits, `-` and `.`; the dot is the one to escape."""
    return name.replace(".", "\\.") + "-[a-z0-9]+-[a-z0-9]+"


def no_series_query(target: Target) -> str:
    """What tells the causes of an empty built-in answer apart (`diagnosis.diagnose`).

    Three counts in one answer, told apart by `SERIES_LABEL`: the object's pods scraped up and
    down (`up` carries the target labels), and this version's feedback series without a
    `namespace` label (`namespace=""` matches a missing label).
    """
    pods = f"up{{namespace={_quote(target.namespace)}, pod=~{_quote(object_pods_regex(target.name))}}}"
    unlabelled = (
        f'{FEEDBACK_TOTAL}{{namespace="", model={_quote(target.name)}, version={_quote(target.version)}}}'
    )
    counts = {"up": f"{pods} == 1", "down": f"{pods} == 0", "unlabelled": unlabelled}
    return " or ".join(
        f'label_replace(count({selector}), "{SERIES_LABEL}", "{series}", "", "")'
        for series, selector in counts.items()
    )
