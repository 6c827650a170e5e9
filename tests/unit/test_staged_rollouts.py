"""Shadow and Canary through the decision core: each stage, its events, its tracks, its end.

Read like docs/concepts.md's strategy section: a shadow answers no user and is rejected, not
rolled back; a canary answers its share and is rolled back like Replace; both are promoted after
their last stage and hand the main Deployment over.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from unit.scenario import V1, V2, V3, Scenario, failing, passing, v1_stable

from vigil_operator.analysis import Measurement, PairedCounts
from vigil_operator.decisions import Action, Phase, Reason, check_due, phase_of
from vigil_operator.releases import StrategySpec, StrategyType
from vigil_operator.strategies import StageKind

SHADOW = StrategySpec(StrategyType.SHADOW, shadow_margin=0.01)
SHADOW_THEN_CANARY = StrategySpec(
    StrategyType.SHADOW, canary_steps=(25, 50), shadow_margin=0.01, after_shadow=StrategyType.CANARY
)
CANARY = StrategySpec(StrategyType.CANARY, canary_steps=(25, 50))


def paired(
    value: float = 0.97, samples: float = 2000, *, only_stable: float = 2, only_candidate: float = 3
) -> Measurement:
    """The candidate's own labels and, on the same ids, who of the two was right (by default a
    pass: as good as the stable release, with few enough disagreements to tell at margin 0.01)."""
    both_right = round(value * samples) - only_candidate
    counts = PairedCounts(
        both_right=both_right,
        both_wrong=samples - both_right - only_stable - only_candidate,
        only_stable_right=only_stable,
        only_candidate_right=only_candidate,
    )
    return Measurement(value=value, correct=round(value * samples), samples=samples, paired=counts)


def paired_worse() -> Measurement:
    """Above the threshold on its own, but clearly worse than the stable release on the same ids."""
    return paired(0.93, 2000, only_stable=120, only_candidate=20)


def candidate(strategy: StrategySpec, **options: Any) -> Scenario:
    """v1 stable, then v2 applied with `strategy`: its own Deployment becomes available."""
    scenario = v1_stable(strategy=strategy, **options)
    scenario.spec(V2)
    scenario.available()
    assert scenario.phase is Phase.ANALYZING
    return scenario


def test_a_shadow_runs_beside_the_stable_release_which_keeps_the_service_and_mirrors() -> None:
    scenario = v1_stable(strategy=SHADOW, replicas=3)
    decision = scenario.spec(V2)
    tracks = decision.tracks
    assert (tracks.main, tracks.candidate) == (V1, V2)
    assert tracks.mirrored
    assert not tracks.candidate_in_service
    assert tracks.candidate_percent == 0
    assert (tracks.main_replicas, tracks.candidate_replicas) == (3, 3)  # a copy of every request
    assert "mirrors a copy" in scenario.only(Reason.SHADOW_STARTED).message
    assert scenario.phase is Phase.PROGRESSING
    scenario.available()
    assert scenario.phase is Phase.ANALYZING


def test_a_shadow_check_weighs_the_paired_comparison_and_reports_both() -> None:
    scenario = candidate(SHADOW)
    record = scenario.check(paired()).facts.last_check
    assert record is not None
    assert record.verdict == "pass"
    assert "paired: candidate minus stable accuracy" in record.reason


def test_a_shadow_that_passes_is_promoted_and_the_main_deployment_hands_over() -> None:
    scenario = candidate(SHADOW)
    scenario.checks(*[paired()] * scenario.analysis.success_limit)
    assert scenario.facts.stable == V2
    assert scenario.count(Reason.SHADOW_PASSED) == 1
    assert "v2 promoted to stable; the main Deployment now rolls to it" in scenario.events[-1].message
    # Until the main Deployment serves v2, the candidate's own Deployment keeps running, untouched.
    assert scenario.phase is Phase.PROGRESSING
    assert (scenario.last.tracks.main, scenario.last.tracks.candidate) == (V2, V2)
    assert scenario.last.tracks.handing_over
    assert not scenario.last.tracks.mirrored
    scenario.available()
    assert scenario.phase is Phase.PROMOTED
    assert scenario.facts.staged is None
    assert scenario.last.tracks.candidate is None
    assert scenario.last.target == V2


@pytest.mark.parametrize("check", [failing(), paired_worse()], ids=["below-threshold", "worse-than-stable"])
def test_a_failing_shadow_is_rejected_and_no_user_was_ever_served_by_it(check: Measurement) -> None:
    scenario = candidate(SHADOW)
    if check.paired is None:
        check = Measurement(
            value=check.value, correct=check.correct, samples=check.samples, paired=paired().paired
        )
    scenario.checks(*[check] * scenario.analysis.failure_limit)
    rejected = scenario.only(Reason.SHADOW_REJECTED)
    assert rejected.warning
    assert "it answered no user request, v1 answered them all" in rejected.message
    assert scenario.count(Reason.ROLLED_BACK) == 0  # no user traffic was on it: nothing rolled back
    assert scenario.facts.rollback_reason == Reason.SHADOW_REJECTED
    assert scenario.facts.failed_version == "v2"
    assert scenario.facts.staged is None
    tracks = scenario.last.tracks
    assert (tracks.main, tracks.candidate, tracks.mirrored) == (V1, None, False)
    scenario.available()
    assert scenario.phase is Phase.ROLLED_BACK
    assert scenario.condition("RolledBack").reason == "ShadowRejected"
    assert "rejected as a shadow" in scenario.condition("Ready").message
    # Not retried while the spec names it.
    scenario.wait(300)
    assert scenario.last.tracks.candidate is None


def test_shadow_check_errors_never_reject_it() -> None:
    scenario = candidate(SHADOW)
    scenario.checks(*[Measurement(value=0.97, correct=485, samples=500)] * 10)  # no paired counts
    assert scenario.count(Reason.SHADOW_REJECTED) == 0
    assert scenario.facts.last_check is not None
    assert scenario.facts.last_check.verdict == "error"
    assert scenario.last.tracks.candidate == V2


def test_a_shadow_never_available_is_rejected_at_its_deadline() -> None:
    scenario = v1_stable(strategy=SHADOW)
    scenario.spec(V2)
    scenario.deadline_exceeded()
    assert "ProgressDeadlineExceeded" in scenario.only(Reason.SHADOW_REJECTED).message
    assert scenario.last.tracks.candidate is None


def test_a_shadow_then_canary_steps_through_each_stage_to_promotion() -> None:
    scenario = candidate(SHADOW_THEN_CANARY, replicas=4)
    limit = scenario.analysis.success_limit
    scenario.checks(*[paired()] * limit)
    assert scenario.count(Reason.SHADOW_PASSED) == 1
    assert "25%" in scenario.only(Reason.CANARY_STEP_STARTED).message
    tracks = scenario.last.tracks
    assert (tracks.main, tracks.candidate, tracks.mirrored) == (V1, V2, False)
    assert tracks.candidate_in_service
    # The stable release keeps every replica until the relabelled canary pod is ready.
    assert (tracks.main_replicas, tracks.candidate_replicas) == (4, 1)
    tracks = scenario.available().tracks
    assert (tracks.main_replicas, tracks.candidate_replicas, tracks.candidate_percent) == (3, 1, 25)
    plan = scenario.check(passing())
    assert plan.facts.staged is not None
    assert plan.facts.staged.stage.kind is StageKind.CANARY
    scenario.checks(*[passing()] * (limit - 1))
    assert scenario.count(Reason.CANARY_STEP_PASSED) == 1
    assert (scenario.last.tracks.main_replicas, scenario.last.tracks.candidate_replicas) == (3, 2)
    scenario.available()  # the second canary pod is ready: the stable release gives its replica up
    assert (scenario.last.tracks.main_replicas, scenario.last.tracks.candidate_replicas) == (2, 2)
    scenario.checks(*[passing()] * limit)
    assert scenario.count(Reason.CANARY_STEP_PASSED) == 2
    assert scenario.count(Reason.PROMOTED) == 2  # v1, then v2
    assert scenario.last.tracks.main == V2
    assert scenario.last.tracks.main_replicas == 4
    scenario.available()
    assert scenario.phase is Phase.PROMOTED
    assert scenario.last.tracks.candidate is None


def test_a_canary_keeps_the_stable_capacity_until_the_candidate_serves() -> None:
    scenario = v1_stable(strategy=CANARY, replicas=4)
    tracks = scenario.spec(V2).tracks
    assert (tracks.main_replicas, tracks.candidate_replicas) == (4, 1)
    tracks = scenario.available().tracks
    assert (tracks.main_replicas, tracks.candidate_replicas) == (3, 1)


def test_a_failing_canary_is_rolled_back_and_the_stable_release_takes_every_replica_again() -> None:
    scenario = candidate(CANARY, replicas=4)
    scenario.checks(*[failing()] * scenario.analysis.failure_limit)
    assert "rolled back from v2 to v1" in scenario.only(Reason.ROLLED_BACK).message
    assert scenario.count(Reason.SHADOW_REJECTED) == 0
    assert scenario.facts.rollback_reason == Reason.ANALYSIS_FAILED
    tracks = scenario.last.tracks
    assert (tracks.main, tracks.main_replicas, tracks.candidate) == (V1, 4, None)


def test_a_canary_is_analysed_on_its_own_labels_without_paired_counts() -> None:
    scenario = candidate(CANARY, replicas=4)
    plan = check_due(scenario.facts, scenario.analysis, scenario.next_check_at())
    assert plan is not None
    assert plan.paired_with is None


def test_a_shadow_check_plan_pairs_with_the_stable_version() -> None:
    scenario = candidate(SHADOW)
    plan = check_due(scenario.facts, scenario.analysis, scenario.next_check_at())
    assert plan is not None
    assert plan.paired_with == "v1"


def test_the_first_version_replaces_whatever_the_strategy() -> None:
    scenario = Scenario(V1, strategy=SHADOW)
    decision = scenario.round()
    assert decision.tracks.candidate is None
    assert scenario.facts.staged is None
    assert scenario.count(Reason.SHADOW_STARTED) == 0


def test_promote_during_a_shadow_skips_its_stages_and_hands_over() -> None:
    scenario = candidate(SHADOW_THEN_CANARY)
    scenario.act(Action.PROMOTE)
    assert scenario.facts.stable == V2
    assert scenario.last.tracks.main == V2
    assert scenario.phase is Phase.PROGRESSING


def test_rollback_during_a_shadow_rejects_it() -> None:
    scenario = candidate(SHADOW)
    scenario.act(Action.ROLLBACK)
    assert "ManualRollback" in scenario.only(Reason.SHADOW_REJECTED).message
    assert scenario.last.tracks.candidate is None


def test_a_new_version_during_a_shadow_replaces_the_candidate_and_starts_again() -> None:
    scenario = candidate(SHADOW)
    decision = scenario.spec(V3)
    assert (decision.tracks.main, decision.tracks.candidate) == (V1, V3)
    assert scenario.count(Reason.SHADOW_STARTED) == 2
    assert [h.outcome for h in scenario.facts.history if h.release == V2] == ["superseded"]


def test_a_strategy_edited_mid_rollout_applies_to_the_next_one() -> None:
    scenario = candidate(SHADOW)
    scenario.strategy = CANARY
    scenario.wait(1)
    assert scenario.last.tracks.mirrored
    scenario.checks(*[paired()] * scenario.analysis.success_limit)
    assert scenario.facts.stable == V2
    assert scenario.count(Reason.CANARY_STEP_STARTED) == 0


@settings(max_examples=40, deadline=None)
@given(outcomes=st.lists(st.sampled_from(["pass", "fail", "worse", "error"]), max_size=14))
def test_a_restarted_operator_reaches_the_same_outcome_at_every_step(outcomes: list[str]) -> None:
    """The stage, its step and the streaks live in status: reading them back changes nothing."""
    made = {
        "pass": paired,
        "fail": failing,
        "worse": paired_worse,
        "error": lambda: Measurement(error="down"),
    }
    runs = [
        candidate(SHADOW_THEN_CANARY, replicas=4, restart_every_round=restart) for restart in (False, True)
    ]
    for outcome in outcomes:
        for run in runs:
            if phase_of(run.facts) is Phase.ANALYZING:
                run.check(made[outcome]())
            else:
                run.available()
    plain, restarted = runs
    assert plain.facts.staged == restarted.facts.staged
    assert plain.last.tracks == restarted.last.tracks
    assert [e.reason for e in plain.events] == [e.reason for e in restarted.events]
    # Whatever happened, v1 kept the Service while v2 was a shadow, and no user met a shadow.
    for decision in plain.decisions:
        if decision.tracks.mirrored:
            assert decision.tracks.main == V1
            assert not decision.tracks.candidate_in_service


def test_a_handover_past_its_deadline_still_ends_when_the_main_deployment_serves() -> None:
    """Degraded by the deadline while the main Deployment rolls to the promoted candidate, then
    available after all: the candidate's own track goes as it would have on time."""
    scenario = candidate(SHADOW)
    scenario.checks(*[paired()] * scenario.analysis.success_limit)
    scenario.deployment = None  # the main Deployment's rollout is never observed in time
    scenario.wait(scenario.analysis.interval + 700)
    assert scenario.phase is Phase.DEGRADED
    assert scenario.last.tracks.candidate == V2  # still serving from its own track
    scenario.round()
    scenario.available()
    assert scenario.phase is Phase.PROMOTED
    assert scenario.last.tracks.candidate is None


