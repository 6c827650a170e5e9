"""The behaviour of a ModelDeployment, rule by rule, through the pure decision core.

Each test tells one sentence of the docs' behaviour section with `unit.scenario.Scenario`,
which drives `decide()` the way the operator does: observed Deployment in, target out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unit.scenario import (
    ANALYSIS,
    T0,
    V1,
    V2,
    V3,
    Scenario,
    erroring,
    failing,
    first_version_analysing,
    inconclusive,
    labelled,
    passing,
    release,
    v1_stable,
    v2_analysing,
    v2_rolled_back,
    v2_stable,
)

from vigil_operator.analysis import Measurement, PairedCounts, Streaks, Verdict, WatchState, judge
from vigil_operator.constants import HISTORY_LIMIT
from vigil_operator.decisions import (
    ROLLOUT_POLL_SECONDS,
    Action,
    Facts,
    HistoryEntry,
    Inputs,
    ObservedDeployment,
    Phase,
    QueryPlan,
    Reason,
    check_due,
    decide,
    judge_check,
    metrics_unavailable,
    phase_of,
    record_apply,
    release_id,
    watching,
)
from vigil_operator.releases import StrategySpec, StrategyType
from vigil_operator.status import conditions_of

IDLE_REQUEUE_SECONDS = 300.0

# --- a new ModelDeployment: its first version ---------------------------------------------------


def test_a_new_model_deployment_rolls_its_version_out() -> None:
    scenario = Scenario(V1)
    decision = scenario.round()
    assert decision.target == V1
    assert [(e.reason, e.message) for e in decision.events] == [
        (Reason.ROLLOUT_STARTED, "rolling out v1 (was nothing)")
    ]
    assert scenario.facts.current == V1
    assert scenario.facts.stable is None
    assert scenario.facts.rollout_started_at == T0
    assert scenario.phase is Phase.PROGRESSING
    assert decision.requeue_after == ROLLOUT_POLL_SECONDS


@pytest.mark.parametrize(
    "observed",
    [
        None,
        ObservedDeployment(release_id=None, available=True, deadline_exceeded=False),
        ObservedDeployment(release_id=release_id(V2), available=True, deadline_exceeded=False),
        ObservedDeployment(release_id=release_id(V1), available=False, deadline_exceeded=False),
    ],
    ids=["no-deployment-yet", "not-ours-to-read", "still-the-old-release", "pods-not-ready"],
)
def test_nothing_happens_until_the_deployment_serves_the_release(observed: ObservedDeployment | None) -> None:
    scenario = Scenario(V1)
    scenario.round()
    rolling = scenario.facts
    scenario.deployment = observed
    decision = scenario.wait(60)
    assert decision.target == V1
    assert decision.events == ()
    assert scenario.facts == rolling
    assert scenario.phase is Phase.PROGRESSING
    assert decision.requeue_after == ROLLOUT_POLL_SECONDS


def test_once_the_release_is_available_its_analysis_starts() -> None:
    scenario = Scenario(V1)
    scenario.round()
    decision = scenario.available()
    assert [(e.reason, e.message) for e in decision.events] == [
        (Reason.ROLLOUT_COMPLETE, "v1 is available; analysis starts")
    ]
    assert scenario.facts.serving_since == scenario.now
    assert scenario.phase is Phase.ANALYZING
    assert decision.requeue_after == ANALYSIS.interval
    assert scenario.condition("Progressing").status is True
    assert scenario.condition("Ready").status is False


def test_the_first_version_is_promoted_after_success_limit_passes_in_a_row() -> None:
    scenario = first_version_analysing()
    for passed in range(1, ANALYSIS.success_limit):
        decision = scenario.check(passing())
        assert decision.events == ()
        assert scenario.facts.streaks == Streaks(passes=passed)
        assert scenario.phase is Phase.ANALYZING
    decision = scenario.check(passing())
    assert decision.target == V1
    assert [e.reason for e in decision.events] == [Reason.PROMOTED]
    assert decision.events[0].message.startswith("v1 promoted to stable: 3 checks passed: accuracy 0.970")
    assert scenario.facts.stable == V1
    assert scenario.facts.streaks == Streaks()
    assert scenario.facts.history[0] == HistoryEntry(
        V1, "promoted", scenario.now, "3 checks passed: " + judge(passing(), ANALYSIS.criteria).reason
    )
    assert scenario.phase is Phase.PROMOTED
    assert scenario.condition("Ready").status is True
    assert scenario.condition("Progressing").status is False


def test_a_failing_check_restarts_the_count_towards_promotion() -> None:
    scenario = first_version_analysing()
    scenario.checks(passing(), passing(), failing(), passing(), passing())
    assert scenario.phase is Phase.ANALYZING
    scenario.check(passing())
    assert scenario.phase is Phase.PROMOTED


# --- a new version ------------------------------------------------------------------------------


def test_a_new_spec_version_rolls_out_while_the_stable_release_is_kept() -> None:
    scenario = v1_stable()
    decision = scenario.spec(V2)
    assert decision.target == V2
    assert [(e.reason, e.message) for e in decision.events] == [
        (Reason.ROLLOUT_STARTED, "rolling out v2 (was v1)")
    ]
    assert scenario.facts.current == V2
    assert scenario.facts.stable == V1
    assert scenario.facts.history[0].release == V1
    assert scenario.facts.history[0].outcome == "promoted"
    assert scenario.facts.streaks == Streaks()
    assert scenario.facts.last_check is None
    assert scenario.facts.serving_since is None
    assert scenario.phase is Phase.PROGRESSING
    assert scenario.condition("Ready").status is False


def test_any_change_to_the_release_is_a_rollout_even_with_the_same_version_name() -> None:
    scenario = v1_stable()
    new_image = release("v1", image="ghcr.io/vigil/vigil-model-server:0.2.0")
    decision = scenario.spec(new_image)
    assert decision.target == new_image
    assert scenario.count(Reason.ROLLOUT_STARTED) == 2


def test_a_good_new_version_is_promoted_and_becomes_ready() -> None:
    scenario = v2_analysing()
    decisions = scenario.checks(passing(), passing(), passing())
    assert [e.reason for e in decisions[-1].events] == [Reason.PROMOTED]
    assert scenario.facts.stable == V2
    assert scenario.target == V2
    assert scenario.condition("Ready").status is True
    assert [(h.release.version, h.outcome) for h in scenario.facts.history] == [
        ("v2", "promoted"),
        ("v1", "promoted"),
    ]


def test_a_version_replaced_during_its_analysis_is_remembered_as_superseded() -> None:
    scenario = v2_analysing()
    scenario.check(passing())
    decision = scenario.spec(V3)
    assert decision.target == V3
    assert scenario.facts.stable == V1
    assert (scenario.facts.history[0].release, scenario.facts.history[0].outcome) == (V2, "superseded")
    assert decision.events[0].message == "rolling out v3 (was v2)"


# --- rollback when the new version fails -------------------------------------------------------


def test_failure_limit_failing_checks_in_a_row_roll_back_to_the_stable_release() -> None:
    scenario = v2_analysing()
    scenario.checks(failing(), failing())
    assert scenario.target == V2
    decision = scenario.check(failing(value=0.812))
    assert decision.target == V1
    facts = scenario.facts
    assert (facts.current, facts.stable, facts.failed_version) == (V1, V1, "v2")
    assert facts.rollback_reason == Reason.ANALYSIS_FAILED
    assert [e.reason for e in decision.events] == [Reason.ANALYSIS_FAILED, Reason.ROLLED_BACK]
    rolled_back = scenario.only(Reason.ROLLED_BACK)
    assert rolled_back.warning
    assert rolled_back.message.startswith("rolled back from v2 to v1: v2 failed analysis: accuracy 0.812")
    assert facts.last_check is not None
    assert facts.last_check.query in rolled_back.message
    assert 'version="v2"' in rolled_back.message
    assert (facts.history[0].release, facts.history[0].outcome) == (V2, "failed")
    assert scenario.condition("Ready").status is False
    rolled_back_condition = scenario.condition("RolledBack")
    assert rolled_back_condition.status is True
    assert rolled_back_condition.reason == Reason.ANALYSIS_FAILED
    assert rolled_back_condition.message == "v2 was rolled back to v1"


def test_every_failing_check_is_an_event_with_the_value_the_count_and_the_query() -> None:
    scenario = v2_analysing()
    scenario.checks(failing(value=0.84), failing(value=0.83))
    first, second = (e for e in scenario.events if e.reason == Reason.ANALYSIS_FAILED)
    assert first.warning
    assert first.message.startswith("check failed (1/3): accuracy 0.840")
    assert second.message.startswith("check failed (2/3): accuracy 0.830")
    assert "query: " in first.message
    assert 'vigil_model_feedback_correct_total{namespace="ml", model="iris", version="v2"}' in first.message


def test_while_the_stable_release_comes_back_the_phase_is_progressing_then_rolled_back() -> None:
    scenario = v2_analysing()
    scenario.checks(failing(), failing(), failing())
    assert scenario.phase is Phase.PROGRESSING
    assert scenario.last.requeue_after == ROLLOUT_POLL_SECONDS
    decision = scenario.available()
    assert [(e.reason, e.message) for e in decision.events] == [
        (Reason.ROLLOUT_COMPLETE, "v1 is available; watching it")
    ]
    assert scenario.phase is Phase.ROLLED_BACK
    assert scenario.condition("Ready").status is False
    assert scenario.condition("Progressing").status is False
    assert scenario.condition("RolledBack").status is True
    assert scenario.condition("Degraded").status is False


def test_failures_must_come_in_a_row_a_pass_restarts_the_count() -> None:
    scenario = v2_analysing()
    scenario.checks(failing(), failing(), passing(), failing(), failing())
    assert scenario.target == V2
    assert scenario.count(Reason.ROLLED_BACK) == 0
    scenario.check(failing())
    assert scenario.target == V1
    assert scenario.count(Reason.ROLLED_BACK) == 1


def test_inconclusive_checks_neither_break_nor_extend_a_failure_streak() -> None:
    scenario = v2_analysing()
    scenario.checks(failing(), failing(), inconclusive(), inconclusive())
    assert scenario.facts.streaks.failures == 2
    assert scenario.target == V2
    scenario.check(failing())
    assert scenario.target == V1


# --- GitOps: the spec keeps naming the failed version -------------------------------------------


def test_the_failed_version_is_not_retried_while_the_spec_still_names_it() -> None:
    scenario = v2_rolled_back()
    before = scenario.count(Reason.ROLLOUT_STARTED)
    for _ in range(5):  # GitOps re-applies the same spec; time passes; checks of v1 pass
        scenario.spec(V2)
        scenario.check(passing())
    assert scenario.target == V1
    assert scenario.facts.failed_version == "v2"
    assert scenario.phase is Phase.ROLLED_BACK
    assert scenario.count(Reason.ROLLOUT_STARTED) == before
    assert scenario.count(Reason.ROLLED_BACK) == 1


def test_the_failed_version_is_matched_by_name_so_a_new_uri_under_it_needs_a_retry() -> None:
    scenario = v2_rolled_back()
    fixed = replace(V2, uri="http://models.ml.svc/iris/v2-fixed/model.joblib")
    assert scenario.spec(fixed).target == V1
    assert scenario.act(Action.RETRY).target == fixed


def test_changing_the_spec_to_another_version_rolls_it_out_and_clears_the_failed_version() -> None:
    scenario = v2_rolled_back()
    decision = scenario.spec(V3)
    assert decision.target == V3
    assert scenario.facts.failed_version is None
    assert scenario.facts.rollback_reason is None
    assert scenario.facts.stable == V1
    assert scenario.condition("RolledBack").status is False
    scenario.available()
    scenario.checks(passing(), passing(), passing())
    assert scenario.facts.stable == V3
    assert scenario.condition("Ready").status is True


def test_reverting_the_spec_to_the_restored_version_settles_the_rollback() -> None:
    scenario = v2_rolled_back()
    decision = scenario.spec(V1)  # git reverted to v1, which serves already
    assert decision.target == V1
    assert scenario.count(Reason.ROLLOUT_STARTED) == 2  # v1 and v2: reverting the spec starts nothing
    assert scenario.facts.failed_version is None
    assert scenario.phase is Phase.PROMOTED
    assert scenario.condition("Ready").status is True
    assert scenario.condition("RolledBack").status is False
    scenario.spec(V2)  # the spec names v2 again: a change of spec, so v2 is tried again
    assert scenario.target == V2


# --- manual actions (the vigil.dev/action annotation) -------------------------------------------


def test_retry_rolls_the_failed_version_out_again() -> None:
    scenario = v2_rolled_back()
    decision = scenario.act(Action.RETRY)
    assert decision.target == V2
    assert [(e.reason, e.message) for e in decision.events] == [
        (Reason.RETRY_REQUESTED, "retry requested: rolling v2 out again"),
        (Reason.ROLLOUT_STARTED, "rolling out v2 (was v1)"),
    ]
    assert scenario.facts.failed_version is None
    assert scenario.facts.stable == V1
    assert scenario.condition("RolledBack").status is False
    scenario.available()
    scenario.checks(failing(), failing(), failing())
    assert scenario.target == V1  # a retried version that fails again is reverted again
    assert scenario.facts.failed_version == "v2"


def test_retry_of_a_degraded_first_version_analyses_it_afresh() -> None:
    scenario = first_version_analysing()
    scenario.checks(failing(), failing(), failing())
    assert scenario.phase is Phase.DEGRADED
    decision = scenario.act(Action.RETRY)
    assert [e.reason for e in decision.events] == [Reason.RETRY_REQUESTED]
    assert decision.target == V1
    assert decision.target_id == release_id(V1, retries=1)  # a new pod template: fresh pods
    assert scenario.facts.degraded_reason is None
    assert scenario.facts.streaks == Streaks()
    assert scenario.facts.last_check is None
    assert scenario.facts.rollout_started_at == scenario.now
    assert scenario.phase is Phase.PROGRESSING
    scenario.available()
    assert scenario.phase is Phase.ANALYZING
    scenario.checks(passing(), passing(), passing())
    assert scenario.phase is Phase.PROMOTED


@pytest.mark.parametrize("start", [first_version_analysing, v1_stable, v2_analysing])
def test_retry_with_nothing_failed_is_ignored(start: Callable[[], Scenario]) -> None:
    scenario = start()
    before = scenario.facts
    decision = scenario.act(Action.RETRY)
    assert [(e.reason, e.message) for e in decision.events] == [
        (Reason.ACTION_IGNORED, "retry: nothing failed, nothing to retry")
    ]
    assert scenario.facts == before


def test_rollback_reverts_the_version_under_analysis_at_once() -> None:
    scenario = v2_analysing()
    scenario.check(passing())
    decision = scenario.act(Action.ROLLBACK)
    assert decision.target == V1
    assert [(e.reason, e.message) for e in decision.events] == [
        (Reason.ROLLED_BACK, "rolled back from v2 to v1: rollback requested by annotation")
    ]
    assert scenario.facts.rollback_reason == Reason.MANUAL_ROLLBACK
    assert scenario.facts.failed_version == "v2"
    assert scenario.condition("RolledBack").reason == Reason.MANUAL_ROLLBACK
    scenario.available()
    scenario.spec(V2)  # a GitOps sync re-applies the spec: the manual rollback stands
    assert scenario.target == V1
    assert scenario.phase is Phase.ROLLED_BACK


def test_rollback_also_stops_a_rollout_that_is_not_available_yet() -> None:
    scenario = v1_stable()
    scenario.spec(V2)
    assert scenario.phase is Phase.PROGRESSING
    decision = scenario.act(Action.ROLLBACK)
    assert decision.target == V1
    assert scenario.facts.failed_version == "v2"


@pytest.mark.parametrize(
    "start",
    [first_version_analysing, v1_stable, v2_rolled_back],
    ids=["first-version-nothing-to-revert-to", "promoted", "already-rolled-back"],
)
def test_rollback_without_a_new_release_and_a_stable_one_is_ignored(start: Callable[[], Scenario]) -> None:
    scenario = start()
    before, target = scenario.facts, scenario.target
    decision = scenario.act(Action.ROLLBACK)
    assert [e.reason for e in decision.events] == [Reason.ACTION_IGNORED]
    assert decision.events[0].message.startswith("rollback: no new release with a stable one to revert to")
    assert scenario.facts == before
    assert decision.target == target


def test_rollback_is_ignored_while_the_stable_release_is_being_restored() -> None:
    scenario = v2_analysing()
    scenario.checks(failing(), failing(), failing())
    assert scenario.phase is Phase.PROGRESSING
    decision = scenario.act(Action.ROLLBACK)
    assert [e.reason for e in decision.events] == [Reason.ACTION_IGNORED]
    assert scenario.count(Reason.ROLLED_BACK) == 1


def test_promote_makes_the_version_under_analysis_stable_at_once() -> None:
    scenario = v2_analysing()
    decision = scenario.act(Action.PROMOTE)
    assert [(e.reason, e.message) for e in decision.events] == [
        (Reason.PROMOTED, "v2 promoted to stable: promotion requested by annotation")
    ]
    assert scenario.facts.stable == V2
    assert scenario.phase is Phase.PROMOTED
    assert scenario.condition("Ready").status is True


@pytest.mark.parametrize(
    ("start", "phase"),
    [(v1_stable, Phase.PROMOTED), (v2_rolled_back, Phase.ROLLED_BACK)],
)
def test_promote_with_nothing_under_analysis_is_ignored(start: Callable[[], Scenario], phase: Phase) -> None:
    scenario = start()
    before = scenario.facts
    decision = scenario.act(Action.PROMOTE)
    assert [(e.reason, e.message) for e in decision.events] == [
        (Reason.ACTION_IGNORED, f"promote: nothing under analysis in phase {phase}")
    ]
    assert scenario.facts == before


def test_promote_is_ignored_while_the_release_is_still_rolling_out() -> None:
    scenario = v1_stable()
    scenario.spec(V2)
    decision = scenario.act(Action.PROMOTE)
    assert [e.reason for e in decision.events] == [Reason.ACTION_IGNORED]
    assert scenario.facts.stable == V1


# --- inconclusive checks -----------------------------------------------------------------------


def test_inconclusive_checks_never_fail_nor_pass_a_version() -> None:
    scenario = v2_analysing()
    scenario.checks(*[inconclusive()] * 50)
    assert scenario.target == V2
    assert scenario.phase is Phase.ANALYZING
    assert scenario.facts.streaks == Streaks()
    assert scenario.facts.stable == V1
    assert scenario.events[-1].reason == Reason.ROLLOUT_COMPLETE  # nothing since v2 became available


def test_inconclusive_checks_keep_a_pass_streak_for_promotion() -> None:
    scenario = v2_analysing()
    scenario.checks(passing(), passing(), inconclusive(), inconclusive())
    assert scenario.facts.stable == V1
    scenario.check(passing())
    assert scenario.facts.stable == V2


# --- errors: no data is never a reason to roll back ---------------------------------------------


def test_errors_never_roll_back() -> None:
    scenario = v2_analysing()
    scenario.checks(*[erroring()] * 30)
    assert scenario.target == V2
    assert scenario.phase is Phase.ANALYZING
    assert scenario.count(Reason.ROLLED_BACK) == 0
    assert scenario.count(Reason.ANALYSIS_FAILED) == 0


def test_error_limit_errors_in_a_row_report_metrics_unavailable_once() -> None:
    scenario = v2_analysing()
    scenario.checks(*[erroring()] * (ANALYSIS.error_limit - 1))
    assert scenario.count(Reason.METRICS_UNAVAILABLE) == 0
    assert scenario.condition("Degraded").status is False
    decision = scenario.check(erroring())
    assert [e.reason for e in decision.events] == [Reason.METRICS_UNAVAILABLE]
    event = decision.events[0]
    assert event.warning
    assert event.message.startswith("5 checks in a row without data, keeping the current release: ")
    assert "connection refused; query: label_replace(" in event.message
    assert metrics_unavailable(scenario.facts, ANALYSIS)
    degraded = scenario.condition("Degraded")
    assert (degraded.status, degraded.reason) == (True, "MetricsUnavailable")
    assert degraded.message == "5 checks in a row returned no usable data; keeping v2"
    scenario.checks(*[erroring()] * 10)
    assert scenario.count(Reason.METRICS_UNAVAILABLE) == 1
    assert scenario.phase is Phase.ANALYZING  # a condition, not a phase: analysis goes on
    assert scenario.target == V2


@pytest.mark.parametrize(
    "recovery", [passing(), failing(), inconclusive()], ids=["pass", "fail", "inconclusive"]
)
def test_any_verdict_after_metrics_were_unavailable_reports_their_recovery(recovery: Measurement) -> None:
    scenario = v2_analysing()
    scenario.checks(*[erroring()] * ANALYSIS.error_limit)
    decision = scenario.check(recovery)
    assert decision.events[0].reason == Reason.METRICS_RECOVERED
    assert decision.events[0].message.startswith("metrics are back: ")
    assert not metrics_unavailable(scenario.facts, ANALYSIS)
    assert scenario.condition("Degraded").status is False


def test_a_short_outage_below_error_limit_reports_nothing() -> None:
    scenario = v2_analysing()
    scenario.checks(erroring(), erroring(), passing())
    assert scenario.count(Reason.METRICS_UNAVAILABLE) == 0
    assert scenario.count(Reason.METRICS_RECOVERED) == 0


def test_errors_neither_break_nor_extend_failure_and_pass_streaks() -> None:
    scenario = v2_analysing()
    scenario.checks(failing(), failing(), *[erroring()] * 7)
    assert scenario.facts.streaks == Streaks(failures=2, errors=7)
    assert scenario.target == V2
    scenario.check(failing())
    assert scenario.target == V1
    assert scenario.count(Reason.ROLLED_BACK) == 1


def test_a_new_outage_after_a_recovery_is_reported_again() -> None:
    scenario = v2_analysing()
    scenario.checks(*[erroring()] * 5, inconclusive(), *[erroring()] * 5)
    assert scenario.count(Reason.METRICS_UNAVAILABLE) == 2
    assert scenario.count(Reason.METRICS_RECOVERED) == 1


# --- the progress deadline ---------------------------------------------------------------------


def test_a_new_version_not_available_within_its_progress_deadline_is_rolled_back() -> None:
    scenario = v1_stable()
    scenario.spec(V2)
    decision = scenario.deadline_exceeded()
    assert decision.target == V1
    assert scenario.facts.failed_version == "v2"
    assert scenario.facts.rollback_reason == Reason.PROGRESS_DEADLINE_EXCEEDED
    assert [(e.reason, e.message) for e in decision.events] == [
        (
            Reason.ROLLED_BACK,
            "rolled back from v2 to v1: v2 did not become available within its progress deadline",
        )
    ]
    assert scenario.condition("RolledBack").reason == Reason.PROGRESS_DEADLINE_EXCEEDED
    scenario.available()
    assert scenario.phase is Phase.ROLLED_BACK
    assert scenario.target == V1


def test_a_first_version_not_available_within_its_deadline_is_degraded() -> None:
    scenario = Scenario(V1)
    scenario.round()
    decision = scenario.deadline_exceeded()
    assert decision.target == V1
    assert [(e.reason, e.warning) for e in decision.events] == [(Reason.PROGRESS_DEADLINE_EXCEEDED, True)]
    assert decision.events[0].message.endswith("; no other release to revert to")
    assert scenario.phase is Phase.DEGRADED
    assert scenario.condition("Degraded").reason == Reason.PROGRESS_DEADLINE_EXCEEDED
    assert decision.requeue_after == IDLE_REQUEUE_SECONDS
    scenario.wait(IDLE_REQUEUE_SECONDS)
    assert scenario.count(Reason.PROGRESS_DEADLINE_EXCEEDED) == 1


def test_a_restored_release_that_misses_its_deadline_is_degraded_not_flipped_back() -> None:
    scenario = v2_analysing()
    scenario.checks(failing(), failing(), failing())
    decision = scenario.deadline_exceeded()
    assert decision.target == V1
    assert scenario.phase is Phase.DEGRADED
    assert scenario.count(Reason.ROLLED_BACK) == 1


def test_a_deadline_reported_for_another_release_is_not_this_ones() -> None:
    scenario = v1_stable()
    scenario.spec(V2)
    scenario.deployment = ObservedDeployment(release_id(V1), available=False, deadline_exceeded=True)
    decision = scenario.wait(10)
    assert decision.target == V2
    assert decision.events == ()


# --- rollouts tracked by the release id the operator owns ----------------------------------------


def test_a_deployment_is_recognised_by_its_release_id_not_by_its_fields() -> None:
    # A webhook may add an image digest or env vars: the decision sees only the id on the template.
    scenario = Scenario(V2)
    scenario.round()
    scenario.deployment = ObservedDeployment(release_id(V2), available=True, deadline_exceeded=False)
    decision = scenario.wait(5)
    assert [e.reason for e in decision.events] == [Reason.ROLLOUT_COMPLETE]
    assert scenario.phase is Phase.ANALYZING


@pytest.mark.parametrize(
    "observed_id",
    [None, release_id(V1), release_id(V2, retries=1)],
    ids=["unannotated", "another-release", "another-retry"],
)
def test_available_pods_of_another_release_id_are_not_the_rollouts(observed_id: str | None) -> None:
    scenario = Scenario(V2)
    scenario.round()
    scenario.deployment = ObservedDeployment(observed_id, available=True, deadline_exceeded=False)
    assert scenario.wait(5).events == ()
    assert scenario.phase is Phase.PROGRESSING


def test_the_deadline_runs_from_the_rollout_start_when_the_deployment_never_shows_the_release() -> None:
    # The API server refused the new template (or a webhook denied it): the old pods keep serving.
    scenario = v1_stable()
    scenario.spec(V2)
    started = scenario.facts.rollout_started_at
    assert started is not None
    scenario.deployment = ObservedDeployment(release_id(V1), available=True, deadline_exceeded=False)
    scenario.now = started + timedelta(seconds=599)
    assert scenario.round().events == ()
    scenario.now = started + timedelta(seconds=600)
    decision = scenario.round()
    assert decision.target == V1
    assert [e.reason for e in decision.events] == [Reason.ROLLED_BACK]
    assert scenario.facts.rollback_reason == Reason.PROGRESS_DEADLINE_EXCEEDED


def test_the_deadline_is_the_specs_and_names_the_api_servers_refusal() -> None:
    facts = Facts(current=V1, rollout_started_at=T0, apply_error='metadata.labels: Invalid value: "bad key"')
    inputs = Inputs(
        desired=V1,
        analysis=ANALYSIS,
        facts=facts,
        observed=None,
        now=T0 + timedelta(seconds=30),
        progress_deadline_seconds=30,
    )
    decision = decide(inputs)
    assert [(e.reason, e.warning) for e in decision.events] == [(Reason.PROGRESS_DEADLINE_EXCEEDED, True)]
    assert "the API server refused its Deployment: metadata.labels" in decision.events[0].message
    assert phase_of(decision.facts) is Phase.DEGRADED


def test_a_refused_apply_is_recorded_once_and_cleared_when_an_apply_succeeds() -> None:
    facts = Facts(current=V1, rollout_started_at=T0)
    refused, events = record_apply(facts, "spec.template.metadata.labels: Invalid value")
    assert refused.apply_error == "spec.template.metadata.labels: Invalid value"
    assert [(e.reason, e.message, e.warning) for e in events] == [
        (
            Reason.APPLY_FAILED,
            "the API server refused the Deployment: spec.template.metadata.labels: Invalid value",
            True,
        )
    ]
    degraded = next(c for c in conditions_of(refused, ANALYSIS, V1) if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == (True, "ApplyFailed")
    assert "spec.template.metadata.labels: Invalid value" in degraded.message
    assert record_apply(refused, refused.apply_error) == (refused, ())  # no event every round
    accepted, events = record_apply(refused, None)
    assert (accepted, events) == (facts, ())
    assert next(c for c in conditions_of(accepted, ANALYSIS, V1) if c.type == "Degraded").status is False


def test_the_refused_deployments_are_remembered_until_an_apply_succeeds() -> None:
    facts = Facts(current=V1, stable=V1, serving_since=T0)
    refused, events = record_apply(facts, "spec.template.spec.affinity: Invalid value", ("0123abcd",))
    assert (refused.apply_error, refused.refused_specs) == (
        "spec.template.spec.affinity: Invalid value",
        ("0123abcd",),
    )
    assert [e.reason for e in events] == [Reason.APPLY_FAILED]
    # The same message for another Deployment (the spec changed, still refused): no new event.
    again, events = record_apply(refused, refused.apply_error, ("4567cdef",))
    assert (again.refused_specs, events) == (("4567cdef",), ())
    accepted, _ = record_apply(again, None, ("ignored",))
    assert (accepted.apply_error, accepted.refused_specs) == (None, ())


def test_a_retry_sends_a_refused_deployment_again_when_nothing_else_failed() -> None:
    refused = Facts(
        current=V1, stable=V1, serving_since=T0, apply_error="denied", refused_specs=("0123abcd",)
    )
    inputs = Inputs(desired=V1, analysis=ANALYSIS, facts=refused, observed=None, now=T0, action=Action.RETRY)
    decision = decide(inputs)
    assert decision.facts.refused_specs == ()
    assert decision.facts.retries == refused.retries  # the release id, and so the pods, stay
    assert [e.reason for e in decision.events] == [Reason.RETRY_REQUESTED]
    nothing = replace(refused, refused_specs=(), apply_error=None)
    ignored = decide(replace(inputs, facts=nothing))
    assert [e.reason for e in ignored.events] == [Reason.ACTION_IGNORED]


# --- Degraded recovers ----------------------------------------------------------------------------


def test_a_first_release_degraded_by_its_deadline_serves_once_its_pods_are_available() -> None:
    scenario = Scenario(V1)
    scenario.round()
    scenario.deadline_exceeded()
    assert scenario.phase is Phase.DEGRADED
    decision = scenario.available()  # the nodes arrived late
    assert [(e.reason, e.message) for e in decision.events] == [
        (Reason.ROLLOUT_COMPLETE, "v1 became available after its progress deadline; analysis starts")
    ]
    assert scenario.facts.degraded_reason is None
    assert scenario.phase is Phase.ANALYZING
    scenario.checks(passing(), passing(), passing())
    assert scenario.phase is Phase.PROMOTED
    assert scenario.condition("Ready").status is True


def test_a_restored_release_degraded_by_its_deadline_serves_as_rolled_back_once_available() -> None:
    scenario = v2_analysing()
    scenario.checks(failing(), failing(), failing())
    scenario.deadline_exceeded()
    assert scenario.phase is Phase.DEGRADED
    scenario.available()
    assert scenario.phase is Phase.ROLLED_BACK
    assert scenario.target == V1


def test_a_degraded_release_that_failed_its_analysis_stays_degraded_while_it_serves() -> None:
    scenario = first_version_analysing()
    scenario.checks(failing(), failing(), failing())
    scenario.available()
    assert scenario.phase is Phase.DEGRADED


def test_retry_after_a_missed_deadline_restarts_the_rollout_instead_of_degrading_again() -> None:
    scenario = Scenario(V1)
    scenario.round()
    scenario.deadline_exceeded()
    first_start = scenario.facts.rollout_started_at
    scenario.now += timedelta(seconds=60)
    decision = scenario.act(Action.RETRY)  # the Deployment still reports the old deadline
    assert [e.reason for e in decision.events] == [Reason.RETRY_REQUESTED]
    assert scenario.phase is Phase.PROGRESSING
    assert scenario.facts.rollout_started_at == scenario.now != first_start
    assert (scenario.facts.retries, decision.target_id) == (1, release_id(V1, retries=1))
    assert scenario.wait(5).events == ()  # the new template's pods are on their way
    scenario.available()
    assert scenario.phase is Phase.ANALYZING
    assert scenario.count(Reason.PROGRESS_DEADLINE_EXCEEDED) == 1


# --- one step back only: the first version, and a restored release that fails too -----------------


def test_a_failing_first_version_is_degraded_since_there_is_nothing_to_revert_to() -> None:
    scenario = first_version_analysing()
    decision = scenario.checks(failing(), failing(), failing())[-1]
    assert decision.target == V1
    assert [e.reason for e in decision.events] == [Reason.ANALYSIS_FAILED, Reason.NO_STABLE_RELEASE]
    assert decision.events[1].warning
    assert decision.events[1].message.startswith(
        "v1 failed analysis; it is the first release, nothing to revert to; keeping it: accuracy 0.800"
    )
    assert decision.events[1].message.endswith(f"; query: {scenario.facts.last_check.query}")
    assert scenario.phase is Phase.DEGRADED
    assert scenario.condition("Degraded").reason == Reason.NO_STABLE_RELEASE
    assert scenario.condition("Ready").status is False
    assert check_due(scenario.facts, ANALYSIS, scenario.now + timedelta(hours=1)) is None
    assert decision.requeue_after == IDLE_REQUEUE_SECONDS
    for _ in range(3):
        assert scenario.wait(IDLE_REQUEUE_SECONDS).target == V1
    assert scenario.count(Reason.NO_STABLE_RELEASE) == 1


def test_a_second_version_over_a_never_promoted_first_is_degraded_too() -> None:
    scenario = first_version_analysing()
    scenario.spec(V2)
    scenario.available()
    scenario.checks(failing(), failing(), failing())
    assert scenario.target == V2
    assert scenario.phase is Phase.DEGRADED
    assert scenario.count(Reason.ROLLED_BACK) == 0


def test_a_restored_release_that_fails_too_is_degraded_and_never_flip_flops() -> None:
    scenario = v2_rolled_back()
    decision = scenario.check(failing())  # watched like a promoted release: one clear breach
    assert decision.target == V1
    assert decision.events[-1].reason == Reason.RESTORED_RELEASE_FAILED
    assert decision.events[-1].message.startswith(
        "v1 failed analysis; it is the release restored by a rollback; keeping it: accuracy 0.800"
    )
    assert 'version="v1"' in decision.events[-1].message
    assert scenario.phase is Phase.DEGRADED
    assert scenario.condition("Degraded").reason == Reason.RESTORED_RELEASE_FAILED
    assert scenario.count(Reason.ROLLED_BACK) == 1
    assert not watching(scenario.facts, ANALYSIS)
    for _ in range(3):
        assert scenario.spec(V2).target == V1


# --- watching after promotion ----------------------------------------------------------------


def test_a_promoted_version_is_watched_on_the_labels_since_the_previous_check() -> None:
    scenario = v2_stable()
    plan = check_due(scenario.facts, ANALYSIS, scenario.next_check_at())
    assert plan == QueryPlan(
        cumulative=False, range_seconds=ANALYSIS.interval, window_seconds=ANALYSIS.window
    )
    late = scenario.next_check_at() + timedelta(seconds=12)
    assert check_due(scenario.facts, ANALYSIS, late) == QueryPlan(
        False, ANALYSIS.interval + 12, ANALYSIS.window
    )


def test_passing_checks_after_promotion_promote_nothing_again() -> None:
    scenario = v2_stable()
    history = scenario.facts.history
    scenario.checks(*[passing()] * 10)
    assert scenario.count(Reason.PROMOTED) == 2  # v1 once, v2 once
    assert scenario.facts.history == history


def test_passing_checks_of_a_restored_release_leave_it_rolled_back() -> None:
    scenario = v2_rolled_back()
    scenario.checks(*[passing()] * 10)
    assert scenario.count(Reason.PROMOTED) == 1  # v1, long ago
    assert scenario.phase is Phase.ROLLED_BACK
    assert scenario.facts.failed_version == "v2"


def test_a_later_breach_of_a_promoted_version_reverts_to_the_previously_promoted_release() -> None:
    scenario = v2_stable()
    scenario.checks(passing(), passing())
    assert scenario.target == V2
    decision = scenario.check(failing(value=0.71))
    assert decision.target == V1
    assert scenario.facts.stable == V1
    assert scenario.facts.failed_version == "v2"
    assert scenario.only(Reason.ROLLED_BACK).message.startswith(
        "rolled back from v2 to v1: v2 failed analysis after promotion: accuracy 0.710"
    )
    assert 'version="v2"' in scenario.only(Reason.ROLLED_BACK).message
    assert "evidence of a drop below 0.90" in scenario.only(Reason.ROLLED_BACK).message
    assert (scenario.facts.history[0].release, scenario.facts.history[0].outcome) == (V2, "failed")
    scenario.available()
    assert scenario.phase is Phase.ROLLED_BACK
    scenario.check(failing())
    assert scenario.phase is Phase.DEGRADED
    assert scenario.condition("Degraded").reason == Reason.RESTORED_RELEASE_FAILED
    assert scenario.count(Reason.ROLLED_BACK) == 1


def test_a_later_breach_of_the_only_promoted_release_is_degraded() -> None:
    scenario = v1_stable()
    decision = scenario.check(failing())
    assert decision.target == V1
    assert scenario.phase is Phase.DEGRADED
    assert scenario.condition("Degraded").reason == Reason.NO_STABLE_RELEASE
    assert decision.events[-1].message.startswith(
        "v1 failed analysis after promotion; no earlier release to revert to; keeping it: accuracy"
    )


def test_a_later_breach_never_reverts_to_a_release_that_failed_since_its_promotion() -> None:
    scenario = v2_stable()
    scenario.check(failing())  # v2 breaches after promotion: back to v1
    scenario.available()
    scenario.spec(V3)
    scenario.available()
    scenario.checks(passing(), passing(), passing())
    assert scenario.facts.stable == V3
    scenario.check(failing())  # v3 breaches: v1 is the last good one
    assert scenario.target == V1
    assert scenario.facts.stable == V1


def test_with_after_promotion_false_checks_stop_once_the_version_is_promoted() -> None:
    analysis = replace(ANALYSIS, after_promotion=False)
    scenario = v1_stable(analysis=analysis)
    assert not watching(scenario.facts, analysis)
    assert check_due(scenario.facts, analysis, scenario.now + timedelta(days=1)) is None
    assert scenario.last.requeue_after == IDLE_REQUEUE_SECONDS
    scenario.spec(V2)
    scenario.available()
    assert watching(scenario.facts, analysis)  # a new version is analysed all the same
    scenario.checks(failing(), failing(), failing())
    scenario.available()
    assert scenario.phase is Phase.ROLLED_BACK
    assert not watching(scenario.facts, analysis)


# --- when checks run, and what they look at -------------------------------------------------


def test_check_due_weighs_everything_since_serving_before_promotion() -> None:
    scenario = v2_analysing()
    serving = scenario.facts.serving_since
    assert serving is not None
    interval = timedelta(seconds=ANALYSIS.interval)
    assert check_due(scenario.facts, ANALYSIS, serving + interval - timedelta(seconds=1)) is None
    since = ANALYSIS.interval
    assert check_due(scenario.facts, ANALYSIS, serving + interval) == QueryPlan(True, since, since)
    scenario.check(inconclusive())
    assert check_due(scenario.facts, ANALYSIS, serving + 2 * interval - timedelta(seconds=1)) is None
    late = serving + 2 * interval + timedelta(seconds=7)
    since = 2 * ANALYSIS.interval + 7
    assert check_due(scenario.facts, ANALYSIS, late) == QueryPlan(True, since, since)


def test_no_check_is_due_while_a_release_rolls_out() -> None:
    scenario = v1_stable()
    scenario.spec(V2)
    assert check_due(scenario.facts, ANALYSIS, scenario.now + timedelta(hours=1)) is None
    assert check_due(Facts(), ANALYSIS, T0) is None


def test_a_check_that_was_not_due_is_not_counted() -> None:
    scenario = v2_analysing()
    decision = scenario.round(check=failing(), query="early")
    assert decision.events == ()
    assert scenario.facts.last_check is None
    assert scenario.facts.streaks == Streaks()


def test_the_last_check_is_recorded_with_its_numbers_and_query() -> None:
    scenario = v2_analysing()
    scenario.check(failing(value=0.85, samples=340))
    outcome = judge(failing(value=0.85, samples=340), ANALYSIS.criteria)
    record = scenario.facts.last_check
    assert record is not None
    assert (record.time, record.verdict, record.value, record.samples) == (
        scenario.now,
        outcome.verdict,
        0.85,
        340,
    )
    assert (record.lower, record.upper, record.reason) == (
        round(outcome.lower, 4),
        round(outcome.upper, 4),
        outcome.reason,
    )
    assert 'vigil_model_feedback_correct_total{namespace="ml", model="iris", version="v2"}' in record.query


def test_the_last_check_keeps_four_decimals_for_status() -> None:
    scenario = v2_analysing()
    scenario.check(Measurement(value=0.8512345678, correct=0.8512345678 * 340.123, samples=340.123))
    record = scenario.facts.last_check
    assert record is not None
    assert (record.value, record.samples) == (0.8512, 340.1)


def test_requeue_after_waits_for_the_next_check() -> None:
    scenario = v2_analysing()
    assert scenario.last.requeue_after == ANALYSIS.interval
    assert scenario.wait(18).requeue_after == pytest.approx(ANALYSIS.interval - 18)
    assert scenario.wait(60).requeue_after == pytest.approx(0.1)  # overdue: look again right away
    scenario.check(passing())
    assert scenario.last.requeue_after == ANALYSIS.interval


def test_requeue_after_polls_a_rollout_and_idles_when_nothing_is_watched() -> None:
    scenario = v1_stable(analysis=replace(ANALYSIS, after_promotion=False))
    assert scenario.last.requeue_after == IDLE_REQUEUE_SECONDS
    assert scenario.spec(V2).requeue_after == ROLLOUT_POLL_SECONDS


# --- history ---------------------------------------------------------------------------------


def test_history_is_newest_first_and_bounded() -> None:
    scenario = v1_stable()
    versions = [f"v{n}" for n in range(2, 2 + HISTORY_LIMIT + 3)]
    for version in versions:
        scenario.spec(release(version))
        scenario.available()
        scenario.checks(passing(), passing(), passing())
    history = scenario.facts.history
    assert len(history) == HISTORY_LIMIT
    assert [entry.release.version for entry in history] == versions[::-1][:HISTORY_LIMIT]
    assert all(entry.outcome == "promoted" for entry in history)
    assert [entry.at for entry in history] == sorted((entry.at for entry in history), reverse=True)


def test_history_keeps_every_release_with_what_became_of_it() -> None:
    scenario = v2_rolled_back()
    scenario.spec(V3)
    scenario.spec(release("v4"))
    outcomes = [(entry.release.version, entry.outcome) for entry in scenario.facts.history]
    assert outcomes == [("v3", "superseded"), ("v2", "failed"), ("v1", "promoted")]
    failed = scenario.facts.history[1]
    assert failed.reason.startswith("v2 failed analysis: accuracy 0.800")
    assert failed.release == V2


# --- restarts lose nothing --------------------------------------------------------------------


def rollback_story(scenario: Scenario) -> Scenario:
    """v1 promoted; v2 fails after a metrics outage; v1 restored; GitOps re-applies v2."""
    scenario.round()
    scenario.available()
    scenario.checks(inconclusive(), passing(), passing(), passing())
    scenario.spec(V2)
    scenario.available()
    scenario.checks(failing(), *[erroring()] * 6, failing(), inconclusive(), failing())
    scenario.available()
    scenario.spec(V2)
    scenario.checks(passing(), passing())
    return scenario


def test_an_operator_restarted_at_every_round_reaches_the_same_outcome_with_one_rollback() -> None:
    kept = rollback_story(Scenario(V1))
    restarted = rollback_story(Scenario(V1, restart_every_round=True))
    assert [d.target for d in restarted.decisions] == [d.target for d in kept.decisions]
    assert [(e.reason, e.message) for e in restarted.events] == [(e.reason, e.message) for e in kept.events]
    assert restarted.facts == kept.facts
    assert restarted.count(Reason.ROLLED_BACK) == 1
    assert restarted.count(Reason.METRICS_UNAVAILABLE) == 1
    assert restarted.target == V1
    assert restarted.phase is Phase.ROLLED_BACK


def test_a_crash_before_the_deployment_was_patched_does_not_roll_back_twice() -> None:
    scenario = v2_analysing()
    scenario.checks(failing(), failing(), failing())
    restarted = replace(scenario, facts=scenario.stored(scenario.facts), decisions=[], events=[])
    restarted.deployment = ObservedDeployment(release_id(V2), available=True, deadline_exceeded=False)
    for _ in range(3):
        decision = restarted.wait(2)
        assert decision.target == V1
        assert decision.events == ()
        restarted.deployment = ObservedDeployment(release_id(V2), available=True, deadline_exceeded=False)


def test_a_round_lost_before_its_status_was_written_decides_the_same_again() -> None:
    scenario = v2_analysing()
    scenario.checks(failing(), failing())
    inputs = Inputs(
        desired=V2,
        analysis=ANALYSIS,
        facts=scenario.facts,
        observed=scenario.deployment,
        now=scenario.next_check_at(),
        measurement=failing(),
        plan=check_due(scenario.facts, ANALYSIS, scenario.next_check_at()),
        query="q",
    )
    assert decide(inputs) == decide(inputs)
    assert decide(inputs).target == V1


# --- invariants over any sequence of events -----------------------------------------------------

STEP = st.sampled_from(["pass", "fail", "inconclusive", "error", "available", "deadline", "wait"])
OUTCOMES = {"pass": passing(), "fail": failing(), "inconclusive": inconclusive(), "error": erroring()}


def play(scenario: Scenario, steps: list[str]) -> None:
    for step in steps:
        deployment = scenario.deployment
        if step in OUTCOMES:
            serving = scenario.facts.serving_since is not None
            if serving and check_due(scenario.facts, scenario.analysis, scenario.next_check_at()):
                scenario.check(OUTCOMES[step])
            else:
                scenario.wait(ANALYSIS.interval)
        elif step == "available" and deployment is not None and not deployment.deadline_exceeded:
            scenario.available()
        elif step == "deadline" and deployment is not None and not deployment.available:
            scenario.deadline_exceeded()
        else:
            scenario.wait(ANALYSIS.interval)


@settings(max_examples=150, deadline=None)
@given(before=st.lists(STEP, max_size=12), after=st.lists(STEP, max_size=40))
def test_any_sequence_rolls_back_at_most_once_and_never_flip_flops(
    before: list[str], after: list[str]
) -> None:
    scenario = Scenario(V1)
    scenario.round()
    play(scenario, before)
    scenario.spec(V2)
    assert scenario.count(Reason.ROLLED_BACK) == 0  # the first version has nothing to revert to
    start = len(scenario.decisions) - 1  # from the round that applied v2
    play(scenario, after)
    assert scenario.count(Reason.ROLLED_BACK) <= 1
    targets = [d.target for d in scenario.decisions[start:]]
    rolled_back_at = next(
        (
            i
            for i, d in enumerate(scenario.decisions[start:])
            if Reason.ROLLED_BACK in [e.reason for e in d.events]
        ),
        None,
    )
    if rolled_back_at is not None:
        assert set(targets[rolled_back_at:]) == {V1}  # once reverted, it stays reverted
        assert scenario.facts.failed_version == "v2"
    else:
        assert set(targets) == {V2}


@settings(max_examples=150, deadline=None)
@given(before=st.lists(STEP, max_size=20), after=st.lists(STEP, max_size=30))
def test_each_round_targets_the_spec_the_stable_or_the_current_release(
    before: list[str], after: list[str]
) -> None:
    scenario = Scenario(V1)
    scenario.round()
    play(scenario, before)
    changed_at = len(scenario.decisions)
    scenario.spec(V2)
    play(scenario, after)
    previous = Facts()
    for index, decision in enumerate(scenario.decisions):
        desired = V1 if index < changed_at else V2
        assert decision.target in {desired, previous.current, decision.facts.stable}
        assert decision.target == decision.facts.current
        assert 0 < decision.requeue_after <= IDLE_REQUEUE_SECONDS
        conditions = {c.type: c for c in conditions_of(decision.facts, ANALYSIS, desired)}
        if conditions["Ready"].status:
            assert phase_of(decision.facts) is Phase.PROMOTED
            assert decision.facts.current == decision.facts.stable == desired
            assert not conditions["Progressing"].status
        previous = decision.facts


ACTIONS = {"retry": Action.RETRY, "rollback": Action.ROLLBACK, "promote": Action.PROMOTE}


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.one_of(STEP, st.sampled_from(sorted(ACTIONS))), max_size=60))
def test_only_a_retry_moves_the_target_off_a_rolled_back_release(steps: list[str]) -> None:
    scenario = v1_stable()
    scenario.spec(V2)
    start = len(scenario.decisions) - 1
    for step in steps:
        if step in ACTIONS:
            scenario.act(ACTIONS[step])
        else:
            play(scenario, [step])
    reverted = False
    for decision in scenario.decisions[start:]:
        reasons = [e.reason for e in decision.events]
        if Reason.RETRY_REQUESTED in reasons:
            reverted = False
        if reverted:
            assert decision.target == V1
            assert Reason.ROLLED_BACK not in reasons
        if Reason.ROLLED_BACK in reasons:
            assert decision.target == V1
            reverted = True


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(STEP, max_size=50))
def test_a_restart_at_any_round_changes_nothing(steps: list[str]) -> None:
    kept, restarted = Scenario(V1), Scenario(V1, restart_every_round=True)
    for scenario in (kept, restarted):
        scenario.round()
        play(scenario, steps[:10])
        scenario.spec(V2)
        play(scenario, steps[10:])
    assert [d.target for d in restarted.decisions] == [d.target for d in kept.decisions]
    assert [e.reason for e in restarted.events] == [e.reason for e in kept.events]
    assert restarted.facts == kept.facts


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(STEP, max_size=60))
def test_metrics_unavailable_is_reported_once_per_outage(steps: list[str]) -> None:
    scenario = Scenario(V1)
    scenario.round()
    play(scenario, steps)
    previous_check = None
    for decision in scenario.decisions:
        check = decision.facts.last_check
        new_error = check is not None and check != previous_check and check.verdict is Verdict.ERROR
        reported = Reason.METRICS_UNAVAILABLE in [e.reason for e in decision.events]
        assert reported == (new_error and decision.facts.streaks.errors == ANALYSIS.error_limit)
        previous_check = check


# --- the watch of a promoted version ------------------------------------------------------------


def test_after_promotion_small_drops_accumulate_until_the_watch_reverts() -> None:
    """30 s checks with 10 labels each at 0.80: no single check fails, the evidence adds up."""
    scenario = v2_stable()
    assert scenario.facts.watch == WatchState()
    for _ in range(200):
        decision = scenario.check(labelled(0.8, 10))
        if scenario.facts.failed_version == "v2":
            break
    assert decision.target == V1
    assert scenario.count(Reason.ANALYSIS_FAILED) == 1  # the breach itself: no streak to build
    assert scenario.only(Reason.ANALYSIS_FAILED).message.startswith("check failed (evidence limit reached)")
    assert scenario.facts.watch == WatchState()  # the restored release is watched afresh
    assert 10 < len(scenario.decisions) - 20 < 200


def test_a_healthy_promoted_version_is_never_failed_by_a_lull_or_an_outage() -> None:
    scenario = v2_stable()
    scenario.checks(labelled(0.9, 10), erroring(), inconclusive(0), labelled(1.0, 10))
    assert scenario.phase is Phase.PROMOTED
    assert scenario.facts.watch.samples == 20
    assert scenario.count(Reason.ANALYSIS_FAILED) == 0


def test_the_watch_survives_an_operator_restart() -> None:
    straight = v2_stable()
    restarted = v2_stable(restart_every_round=True)
    for scenario in (straight, restarted):
        scenario.checks(*[labelled(0.82, 10)] * 5)
    assert restarted.facts.watch.statistic == pytest.approx(straight.facts.watch.statistic, abs=1e-3)
    assert restarted.facts.watch.samples == straight.facts.watch.samples == 50


def test_a_new_rollout_and_a_retry_start_a_fresh_watch() -> None:
    scenario = v2_stable()
    scenario.checks(*[labelled(0.82, 10)] * 3)
    assert scenario.facts.watch.statistic > 0
    scenario.spec(V3)
    assert scenario.facts.watch == WatchState()


def test_a_custom_query_after_promotion_still_counts_failing_checks() -> None:
    custom = replace(ANALYSIS, query="avg(my_accuracy)")
    scenario = v2_stable(analysis=custom)
    scenario.checks(Measurement(value=0.5), Measurement(value=0.5))
    assert scenario.target == V2
    assert scenario.facts.streaks.failures == 2
    scenario.check(Measurement(value=0.5))
    assert scenario.target == V1


def test_a_promote_action_drops_the_measurement_made_for_the_analysis() -> None:
    """The check measured all labels since serving; promoted now, the watch must not eat them."""
    scenario = v2_analysing()
    scenario.checks(labelled(0.95, 100), labelled(0.95, 100))
    due = scenario.next_check_at()
    plan = check_due(scenario.facts, ANALYSIS, due)
    assert plan is not None
    assert plan.cumulative
    scenario.now = due
    decision = scenario.round(check=labelled(0.86, 3000), plan=plan, action=Action.PROMOTE)
    assert decision.target == V2
    assert scenario.facts.stable == V2
    assert scenario.facts.watch == WatchState()
    assert scenario.count(Reason.ANALYSIS_FAILED) == 0


def test_labels_of_a_check_without_data_are_counted_by_the_next_one() -> None:
    scenario = v2_stable()
    counted = scenario.facts.counted_until
    assert counted == scenario.facts.last_check.time
    scenario.check(erroring())
    assert scenario.facts.counted_until == counted
    due = scenario.next_check_at()
    plan = check_due(scenario.facts, ANALYSIS, due)
    assert plan == QueryPlan(False, (due - counted).total_seconds(), ANALYSIS.window)
    assert plan.range_seconds == 2 * ANALYSIS.interval
    scenario.check(labelled(0.95, 20))
    assert scenario.facts.counted_until == scenario.now


# --- a shadow candidate's check (judge_check with a paired plan) ---------------------------------

SHADOW = StrategySpec(type=StrategyType.SHADOW, shadow_margin=0.01)
SHADOW_PLAN = QueryPlan(cumulative=True, range_seconds=600.0, window_seconds=600.0, paired_with="v1")
AS_GOOD = PairedCounts(both_right=9_000, both_wrong=500, only_stable_right=300, only_candidate_right=290)
TWO_POINTS_WORSE = PairedCounts(
    both_right=9_000, both_wrong=500, only_stable_right=400, only_candidate_right=150
)


def test_a_shadow_check_passes_the_gate_and_the_paired_comparison() -> None:
    measurement = replace(passing(samples=10_090), paired=AS_GOOD)
    outcome, watch_state = judge_check(measurement, ANALYSIS, Facts(), SHADOW_PLAN, SHADOW)
    assert outcome.verdict is Verdict.PASS
    assert outcome.comparison is not None
    assert outcome.comparison.verdict is Verdict.PASS
    assert watch_state == Facts().watch


def test_a_shadow_candidate_above_the_threshold_but_worse_than_the_stable_fails() -> None:
    measurement = replace(passing(samples=10_050), paired=TWO_POINTS_WORSE)
    outcome, _ = judge_check(measurement, ANALYSIS, Facts(), SHADOW_PLAN, SHADOW)
    assert outcome.verdict is Verdict.FAIL
    assert "paired: candidate minus stable accuracy -0.0249" in outcome.reason


def test_the_margin_comes_from_the_strategy() -> None:
    measurement = replace(passing(samples=10_050), paired=TWO_POINTS_WORSE)
    lenient = replace(SHADOW, shadow_margin=0.05)
    outcome, _ = judge_check(measurement, ANALYSIS, Facts(), SHADOW_PLAN, lenient)
    assert outcome.verdict is Verdict.PASS


def test_without_a_paired_plan_a_check_is_judged_as_before_whatever_the_measurement_carries() -> None:
    plan = replace(SHADOW_PLAN, paired_with=None)
    measurement = replace(passing(samples=10_050), paired=TWO_POINTS_WORSE)
    outcome, _ = judge_check(measurement, ANALYSIS, Facts(), plan, SHADOW)
    assert outcome == judge(measurement, ANALYSIS.criteria)
    assert outcome.comparison is None


def test_replace_rounds_never_plan_a_paired_check() -> None:
    scenario = v2_analysing()
    plan = check_due(scenario.facts, ANALYSIS, scenario.next_check_at())
    assert plan is not None
    assert plan.paired_with is None
