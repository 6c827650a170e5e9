"""Batched checks (vigil_operator.batching): many objects' built-in queries as one, split back.

The property that matters: an object never gets another's series, and an object whose series are
missing gets no data (an error verdict), never a count of zero.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil_operator.batching import (
    BatchQuery,
    CheckRequest,
    batch_query,
    batchable,
    split_answer,
    tick_ceil,
    tick_floor,
    wake_delay,
)
from vigil_operator.prometheus import NoSeries, accuracy_measurement
from vigil_operator.queries import GROUP_LABEL, SERIES_LABEL, Target

IRIS = Target(name="iris", namespace="ml", version="v2")
WINE = Target(name="wine", namespace="ml", version="v1")
DIGITS = Target(name="digits", namespace="vision", version="2024.1")


def series(target: Target, tag: str, kind: str, value: float, **extra: str) -> dict[str, Any]:
    """One series of a batched answer as Prometheus returns it."""
    labels = {"namespace": target.namespace, "model": target.name, "version": target.version}
    metric = {**labels, SERIES_LABEL: kind, GROUP_LABEL: tag, **extra}
    return {"metric": metric, "value": [1700000000.0, repr(value)]}


def vector(*items: dict[str, Any]) -> dict[str, Any]:
    return {"resultType": "vector", "result": list(items)}


def test_objects_over_the_same_range_share_one_group_and_others_get_their_own() -> None:
    promoted = [CheckRequest(IRIS, 30.0), CheckRequest(WINE, 30.0)]
    analysing = CheckRequest(DIGITS, 95.5)
    batch = batch_query([*promoted, analysing])
    assert len(batch.groups) == 2
    assert batch.group_of[promoted[0]] == batch.group_of[promoted[1]] != batch.group_of[analysing]
    assert batch.groups[0].targets == (IRIS, WINE)
    assert batch.query.count("offset 30s") == 2
    assert batch.query.count("offset 95500ms") == 2


def test_ranges_that_render_alike_share_a_group() -> None:
    """Grouped as rendered (to the millisecond): the same range as the single query would read."""
    batch = batch_query([CheckRequest(IRIS, 30.0001), CheckRequest(WINE, 30.0004)])
    assert len(batch.groups) == 1


def test_the_batched_query_sums_per_target_and_keeps_the_double_scrape_dedup() -> None:
    query = batch_query([CheckRequest(IRIS, 30.0), CheckRequest(WINE, 30.0)]).query
    assert query.count("sum by (namespace, model, version)") == 2
    # Per process (whichever jobs scraped it), and per model: one exporter may serve many.
    assert query.count("max by (namespace, pod, instance, model, version)") == 8
    assert "increase(" not in query
    assert "rate(" not in query
    assert 'namespace=~"ml"' in query
    assert 'model=~"iris|wine"' in query
    assert 'version=~"v1|v2"' in query


def test_label_values_are_matched_literally() -> None:
    """A dot in a version matches a dot only (PromQL regexes are anchored, so no prefix matches)."""
    query = batch_query([CheckRequest(DIGITS, 30.0)]).query
    assert 'version=~"2024\\\\.1"' in query
    assert 'namespace=~"vision"' in query


@pytest.mark.parametrize(
    "target",
    [
        Target("iris", "ml", 'v2"} or vector(1) #'),
        Target("iris", "ml", "v2|v3"),
        Target("iris", "ml", ""),
        Target("iris", "ml", "v2\n"),
        Target("iris", "ml", "vé"),
        Target("ir(is", "ml", "v2"),
    ],
)
def test_a_target_with_unusual_labels_is_never_put_into_a_shared_selector(target: Target) -> None:
    assert not batchable(target)
    with pytest.raises(ValueError, match="cannot share a selector"):
        batch_query([CheckRequest(IRIS, 30.0), CheckRequest(target, 30.0)])


def test_plain_targets_are_batchable() -> None:
    assert all(batchable(target) for target in (IRIS, WINE, DIGITS, Target("a.b-c", "team-1", "V_2")))


def test_an_empty_batch_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        batch_query([])


def test_each_object_gets_its_counts_in_the_shape_of_its_single_query() -> None:
    iris, wine = CheckRequest(IRIS, 30.0), CheckRequest(WINE, 30.0)
    batch = batch_query([iris, wine])
    tag = batch.group_of[iris]
    answer = vector(
        series(IRIS, tag, "correct", 90.0),
        series(IRIS, tag, "total", 100.0),
        series(WINE, tag, "correct", 40.0),
        series(WINE, tag, "total", 50.0),
    )
    shares = split_answer(batch, answer)
    assert accuracy_measurement(shares[iris]).samples == 100.0
    assert accuracy_measurement(shares[iris]).correct == 90.0
    assert accuracy_measurement(shares[wine]).value == 0.8


def test_a_missing_series_is_no_data_for_that_object_not_zero() -> None:
    iris, wine = CheckRequest(IRIS, 30.0), CheckRequest(WINE, 30.0)
    batch = batch_query([iris, wine])
    tag = batch.group_of[iris]
    shares = split_answer(batch, vector(series(IRIS, tag, "total", 10.0)))
    assert shares[wine] == vector()
    with pytest.raises(NoSeries):
        accuracy_measurement(shares[wine])
    assert accuracy_measurement(shares[iris]).samples == 10.0


def test_a_series_of_another_group_is_not_this_objects() -> None:
    """The same object's labels under another range's tag (a regex of another group matched it)."""
    iris, digits = CheckRequest(IRIS, 30.0), CheckRequest(DIGITS, 95.0)
    batch = batch_query([iris, digits])
    other = batch.group_of[digits]
    shares = split_answer(batch, vector(series(IRIS, other, "total", 5.0)))
    assert shares[iris] == vector()


@pytest.mark.parametrize(
    "answer",
    [None, [], {"resultType": "matrix", "result": []}, {"resultType": "vector", "result": "x"}],
)
def test_an_answer_that_is_not_a_vector_is_an_error_for_the_whole_batch(answer: Any) -> None:
    with pytest.raises(ValueError, match="expected a vector"):
        split_answer(batch_query([CheckRequest(IRIS, 30.0)]), answer)


def test_malformed_series_are_skipped() -> None:
    iris = CheckRequest(IRIS, 30.0)
    batch = batch_query([iris])
    tag = batch.group_of[iris]
    good = series(IRIS, tag, "total", 3.0)
    bad = [
        "not a series",
        {"metric": "not labels"},
        {"metric": {GROUP_LABEL: tag, "namespace": "ml", "model": "iris", "version": "v2"}},  # no kind
        {"metric": {SERIES_LABEL: "total", GROUP_LABEL: tag, "model": "iris", "version": "v2"}},
        {"metric": {SERIES_LABEL: 7, GROUP_LABEL: tag, "namespace": "ml", "model": "iris", "version": "v2"}},
    ]
    assert split_answer(batch, vector(*bad, good))[iris] == vector(
        {"metric": {SERIES_LABEL: "total"}, "value": good["value"]}
    )


# Objects with unique (namespace, name), as Kubernetes guarantees; versions and ranges from small
# sets, so that regexes of a group match other objects' series and groups collide often.
names = st.sampled_from(["iris", "wine", "digits", "iris-eu", "a.b"])
namespaces = st.sampled_from(["ml", "vision", "team-1"])
versions = st.sampled_from(["v1", "v2", "2024.1"])
ranges = st.sampled_from([30.0, 60.0, 95.25])
objects = st.dictionaries(st.tuples(namespaces, names), st.tuples(versions, ranges), min_size=1, max_size=12)


@st.composite
def batches_and_answers(draw: st.DrawFn) -> tuple[BatchQuery, dict[CheckRequest, list[Any]], dict[str, Any]]:
    """A batch, what Prometheus holds for some of its members, and an answer with noise around it."""
    requests = [
        CheckRequest(Target(name=name, namespace=namespace, version=version), range_seconds)
        for (namespace, name), (version, range_seconds) in draw(objects).items()
    ]
    batch = batch_query(requests)
    tags = [group.tag for group in batch.groups]
    owned: dict[CheckRequest, list[Any]] = {}
    items: list[dict[str, Any]] = []
    for request in requests:
        if draw(st.booleans()):  # Prometheus has this object's series
            tag = batch.group_of[request]
            for kind in draw(st.sampled_from([("total",), ("correct", "total")])):
                value = draw(st.integers(0, 1000))
                item = series(request.target, tag, kind, float(value))
                owned.setdefault(request, []).append(item["value"])
                items.append(item)
        # Noise: this object's labels under another group's tag, and other versions of it.
        for tag in draw(st.lists(st.sampled_from(tags), max_size=2)):
            if tag != batch.group_of[request]:
                items.append(series(request.target, tag, "total", -1.0))
        other = Target(request.target.name, request.target.namespace, request.target.version + "x")
        items.append(series(other, batch.group_of[request], "total", -2.0))
    order = draw(st.permutations(range(len(items))))
    return batch, owned, vector(*(items[i] for i in order))


@settings(deadline=None)  # a shared, busy machine: no timing in unit tests
@given(batches_and_answers())
def test_split_never_gives_an_object_another_objects_series(
    case: tuple[BatchQuery, dict[CheckRequest, list[Any]], dict[str, Any]],
) -> None:
    batch, owned, answer = case
    shares = split_answer(batch, answer)
    assert shares.keys() == batch.group_of.keys()
    for request, share in shares.items():
        assert sorted(str(item["value"]) for item in share["result"]) == sorted(
            str(value) for value in owned.get(request, [])
        )
        if request not in owned:
            with pytest.raises(NoSeries):
                accuracy_measurement(share)
        else:
            assert accuracy_measurement(share).samples is not None


@settings(deadline=None)  # a shared, busy machine: no timing in unit tests
@given(objects)
def test_every_request_is_in_exactly_one_group_of_its_own_range(
    drawn: dict[tuple[str, str], tuple[str, float]],
) -> None:
    requests = [CheckRequest(Target(n, ns, v), r) for (ns, n), (v, r) in drawn.items()]
    batch = batch_query(requests)
    by_tag = {group.tag: group for group in batch.groups}
    assert len(by_tag) == len({r for _, r in drawn.values()})
    for request in requests:
        group = by_tag[batch.group_of[request]]
        assert request.target in group.targets
        assert group.range_seconds == request.range_seconds


moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC))
intervals = st.sampled_from([1.0, 2.0, 7.5, 30.0, 60.0, 3600.0])


@settings(deadline=None)  # a shared, busy machine: no timing in unit tests
@given(moments, intervals)
def test_ticks_are_a_grid_of_the_interval(now: datetime, interval: float) -> None:
    floor, ceil = tick_floor(now, interval), tick_ceil(now, interval)
    assert floor <= now < floor + timedelta(seconds=interval)
    assert now <= ceil < now + timedelta(seconds=interval)
    assert tick_floor(floor, interval) == floor == tick_ceil(floor, interval)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert (floor - epoch) / timedelta(milliseconds=1) % round(interval * 1000) == 0


def test_objects_with_a_multiple_of_an_interval_meet_on_its_ticks() -> None:
    now = datetime(2026, 11, 30, 15, 0, 0, tzinfo=UTC)
    assert tick_floor(now, 60.0) == tick_floor(now, 30.0) == now


@settings(deadline=None)  # a shared, busy machine: no timing in unit tests
@given(moments, intervals)
def test_a_wake_up_for_the_next_check_moves_to_its_tick(now: datetime, interval: float) -> None:
    due = now + timedelta(seconds=interval / 3)  # due between two ticks
    delay = wake_delay(now, due, due, interval)
    assert now + timedelta(seconds=delay) >= due
    woken = now + timedelta(seconds=delay)
    assert abs((woken - tick_ceil(due, interval)).total_seconds()) < 1e-5


def test_a_wake_up_for_something_else_stays() -> None:
    now = datetime(2026, 11, 30, 15, 0, 1, tzinfo=UTC)
    due = now + timedelta(seconds=20)
    assert wake_delay(now, now + timedelta(seconds=2), due, 30.0) == 2.0
    assert wake_delay(now, now + timedelta(seconds=2), None, 30.0) == 2.0


def test_a_check_due_on_a_past_tick_wakes_at_once() -> None:
    now = datetime(2026, 11, 30, 15, 0, 31, tzinfo=UTC)
    due = datetime(2026, 11, 30, 15, 0, 30, tzinfo=UTC)
    assert wake_delay(now, now + timedelta(seconds=0.1), due, 30.0) == pytest.approx(0.1)


@pytest.mark.parametrize("interval", [0.0, -1.0, float("nan"), float("inf")])
def test_a_grid_needs_a_positive_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        tick_floor(datetime.now(UTC), interval)
