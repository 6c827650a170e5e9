"""The strategies' stages, replica split and tracks (pure), with properties over every input."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from unit.scenario import ANALYSIS, T0, V1, V2

from vigil_operator.decisions import Facts
from vigil_operator.releases import StrategySpec, StrategyType
from vigil_operator.status import facts_from_status, status_of
from vigil_operator.strategies import (
    FULL,
    Stage,
    StagedRollout,
    StageKind,
    canary_replicas,
    staged_rollout,
    stages_of,
    tracks_for,
)

SHADOW = Stage(StageKind.SHADOW)


def canary(percent: int) -> Stage:
    return Stage(StageKind.CANARY, percent)


@pytest.mark.parametrize(
    ("strategy", "stages"),
    [
        (StrategySpec(), ()),
        (StrategySpec(StrategyType.CANARY), (canary(10),)),
        (StrategySpec(StrategyType.CANARY, canary_steps=(10, 50)), (canary(10), canary(50))),
        (StrategySpec(StrategyType.SHADOW), (SHADOW,)),
        (
            StrategySpec(StrategyType.SHADOW, canary_steps=(25,), after_shadow=StrategyType.CANARY),
            (SHADOW, canary(25)),
        ),
        # Canary steps written for a later switch are not stages of a shadow followed by Replace.
        (StrategySpec(StrategyType.SHADOW, canary_steps=(25,)), (SHADOW,)),
    ],
)
def test_the_stages_of_each_strategy(strategy: StrategySpec, stages: tuple[Stage, ...]) -> None:
    assert stages_of(strategy) == stages


def test_the_first_version_and_a_return_to_the_stable_release_simply_replace() -> None:
    shadow = StrategySpec(StrategyType.SHADOW)
    assert staged_rollout(shadow, None, V1) is None
    assert staged_rollout(shadow, V1, V1) is None
    assert staged_rollout(StrategySpec(), V1, V2) is None
    assert staged_rollout(shadow, V1, V2) == StagedRollout(StrategyType.SHADOW, (SHADOW,), 0)


@given(total=st.integers(1, 10_000), percent=st.integers(1, 99))
def test_a_canary_never_takes_every_replica_and_gets_at_least_its_share(total: int, percent: int) -> None:
    stable, candidate = canary_replicas(total, percent)
    assert stable is not None
    assert stable >= 1
    assert candidate >= 1
    assert stable + candidate == max(total, 2)
    if total >= 2:
        assert candidate == min(math.ceil(percent * total / 100), total - 1)


@given(total=st.integers(1, 10_000), low=st.integers(1, 98), high=st.integers(2, 99))
def test_a_higher_step_never_gives_the_candidate_fewer_replicas(total: int, low: int, high: int) -> None:
    low, high = min(low, high), max(low, high)
    assert canary_replicas(total, low)[1] <= canary_replicas(total, high)[1]


def test_four_replicas_at_25_percent_are_three_stable_and_one_candidate() -> None:
    assert canary_replicas(4, 25) == (3, 1)
    assert canary_replicas(4, 50) == (2, 2)
    assert canary_replicas(10, 10) == (9, 1)
    assert canary_replicas(1, 10) == (1, 1)  # documented: 50% with one replica


def test_without_spec_replicas_a_canary_runs_one_replica_and_leaves_the_stable_ones_to_the_hpa() -> None:
    assert canary_replicas(None, 90) == (None, 1)
    staged = StagedRollout(StrategyType.CANARY, (canary(90),))
    tracks = tracks_for(V2, V1, staged, None, candidate_ready=1)
    assert (tracks.main_replicas, tracks.candidate_replicas) == (None, 1)
    assert tracks.candidate_percent is None


stage_lists = st.lists(
    st.one_of(st.just(SHADOW), st.integers(1, 99).map(canary)), min_size=1, max_size=11
).map(tuple)


@given(
    stages=stage_lists,
    step=st.integers(0, 12),
    replicas=st.one_of(st.none(), st.integers(1, 500)),
    ready=st.integers(0, 600),
)
def test_the_tracks_keep_users_on_released_versions_as_each_stage_says(
    stages: tuple[Stage, ...], step: int, replicas: int | None, ready: int
) -> None:
    staged = StagedRollout(StrategyType.CANARY, stages, min(step, len(stages)))
    tracks = tracks_for(V2, V1, staged, replicas, candidate_ready=ready)
    assert tracks.candidate == V2
    if staged.handing_over:
        assert tracks.main == V2  # promoted: the main Deployment rolls to it
        assert not tracks.mirrored
        assert tracks.handing_over
        return
    assert tracks.main == V1  # the stable release keeps the Service
    assert tracks.mirrored == (staged.stage.kind is StageKind.SHADOW)
    assert tracks.candidate_in_service == (staged.stage.kind is StageKind.CANARY)
    if staged.stage.kind is StageKind.SHADOW:
        assert tracks.candidate_percent == 0  # a shadow answers no user
        assert tracks.main_replicas == replicas
        return
    if replicas is None:
        assert tracks.main_replicas is None  # the HPA's
        return
    assert tracks.main_replicas is not None
    # Capacity is kept: the stable release gives up no more replicas than the candidate has ready,
    # and never more than the step asks for.
    assert tracks.main_replicas + min(ready, tracks.candidate_replicas) >= replicas
    assert tracks.main_replicas >= canary_replicas(replicas, staged.stage.percent)[0] or 0
    assert 0 < (tracks.candidate_percent or 0) < 100


def test_the_stable_release_gives_replicas_up_as_canary_pods_become_ready() -> None:
    staged = StagedRollout(StrategyType.CANARY, (canary(50),))
    assert [tracks_for(V2, V1, staged, 4, candidate_ready=ready).main_replicas for ready in range(4)] == [
        4,
        3,
        2,
        2,
    ]
    assert tracks_for(V2, V1, staged, 4).main_replicas == 2  # the plan, as status shows it


def test_without_a_staged_rollout_the_main_deployment_runs_the_current_release() -> None:
    tracks = tracks_for(V2, V1, None, 3, candidate_ready=1)
    assert (tracks.main, tracks.main_replicas, tracks.candidate) == (V2, 3, None)


@given(stages=stage_lists, step=st.integers(0, 12))
def test_a_staged_rollout_survives_the_status_round_trip(stages: tuple[Stage, ...], step: int) -> None:
    staged = StagedRollout(StrategyType.SHADOW, stages, min(step, len(stages)))
    facts = Facts(current=V2, stable=V1, staged=staged)
    status = status_of(facts, ANALYSIS, V2, 1, T0, replicas=4)
    assert facts_from_status(status).staged == staged
    assert status["strategy"]["step"] == staged.step + 1
    assert status["strategy"]["steps"] == len(stages) + 1
    assert status["strategy"]["stage"] == staged.stage.kind.value


@pytest.mark.parametrize(
    "stored",
    [{}, {"stages": []}, {"type": "Nope", "stages": [{"type": "Shadow"}]}, {"stages": [{"type": "Bad"}]}],
)
def test_an_unreadable_stored_strategy_means_no_candidate_track(stored: dict[str, object]) -> None:
    status = {"currentRelease": V2.to_dict(), "stableRelease": V1.to_dict(), "strategy": stored}
    assert facts_from_status(status).staged is None


def test_the_full_stage_is_the_last_step() -> None:
    staged = StagedRollout(StrategyType.SHADOW, (SHADOW, canary(25)))
    assert staged.position() == "Shadow (step 1 of 3)"
    assert staged.next().position() == "Canary 25% (step 2 of 3)"
    assert staged.next().next().stage == FULL
    assert staged.next().next().next().step == 2  # never past Full
