"""PromQL for a check, rendered from the spec and the query plan. Pure."""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from vigil_operator.decisions import QueryPlan
from vigil_operator.releases import format_duration

FEEDBACK_TOTAL = "vigil_model_feedback_total"
FEEDBACK_CORRECT = "vigil_model_feedback_correct_total"
# Shadow: ids labelled for both the candidate and the stable release, by who was right. Counted by
# the candidate's servers (they get the stable's prediction with the mirrored request and the label
# forwarded by id), so `version` is the candidate's own, like every other series of a server.
PAIRED_FEEDBACK = "vigil_model_paired_feedback_total"
STABLE_VERSION_LABEL = "stable_version"  # the version the candidate was paired with
OUTCOME_LABEL = "outcome"
# The built-in query returns two series told apart by this label: correct and total counts.
SERIES_LABEL = "vigil_series"
# A batched query (`grouped_accuracy_query`) keeps the target's labels, and tags each group with this
# one: groups of other ranges may match the same series, and `or` would otherwise drop them.
GROUP_LABEL = "vigil_group"
TARGET_LABELS = ("namespace", "model", "version")
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


class PairedOutcome(enum.StrEnum):
    """The values of `OUTCOME_LABEL`: each labelled id counts under exactly one of them.

    The servers expose all four at 0 from the start, so each is always a series (the query's
    fallback for a new pod subtracts from the lowest value, which is then 0).
    """

    BOTH_RIGHT = "both_right"
    BOTH_WRONG = "both_wrong"
    ONLY_STABLE_RIGHT = "only_stable_right"
    ONLY_CANDIDATE_RIGHT = "only_candidate_right"


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
    offset = format_offset(plan.range_seconds)
    selector = _selector(target)

    def counted(metric: str, series: str) -> str:
        since = _counted_once(f"{metric}{{{selector}}}", offset, POD_IDENTITY)
        return f'label_replace(sum({since}), "{SERIES_LABEL}", "{series}", "", "")'

    return f"{counted(FEEDBACK_CORRECT, 'correct')} or {counted(FEEDBACK_TOTAL, 'total')}"


def grouped_accuracy_query(tag: str, targets: Sequence[Target], range_seconds: float) -> str:
    """`builtin_accuracy_query` for many targets over one range, per (namespace, model, version).

    The same counting (per process, never twice), with `model` and `version` kept in the process's
    identity (one exporter may serve many models) and a sum per target instead of one sum; every
    series is tagged `GROUP_LABEL`=`tag`. The selectors match each label against the set of the
    targets' values, so a series of a non-member can match too: `batching.split_answer` keeps
    only each member's own series.
    """
    offset = format_offset(range_seconds)
    selector = ", ".join(
        f"{label}=~{_quote('|'.join(sorted({_regex_literal(value) for value in values})))}"
        for label, values in zip(
            TARGET_LABELS,
            zip(*((t.namespace, t.name, t.version) for t in targets), strict=True),
            strict=True,
        )
    )
    identity = f"{POD_IDENTITY}, model, version"
    by = ", ".join(TARGET_LABELS)

    def counted(metric: str, series: str) -> str:
        since = _counted_once(f"{metric}{{{selector}}}", offset, identity)
        tagged = f'label_replace(sum by ({by}) ({since}), "{SERIES_LABEL}", "{series}", "", "")'
        return f'label_replace({tagged}, "{GROUP_LABEL}", {_quote(tag)}, "", "")'

    return f"{counted(FEEDBACK_CORRECT, 'correct')} or {counted(FEEDBACK_TOTAL, 'total')}"


def _regex_literal(value: str) -> str:
    """`value` as an RE2 pattern matching only itself (callers pass label-safe values)."""
    return "".join(
        char if char.isascii() and (char.isalnum() or char in "_-") else f"\\{char}" for char in value
    )


def paired_comparison_query(target: Target, stable_version: str, plan: QueryPlan) -> str:
    """A shadow candidate's paired counts against `stable_version`, one series per outcome.

    Counted once as in `builtin_accuracy_query` (per process, now minus the plan's range ago, or
    minus the lowest value within it), with the outcome kept through every step; `target.version`
    is the candidate's.
    """
    selector = f"{_selector(target)}, {STABLE_VERSION_LABEL}={_quote(stable_version)}"
    offset = format_offset(plan.range_seconds)
    since = _counted_once(f"{PAIRED_FEEDBACK}{{{selector}}}", offset, f"{POD_IDENTITY}, {OUTCOME_LABEL}")
    return f"sum by ({OUTCOME_LABEL}) ({since})"


def _selector(target: Target) -> str:
    return (
        f"namespace={_quote(target.namespace)}, model={_quote(target.name)}, version={_quote(target.version)}"
    )


def _counted_once(series: str, offset: str, identity: str) -> str:
    """Per `identity`, the increase of `series` over the range `offset`, never counted twice."""
    now = f"max by ({identity}) ({series})"
    before = f"max by ({identity}) ({series} offset {offset})"
    lowest = f"max by ({identity}) (min_over_time({series}[{offset}]))"
    return f"({now} - {before}) >= 0 or ({now} - {lowest})"


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