STEPS = ["pass", "fail", "worse", "error", "available", "v3", "promote", "rollback", "retry", "wait"]


@settings(max_examples=60, deadline=None)
@given(
    strategy=st.sampled_from([SHADOW, SHADOW_THEN_CANARY, CANARY]),
    replicas=st.one_of(st.none(), st.integers(1, 12)),
    steps=st.lists(st.sampled_from(STEPS), max_size=25),
)
def test_whatever_happens_users_only_meet_a_candidate_as_its_stage_allows(
    strategy: StrategySpec, replicas: int | None, steps: list[str]
) -> None:
    """Checks, availability, a new version and manual actions in any order: a shadow never has
    users, only the stable release mirrors, a canary never takes every replica."""
    scenario = candidate(strategy, replicas=replicas)
    checks = {"pass": paired, "fail": failing, "worse": paired_worse, "error": lambda: Measurement(error="x")}
    actions = {"promote": Action.PROMOTE, "rollback": Action.ROLLBACK, "retry": Action.RETRY}
    for step in steps:
        if step in checks and phase_of(scenario.facts) is Phase.ANALYZING:
            scenario.check(checks[step]())
        elif step == "available":
            scenario.available()
        elif step == "v3":
            scenario.spec(V3)
        elif step in actions:
            scenario.act(actions[step])
        else:
            scenario.wait(1)
        tracks, facts = scenario.last.tracks, scenario.facts
        if facts.staged is None:
            assert tracks.candidate is None
            assert not tracks.mirrored
        if tracks.mirrored:
            assert tracks.main == facts.stable
            assert tracks.candidate == facts.current
            assert tracks.candidate != facts.stable
            assert not tracks.candidate_in_service
        if tracks.candidate_in_service and not tracks.handing_over:
            assert tracks.main == facts.stable
            percent = tracks.candidate_percent
            assert percent is None or percent < 100
        assert tracks.main in (facts.stable, facts.current)
