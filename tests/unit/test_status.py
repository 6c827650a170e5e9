"""The ModelDeployment status: what is stored, read back, and shown as conditions (vigil_operator.status)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unit.scenario import (
    ANALYSIS,
    T0,
    V1,
    V2,
    erroring,
    failing,
    first_version_analysing,
    v1_stable,
    v2_analysing,
    v2_rolled_back,
    v2_stable,
)

from vigil_operator.analysis import Streaks, Verdict, WatchState
from vigil_operator.decisions import CheckRecord, Facts, HistoryEntry, Phase, Reason, phase_of
from vigil_operator.releases import Release
from vigil_operator.status import (
    Condition,
    conditions_of,
    facts_from_status,
    from_timestamp,
    message_of,
    status_of,
    to_timestamp,
)

CONDITION_TYPES = ["Ready", "Progressing", "Degraded", "RolledBack", "Reconciling", "Stalled"]


def conditions(facts: Facts, desired: Release = V2) -> dict[str, Condition]:
    return {c.type: c for c in conditions_of(facts, ANALYSIS, desired)}


def shown(facts: Facts, desired: Release = V2) -> dict[str, tuple[bool, str]]:
    return {kind: (c.status, c.reason) for kind, c in conditions(facts, desired).items()}


# --- timestamps ------------------------------------------------------------------------------


def test_timestamps_are_utc_with_milliseconds_and_a_z() -> None:
    assert to_timestamp(datetime(2025, 3, 1, 12, 0, 5, 123456, tzinfo=UTC)) == "2025-03-01T12:00:05.123Z"
    paris = timezone(timedelta(hours=1))
    assert to_timestamp(datetime(2025, 3, 1, 13, 0, tzinfo=paris)) == "2025-03-01T12:00:00.000Z"
    assert to_timestamp(None) is None


def test_timestamps_read_back_as_aware_datetimes() -> None:
    assert from_timestamp("2025-03-01T12:00:05.123Z") == datetime(2025, 3, 1, 12, 0, 5, 123000, tzinfo=UTC)
    assert from_timestamp("2025-03-01T12:00:05Z") == datetime(2025, 3, 1, 12, 0, 5, tzinfo=UTC)
    assert from_timestamp(None) is None
    assert from_timestamp("") is None


# --- facts <-> status -------------------------------------------------------------------------

moments = st.integers(min_value=0, max_value=10**10).map(lambda ms: T0 + timedelta(milliseconds=ms))
releases = st.builds(
    Release,
    version=st.sampled_from(["v1", "v2", "2025.03.01-rc.1"]),
    uri=st.sampled_from(["http://models.ml.svc/iris/model.joblib", "file:///models/iris.joblib"]),
    image=st.sampled_from(["vigil-model-server:0.1.0", "ghcr.io/vigil/vigil-model-server@sha256:abc"]),
    sha256=st.none() | st.just("a" * 64),
)
numbers = st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False)
checks = st.builds(
    CheckRecord,
    time=moments,
    verdict=st.sampled_from(Verdict),
    value=numbers,
    samples=numbers,
    lower=numbers,
    upper=numbers,
    query=st.text(max_size=40),
    reason=st.text(max_size=40),
)
reasons = st.none() | st.sampled_from(Reason)
all_facts = st.builds(
    Facts,
    current=st.none() | releases,
    stable=st.none() | releases,
    failed_version=st.none() | st.sampled_from(["v2", "v3"]),
    rollout_started_at=st.none() | moments,
    serving_since=st.none() | moments,
    rollback_reason=reasons,
    degraded_reason=reasons,
    streaks=st.builds(
        Streaks,
        failures=st.integers(0, 20),
        passes=st.integers(0, 20),
        errors=st.integers(0, 20),
    ),
    last_check=st.none() | checks,
    history=st.lists(
        st.builds(
            HistoryEntry,
            release=releases,
            outcome=st.sampled_from(["promoted", "failed", "superseded"]),
            at=moments,
            reason=st.text(max_size=30),
        ),
        max_size=4,
    ).map(tuple),
    apply_error=st.none() | st.just('Deployment.apps "iris" is invalid'),
    refused_specs=st.lists(
        st.sampled_from(["0123456789abcdef", "fedcba9876543210"]), max_size=2, unique=True
    ).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(facts=all_facts)
def test_facts_survive_the_stored_status_unchanged(facts: Facts) -> None:
    status = status_of(facts, ANALYSIS, V2, generation=3, now=T0)
    stored = json.loads(json.dumps(status))  # what the API server keeps is JSON
    assert facts_from_status(stored) == facts


@pytest.mark.parametrize("status", [None, {}, {"observedGeneration": 2, "message": "spec is invalid"}])
def test_an_empty_or_foreign_status_gives_the_facts_of_a_new_object(status: dict[str, Any] | None) -> None:
    assert facts_from_status(status) == Facts()


def test_unreadable_parts_of_a_stored_status_are_skipped() -> None:
    facts = facts_from_status(
        {
            "currentRelease": {"version": "v1", "uri": "file:///m.joblib", "image": "img"},
            "stableRelease": {"uri": "no version, so no release"},
            "lastCheck": {"verdict": "pass"},  # no time: not a check
            "history": [{"outcome": "promoted"}, {"version": "v0", "outcome": "promoted"}],
            "streaks": None,
        }
    )
    assert facts.current == Release("v1", "file:///m.joblib", "img")
    assert facts.stable is None
    assert facts.last_check is None
    assert [entry.release.version for entry in facts.history] == ["v0"]
    assert facts.streaks == Streaks()


# --- the status a user sees ---------------------------------------------------------------------


def test_status_shows_versions_phase_and_the_last_check() -> None:
    scenario = v2_analysing()
    scenario.check(failing(value=0.85))
    status = status_of(scenario.facts, ANALYSIS, V2, generation=7, now=scenario.now)
    assert status["observedGeneration"] == 7
    assert status["phase"] == "Analyzing"
    assert (status["currentVersion"], status["stableVersion"], status["failedVersion"]) == ("v2", "v1", None)
    assert status["currentRelease"] == V2.to_dict()
    assert status["lastCheck"]["verdict"] == "fail"
    assert status["lastCheck"]["value"] == 0.85
    assert status["lastCheck"]["query"].startswith("label_replace(")
    assert status["lastCheck"]["time"] == to_timestamp(scenario.now)
    assert status["message"].startswith(
        "analysing v2: accuracy 0.850 (95% interval 0.816 to 0.879) < threshold"
    )
    assert status["watch"] == {  # not promoted yet: no evidence, labels counted up to this check
        "statistic": 0.0,
        "samples": 0,
        "seconds": 0.0,
        "countedUntil": to_timestamp(scenario.now),
    }
    assert [c["type"] for c in status["conditions"]] == CONDITION_TYPES
    assert all(c["observedGeneration"] == 7 for c in status["conditions"])


def test_status_after_a_rollback_names_the_failed_version_and_how_to_retry() -> None:
    scenario = v2_rolled_back()
    status = status_of(scenario.facts, ANALYSIS, V2, generation=2, now=scenario.now)
    assert (status["phase"], status["currentVersion"], status["failedVersion"]) == ("RolledBack", "v1", "v2")
    assert status["rollbackReason"] == "AnalysisFailed"
    assert status["message"] == (
        "v2 was rolled back (AnalysisFailed); v1 serves. "
        "Change spec.version, or run kubectl vigil retry, to try v2 again"
    )
    assert [(h["version"], h["outcome"]) for h in status["history"]] == [("v2", "failed"), ("v1", "promoted")]


@pytest.mark.parametrize(
    ("facts", "phase", "message"),
    [
        (Facts(current=V1), Phase.PROGRESSING, "rolling out v1"),
        (
            Facts(current=V2, stable=V1, serving_since=T0),
            Phase.ANALYZING,
            "analysing v2: waiting for the first check",
        ),
        (Facts(current=V1, stable=V1, serving_since=T0), Phase.PROMOTED, "v1 is stable and serving"),
        (
            Facts(current=V1, serving_since=T0, degraded_reason=Reason.NO_STABLE_RELEASE),
            Phase.DEGRADED,
            "v1 needs attention: NoStableRelease",
        ),
    ],
)
def test_each_phase_has_one_sentence(facts: Facts, phase: Phase, message: str) -> None:
    assert phase_of(facts) is phase
    assert message_of(facts, V2) == message


# --- conditions (kstatus) ---------------------------------------------------------------------


def test_conditions_while_a_release_rolls_out() -> None:
    assert shown(Facts(current=V2, stable=V1)) == {
        "Ready": (False, "Progressing"),
        "Progressing": (True, "RolloutInProgress"),
        "Degraded": (False, "AsExpected"),
        "RolledBack": (False, "NotRolledBack"),
        "Reconciling": (True, "RolloutInProgress"),
        "Stalled": (False, "AsExpected"),
    }


def test_conditions_while_a_release_is_analysed() -> None:
    facts = Facts(current=V2, stable=V1, serving_since=T0)
    assert shown(facts) == {
        "Ready": (False, "Analyzing"),
        "Progressing": (True, "Analyzing"),
        "Degraded": (False, "AsExpected"),
        "RolledBack": (False, "NotRolledBack"),
        "Reconciling": (True, "Analyzing"),
        "Stalled": (False, "AsExpected"),
    }
    assert conditions(facts)["Progressing"].message == "v2: Analyzing"
    assert conditions(facts)["Reconciling"].message == "v2: Analyzing"


def test_ready_once_the_spec_version_is_promoted_and_serving() -> None:
    facts = v1_stable().facts
    assert shown(facts, desired=V1) == {
        "Ready": (True, "Promoted"),
        "Progressing": (False, "Idle"),
        "Degraded": (False, "AsExpected"),
        "RolledBack": (False, "NotRolledBack"),
        "Reconciling": (False, "Idle"),
        "Stalled": (False, "AsExpected"),
    }
    assert conditions(facts, desired=V1)["Ready"].message == "v1 is stable and serving"


def test_not_ready_when_the_spec_asks_for_another_version_than_the_stable_one() -> None:
    assert conditions(v1_stable().facts, desired=V2)["Ready"].status is False


def test_conditions_after_a_rollback() -> None:
    facts = v2_rolled_back().facts
    assert shown(facts) == {
        "Ready": (False, "RolledBack"),
        "Progressing": (False, "Idle"),
        "Degraded": (False, "AsExpected"),
        "RolledBack": (True, "AnalysisFailed"),
        "Reconciling": (False, "Stalled"),
        "Stalled": (True, "AnalysisFailed"),
    }
    assert conditions(facts)["RolledBack"].message == "v2 was rolled back to v1"


def test_conditions_when_a_person_is_needed() -> None:
    scenario = first_version_analysing()
    scenario.checks(failing(), failing(), failing())
    degraded = conditions(scenario.facts, desired=V1)["Degraded"]
    assert (degraded.status, degraded.reason) == (True, "NoStableRelease")
    assert degraded.message == "v1 needs attention: NoStableRelease"
    assert conditions(scenario.facts, desired=V1)["Ready"].status is False


def test_metrics_unavailable_is_a_degraded_condition_that_leaves_the_phase_alone() -> None:
    scenario = v1_stable()
    scenario.checks(*[erroring()] * ANALYSIS.error_limit)
    assert shown(scenario.facts, desired=V1) == {
        "Ready": (True, "Promoted"),
        "Progressing": (False, "Idle"),
        "Degraded": (True, "MetricsUnavailable"),
        "RolledBack": (False, "NotRolledBack"),
        "Reconciling": (False, "Stalled"),
        "Stalled": (True, "MetricsUnavailable"),
    }


def test_a_reason_to_degrade_wins_over_metrics_unavailable() -> None:
    facts = Facts(
        current=V1,
        serving_since=T0,
        degraded_reason=Reason.RESTORED_RELEASE_FAILED,
        streaks=Streaks(errors=ANALYSIS.error_limit),
    )
    assert shown(facts)["Degraded"] == (True, "RestoredReleaseFailed")


# --- kstatus's own conditions: Reconciling and Stalled ------------------------------------------
# kstatus reads only these for a custom kind (Reconciling=True: InProgress, Stalled=True:
# Failed, neither: Current); tests/e2e/test_kstatus.py runs kstatus itself on live objects.


def kstatus_conditions(facts: Facts, desired: Release = V2) -> tuple[tuple[bool, str], tuple[bool, str]]:
    shown_conditions = shown(facts, desired)
    return shown_conditions["Reconciling"], shown_conditions["Stalled"]


@pytest.mark.parametrize(
    ("facts", "desired", "reconciling", "stalled"),
    [
        (Facts(current=V1, rollout_started_at=T0), V1, (True, "RolloutInProgress"), (False, "AsExpected")),
        (Facts(current=V2, stable=V1, serving_since=T0), V2, (True, "Analyzing"), (False, "AsExpected")),
        (Facts(current=V1, stable=V1, serving_since=T0), V1, (False, "Idle"), (False, "AsExpected")),
        (
            # Restoring the stable release after a rollback: the operator is still at work.
            Facts(current=V1, stable=V1, failed_version="v2", rollback_reason=Reason.ANALYSIS_FAILED),
            V2,
            (True, "RolloutInProgress"),
            (False, "AsExpected"),
        ),
        (
            Facts(
                current=V1,
                stable=V1,
                serving_since=T0,
                failed_version="v2",
                rollback_reason=Reason.PROGRESS_DEADLINE_EXCEEDED,
            ),
            V2,
            (False, "Stalled"),
            (True, "ProgressDeadlineExceeded"),
        ),
        (
            Facts(current=V1, serving_since=T0, degraded_reason=Reason.NO_STABLE_RELEASE),
            V1,
            (False, "Stalled"),
            (True, "NoStableRelease"),
        ),
        (
            Facts(current=V1, stable=V1, serving_since=T0, degraded_reason=Reason.RESTORED_RELEASE_FAILED),
            V2,
            (False, "Stalled"),
            (True, "RestoredReleaseFailed"),
        ),
    ],
    ids=["rolling out", "analysing", "promoted", "restoring", "rolled back", "no stable", "restored failed"],
)
def test_reconciling_while_the_operator_works_stalled_when_a_person_must_act(
    facts: Facts, desired: Release, reconciling: tuple[bool, str], stalled: tuple[bool, str]
) -> None:
    assert kstatus_conditions(facts, desired) == (reconciling, stalled)


def test_stalled_after_a_rollback_says_what_failed_and_how_to_move_on() -> None:
    facts = Facts(
        current=V1, stable=V1, serving_since=T0, failed_version="v2", rollback_reason=Reason.ANALYSIS_FAILED
    )
    stalled = conditions(facts)["Stalled"]
    assert stalled.message == message_of(facts, V2)
    assert "v2 was rolled back (AnalysisFailed)" in stalled.message
    assert "kubectl vigil retry" in stalled.message


def test_metrics_unavailable_while_analysing_stalls_until_a_check_reads_data_again() -> None:
    analysing = Facts(current=V2, stable=V1, serving_since=T0)
    blind = replace(analysing, streaks=Streaks(errors=ANALYSIS.error_limit))
    assert kstatus_conditions(blind) == ((False, "Stalled"), (True, "MetricsUnavailable"))
    assert conditions(blind)["Stalled"].message == conditions(blind)["Degraded"].message
    assert "keeping v2" in conditions(blind)["Stalled"].message
    # Progressing keeps saying what the phase is; only kstatus's pair says a person must act.
    assert shown(blind)["Progressing"] == (True, "Analyzing")
    recovered = replace(blind, streaks=Streaks(passes=1))
    assert kstatus_conditions(recovered) == ((True, "Analyzing"), (False, "AsExpected"))


def test_a_rollback_with_no_data_stalls_on_the_degraded_reason() -> None:
    facts = Facts(
        current=V1,
        stable=V1,
        serving_since=T0,
        failed_version="v2",
        rollback_reason=Reason.ANALYSIS_FAILED,
        streaks=Streaks(errors=ANALYSIS.error_limit),
    )
    assert kstatus_conditions(facts)[1] == (True, "MetricsUnavailable")


@settings(max_examples=300, deadline=None)
@given(facts=all_facts)
def test_reconciling_and_stalled_follow_the_other_conditions(facts: Facts) -> None:
    by_type = conditions(facts)
    reconciling, stalled = by_type["Reconciling"], by_type["Stalled"]
    assert not (reconciling.status and stalled.status), "kstatus would take whichever comes first"
    assert stalled.status == (by_type["Degraded"].status or phase_of(facts) is Phase.ROLLED_BACK)
    assert reconciling.status == (by_type["Progressing"].status and not stalled.status)
    if stalled.status:
        assert stalled.reason, "a person must act: say why"
        assert stalled.message, "a person must act: say why"


# --- lastTransitionTime ---------------------------------------------------------------------


def transitions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["lastTransitionTime"] for c in status["conditions"]}


def test_a_condition_keeps_its_transition_time_while_its_status_is_unchanged() -> None:
    analysing = Facts(current=V2, stable=V1, serving_since=T0)
    first = status_of(analysing, ANALYSIS, V2, 1, T0)
    assert set(transitions(first).values()) == {to_timestamp(T0)}
    later = T0 + timedelta(minutes=5)
    failed_once = replace(analysing, streaks=Streaks(failures=1))
    second = status_of(failed_once, ANALYSIS, V2, 2, later, first["conditions"])
    assert transitions(second) == transitions(first)


def test_a_condition_that_flips_gets_a_new_transition_time_and_the_others_keep_theirs() -> None:
    rolling = Facts(current=V2, stable=V1)
    first = status_of(rolling, ANALYSIS, V2, 1, T0)
    later = T0 + timedelta(minutes=3)
    promoted = Facts(current=V2, stable=V2, serving_since=T0)
    second = status_of(promoted, ANALYSIS, V2, 1, later, first["conditions"])
    assert transitions(second) == {
        "Ready": to_timestamp(later),
        "Progressing": to_timestamp(later),
        "Degraded": to_timestamp(T0),
        "RolledBack": to_timestamp(T0),
        "Reconciling": to_timestamp(later),
        "Stalled": to_timestamp(T0),
    }
    reasons = {c["type"]: c["reason"] for c in second["conditions"]}
    assert reasons["Ready"] == "Promoted"


def test_a_reason_change_alone_is_not_a_transition() -> None:
    progressing = Facts(current=V2, stable=V1)
    first = status_of(progressing, ANALYSIS, V2, 1, T0)
    analysing = replace(progressing, serving_since=T0)
    second = status_of(analysing, ANALYSIS, V2, 1, T0 + timedelta(seconds=30), first["conditions"])
    progressing_condition = next(c for c in second["conditions"] if c["type"] == "Progressing")
    assert progressing_condition["reason"] == "Analyzing"
    assert progressing_condition["lastTransitionTime"] == to_timestamp(T0)


def test_the_status_is_plain_json() -> None:
    facts = v2_rolled_back().facts
    status = status_of(facts, ANALYSIS, V2, 1, T0)
    assert json.loads(json.dumps(status)) == status


def test_the_watch_of_a_promoted_release_round_trips_through_status() -> None:
    scenario = v2_stable()
    scenario.checks(failing(value=0.86, samples=10), failing(value=0.84, samples=10))
    status = status_of(scenario.facts, ANALYSIS, V2, generation=7, now=scenario.now)
    assert status["watch"]["samples"] == 20
    assert status["watch"]["statistic"] > 0
    assert facts_from_status(json.loads(json.dumps(status))).watch == scenario.facts.watch


@pytest.mark.parametrize(
    "stored", [{"statistic": "x"}, {"statistic": -1}, {"samples": float("nan")}, {"seconds": None}]
)
def test_an_unreadable_watch_restarts_it_instead_of_failing(stored: dict) -> None:
    assert facts_from_status({"watch": stored}).watch == WatchState()
