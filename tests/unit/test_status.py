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
)

from vigil_operator.analysis import Streaks, Verdict
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

CONDITION_TYPES = ["Ready", "Progressing", "Degraded", "RolledBack"]


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
    assert status["message"].startswith("analysing v2: accuracy 0.850 < threshold 0.90")
    assert [c["type"] for c in status["conditions"]] == CONDITION_TYPES
    assert all(c["observedGeneration"] == 7 for c in status["conditions"])


def test_status_after_a_rollback_names_the_failed_version_and_how_to_retry() -> None:
    scenario = v2_rolled_back()
    status = status_of(scenario.facts, ANALYSIS, V2, generation=2, now=scenario.now)
    assert (status["phase"], status["currentVersion"], status["failedVersion"]) == ("RolledBack", "v1", "v2")
    assert status["rollbackReason"] == "AnalysisFailed"
    assert status["message"] == (
        "v2 was rolled back (AnalysisFailed); v1 serves. "
        "Change spec.version or annotate vigil.dev/action=retry to try v2 again"
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
    }


def test_conditions_while_a_release_is_analysed() -> None:
    facts = Facts(current=V2, stable=V1, serving_since=T0)
    assert shown(facts) == {
        "Ready": (False, "Analyzing"),
        "Progressing": (True, "Analyzing"),
        "Degraded": (False, "AsExpected"),
        "RolledBack": (False, "NotRolledBack"),
    }
    assert conditions(facts)["Progressing"].message == "v2: Analyzing"


def test_ready_once_the_spec_version_is_promoted_and_serving() -> None:
    facts = v1_stable().facts
    assert shown(facts, desired=V1) == {
        "Ready": (True, "Promoted"),
        "Progressing": (False, "Idle"),
        "Degraded": (False, "AsExpected"),
        "RolledBack": (False, "NotRolledBack"),
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
    }


def test_a_reason_to_degrade_wins_over_metrics_unavailable() -> None:
    facts = Facts(
        current=V1,
        serving_since=T0,
        degraded_reason=Reason.RESTORED_RELEASE_FAILED,
        streaks=Streaks(errors=ANALYSIS.error_limit),
    )
    assert shown(facts)["Degraded"] == (True, "RestoredReleaseFailed")


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
