"""Why the built-in query found no series: every combination of what Prometheus can say
(vigil_operator.diagnosis), the query that asks it, and the parsing of its answer."""

from __future__ import annotations

import itertools
import re

import pytest

from vigil_operator.diagnosis import PREFIX, NoSeriesCause, SeriesEvidence, diagnose
from vigil_operator.prometheus import NoSeries, PrometheusError, accuracy_measurement, series_evidence
from vigil_operator.queries import Target, no_series_query, object_pods_regex

TARGET = Target(name="iris", namespace="ml", version="v2")


def expected_cause(evidence: SeriesEvidence) -> NoSeriesCause:
    """The rule as the docs state it: series without `namespace` first; then no target; then all
    targets down; otherwise (some target up) the version's counters are simply not there yet."""
    if evidence.unlabelled_series:
        return NoSeriesCause.NO_NAMESPACE_LABEL
    if not evidence.targets_up and not evidence.targets_down:
        return NoSeriesCause.NO_TARGET
    if not evidence.targets_up:
        return NoSeriesCause.TARGETS_DOWN
    return NoSeriesCause.NO_LABELS_YET


EVERY_EVIDENCE = [
    SeriesEvidence(targets_up=up, targets_down=down, unlabelled_series=unlabelled)
    for up, down, unlabelled in itertools.product((0, 1, 3), (0, 1, 2), (0, 1, 4))
]


@pytest.mark.parametrize("evidence", EVERY_EVIDENCE, ids=str)
def test_every_combination_of_evidence_has_one_cause(evidence: SeriesEvidence) -> None:
    diagnosis = diagnose(TARGET, evidence)
    assert diagnosis.cause is expected_cause(evidence)
    assert diagnosis.message.startswith(PREFIX + ": ")


def test_every_cause_is_reachable() -> None:
    assert {diagnose(TARGET, e).cause for e in EVERY_EVIDENCE} == set(NoSeriesCause)


# What each message must say: the cause in words a person recognises, and the fix.
SAYS = {
    NoSeriesCause.NO_NAMESPACE_LABEL: (
        "without a namespace label",
        "__meta_kubernetes_namespace to namespace",
    ),
    NoSeriesCause.NO_TARGET: (
        "scrapes no pod of ml/iris",
        "modelServers.podMonitor.enabled=true",
        "release=",
    ),
    NoSeriesCause.TARGETS_DOWN: ("2 targets", "every scrape fails (up == 0)", "Targets page"),
    NoSeriesCause.NO_LABELS_YET: ("1 target up", "no labelled predictions yet", "/v2/models/iris/feedback"),
}
ONE_OF_EACH = {
    NoSeriesCause.NO_NAMESPACE_LABEL: SeriesEvidence(targets_up=1, targets_down=0, unlabelled_series=2),
    NoSeriesCause.NO_TARGET: SeriesEvidence(targets_up=0, targets_down=0, unlabelled_series=0),
    NoSeriesCause.TARGETS_DOWN: SeriesEvidence(targets_up=0, targets_down=2, unlabelled_series=0),
    NoSeriesCause.NO_LABELS_YET: SeriesEvidence(targets_up=1, targets_down=1, unlabelled_series=0),
}


@pytest.mark.parametrize("cause", list(NoSeriesCause))
def test_each_message_names_the_cause_and_the_fix(cause: NoSeriesCause) -> None:
    diagnosis = diagnose(TARGET, ONE_OF_EACH[cause])
    assert diagnosis.cause is cause
    for words in SAYS[cause]:
        assert words in diagnosis.message


@pytest.mark.parametrize("cause", list(NoSeriesCause))
def test_messages_fit_a_check_reason_even_for_the_longest_names(cause: NoSeriesCause) -> None:
    """The check's reason ("metrics unavailable: " + message) is cut at 512 characters: the fix,
    at the end, must survive names of 63 characters."""
    longest = Target(name="i" * 63, namespace="n" * 63, version="v" * 63)
    assert len("metrics unavailable: " + diagnose(longest, ONE_OF_EACH[cause]).message) <= 512


def test_the_query_counts_the_objects_pods_up_and_down_and_the_series_without_namespace() -> None:
    assert no_series_query(TARGET) == (
        'label_replace(count(up{namespace="ml", pod=~"iris-[a-z0-9]+-[a-z0-9]+"} == 1), '
        '"vigil_series", "up", "", "") or '
        'label_replace(count(up{namespace="ml", pod=~"iris-[a-z0-9]+-[a-z0-9]+"} == 0), '
        '"vigil_series", "down", "", "") or '
        'label_replace(count(vigil_model_feedback_total{namespace="", model="iris", version="v2"}), '
        '"vigil_series", "unlabelled", "", "")'
    )


@pytest.mark.parametrize(
    ("pod", "matches"),
    [
        ("iris-6c9f7b5d4-x2x7q", True),
        ("iris-eu-6c9f7b5d4-x2x7q", False),  # another object's pods
        ("iris-6c9f7b5d4", False),
        ("prod-iris-6c9f7b5d4-x2x7q", False),
    ],
)
def test_the_pod_pattern_matches_only_the_objects_own_pods(pod: str, matches: bool) -> None:
    # PromQL anchors regular expressions at both ends, as fullmatch does.
    assert (re.fullmatch(object_pods_regex("iris"), pod) is not None) is matches


def test_a_dot_in_the_name_is_literal() -> None:
    assert re.fullmatch(object_pods_regex("iris.v1"), "irisxv1-6c9f7b5d4-x2x7q") is None
    assert re.fullmatch(object_pods_regex("iris.v1"), "iris.v1-6c9f7b5d4-x2x7q") is not None


def _vector(**counts: str) -> dict:
    return {
        "resultType": "vector",
        "result": [{"metric": {"vigil_series": k}, "value": [0, v]} for k, v in counts.items()],
    }


def test_the_answer_gives_the_counts_and_a_missing_count_is_zero() -> None:
    assert series_evidence(_vector(up="2", unlabelled="1")) == SeriesEvidence(2, 0, 1)
    assert series_evidence(_vector()) == SeriesEvidence(0, 0, 0)


def test_an_empty_builtin_answer_is_the_no_series_error_the_adapter_explains() -> None:
    with pytest.raises(NoSeries) as raised:
        accuracy_measurement(_vector())
    assert isinstance(raised.value, PrometheusError)
