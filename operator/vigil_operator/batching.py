"""Batched checks: many objects' built-in queries as one PromQL query, and its answer split back. Pure.

Objects that share a Prometheus (the same URL, credentials and limits) and whose checks fall on the
same tick send one query instead of one each (`batcher.Batcher` does the I/O). Checks fall on a grid
of their interval (`tick_floor`): every promoted object then reads the same range (from the
previous tick to this one), so a whole Prometheus' worth of them is one group of one query. An
object still under analysis reads since its version started serving: a group of its own, in the
same query. `split_answer` gives each object exactly the series of its own group, namespace, model
and version, in the shape of `queries.builtin_accuracy_query`'s answer, so the code that reads a
single object's answer (and explains an empty one, `diagnosis`) reads it unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil_operator.queries import (
    GROUP_LABEL,
    SERIES_LABEL,
    TARGET_LABELS,
    Target,
    format_offset,
    grouped_accuracy_query,
)

# What the CRD lets through as a namespace, name and version (label values); anything else is
# measured on its own, so one odd object can never break the query of every other.
_LABEL_SAFE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A delay computed as seconds from a due time loses a microsecond or so in the float.
_CLOCK_SLACK = timedelta(milliseconds=1)


@dataclass(frozen=True)
class CheckRequest:
    """One object's due check: whose series, over which range (seconds up to the batch's time)."""

    target: Target
    range_seconds: float


@dataclass(frozen=True)
class Group:
    """Requests over the same range: one sub-expression of the batched query."""

    tag: str
    range_seconds: float
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class BatchQuery:
    """The query to send, and which group each request's series come back in."""

    query: str
    groups: tuple[Group, ...]
    group_of: dict[CheckRequest, str]


def batchable(target: Target) -> bool:
    """Whether a target's labels are plain enough to be matched inside a shared selector."""
    return all(_LABEL_SAFE.fullmatch(value) for value in (target.namespace, target.name, target.version))


def batch_query(requests: Sequence[CheckRequest]) -> BatchQuery:
    """One query for `requests` (all batchable, at least one): a group per distinct range.

    Ranges are grouped as they are rendered (`queries.format_offset`, to the millisecond), so two
    requests share a group exactly when their single queries would read the same range.
    """
    if not requests:
        raise ValueError("a batch needs at least one request")
    unsafe = [r.target for r in requests if not batchable(r.target)]
    if unsafe:
        raise ValueError(f"targets with labels that cannot share a selector: {unsafe}")
    by_offset: dict[str, list[CheckRequest]] = {}
    for request in requests:
        by_offset.setdefault(format_offset(request.range_seconds), []).append(request)
    groups, group_of = [], {}
    for index, members in enumerate(by_offset.values()):
        tag = str(index)
        targets = tuple(dict.fromkeys(member.target for member in members))
        groups.append(Group(tag, members[0].range_seconds, targets))
        group_of.update({member: tag for member in members})
    query = " or ".join(
        grouped_accuracy_query(group.tag, group.targets, group.range_seconds) for group in groups
    )
    return BatchQuery(query=query, groups=tuple(groups), group_of=group_of)


def split_answer(batch: BatchQuery, data: Any) -> dict[CheckRequest, dict[str, Any]]:
    """Each request's share of the batch's answer: a vector of its own series only.

    A series counts for a request when its group tag, namespace, model and version are the
    request's, and nothing else: a series of another object (or of another group) is never
    given to it. A request whose series are missing gets an empty vector, which reads as no
    data (an error verdict), never as zero. A malformed item is skipped; a malformed answer
    raises ValueError (the shell makes it every member's error).
    """
    if (
        not isinstance(data, dict)
        or data.get("resultType") != "vector"
        or not isinstance(data.get("result"), list)
    ):
        kind = data.get("resultType") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"expected a vector, got a {kind}")
    found: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for item in data["result"]:
        metric = item.get("metric") if isinstance(item, dict) else None
        if not isinstance(metric, dict) or not isinstance(metric.get(SERIES_LABEL), str):
            continue
        key = tuple(metric.get(label) for label in (GROUP_LABEL, *TARGET_LABELS))
        if not all(isinstance(value, str) for value in key):
            continue
        found.setdefault(key, []).append(
            {"metric": {SERIES_LABEL: metric[SERIES_LABEL]}, "value": item.get("value")}
        )
    return {
        request: {
            "resultType": "vector",
            "result": list(
                found.get((tag, request.target.namespace, request.target.name, request.target.version), [])
            ),
        }
        for request, tag in batch.group_of.items()
    }


def tick_floor(now: datetime, interval_seconds: float) -> datetime:
    """The latest tick of the interval's grid at or before `now`, to the millisecond.

    The grid starts at the Unix epoch, so every object with the same interval (on any replica, after
    any restart) has the same ticks, and one with a multiple of it meets them on its own ticks.
    """
    step = _step_millis(interval_seconds)
    millis = math.floor((now - _EPOCH) / timedelta(milliseconds=1))
    return _EPOCH + timedelta(milliseconds=millis - millis % step)


def tick_ceil(moment: datetime, interval_seconds: float) -> datetime:
    """The earliest tick at or after `moment`."""
    floor = tick_floor(moment, interval_seconds)
    return floor if floor == moment else floor + timedelta(milliseconds=_step_millis(interval_seconds))


def wake_delay(
    now: datetime, wake_at: datetime, next_check: datetime | None, interval_seconds: float
) -> float:
    """Seconds until the next round, when checks fall on ticks.

    A wake-up for the next check (`wake_at` not before it) moves to that check's tick, so the
    object joins the tick's batch instead of waking before it and finding the check not due on
    the grid; a wake-up for anything else (a rollout to follow) stays.
    """
    if next_check is not None and wake_at >= next_check - _CLOCK_SLACK:
        wake_at = max(wake_at, tick_ceil(next_check, interval_seconds))
    return max(0.0, (wake_at - now).total_seconds())


def _step_millis(interval_seconds: float) -> int:
    if not (math.isfinite(interval_seconds) and interval_seconds > 0):
        raise ValueError(f"interval must be a positive number of seconds, got {interval_seconds}")
    return max(1, round(interval_seconds * 1000))
