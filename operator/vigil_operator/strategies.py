"""How a candidate reaches requests: the stages of a strategy and the tracks they run. Pure.

Under `Replace` the candidate takes the main Deployment (behind the ModelDeployment's Service)
and every request. Under `Shadow` and `Canary` two tracks run: the stable release in the main
Deployment and the candidate in a Deployment of its own, which the Service either does not
select (a shadow: the stable release mirrors each request to it) or selects beside the stable
pods (a canary: its share of the replicas, and so of the requests).

A rollout's stages are fixed when it starts (`stages_of`) and kept in status with the step it is
at, so an edit of `spec.strategy` applies to the next rollout and a restarted operator goes on
where it was. `decide()` moves the step along; `tracks_for` says what each Deployment runs.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace

from vigil_operator.releases import Release, StrategySpec, StrategyType


class StageKind(enum.StrEnum):
    SHADOW = "Shadow"  # mirrored copies of every request; answers no user
    CANARY = "Canary"  # a share of the replicas behind the Service
    FULL = "Full"  # promoted: the main Deployment rolls to it, the candidate track serves until then


@dataclass(frozen=True)
class Stage:
    kind: StageKind
    percent: int = 0  # canary: the share of the replicas asked for; 0 for a shadow

    def describe(self) -> str:
        return f"{self.kind} {self.percent}%" if self.kind is StageKind.CANARY else str(self.kind)


FULL = Stage(StageKind.FULL, 100)


def stages_of(strategy: StrategySpec) -> tuple[Stage, ...]:
    """The stages a candidate must pass before it is promoted; empty for Replace."""
    canary = tuple(Stage(StageKind.CANARY, percent) for percent in strategy.canary_steps)
    match strategy.type:
        case StrategyType.REPLACE:
            return ()
        case StrategyType.CANARY:
            return canary
        case StrategyType.SHADOW:
            then = canary if strategy.after_shadow is StrategyType.CANARY else ()
            return (Stage(StageKind.SHADOW), *then)


@dataclass(frozen=True)
class StagedRollout:
    """A candidate's way through the stages of its strategy (status.strategy)."""

    strategy: StrategyType
    stages: tuple[Stage, ...]
    step: int = 0  # index into `stages`; len(stages) once promoted, while the main Deployment rolls to it

    @property
    def stage(self) -> Stage:
        return self.stages[self.step] if self.step < len(self.stages) else FULL

    @property
    def handing_over(self) -> bool:
        """Promoted: the main Deployment rolls to the candidate, whose own track serves meanwhile."""
        return self.step >= len(self.stages)

    @property
    def last(self) -> bool:
        return self.step == len(self.stages) - 1

    def next(self) -> StagedRollout:
        return replace(self, step=min(self.step + 1, len(self.stages)))

    def promoted(self) -> StagedRollout:
        """Past every stage, whichever it was at (the last passed, or `promote` was asked for)."""
        return replace(self, step=len(self.stages))

    def position(self) -> str:
        """`Canary 25% (step 2 of 3)`: steps count the stages and the final full rollout."""
        return f"{self.stage.describe()} ({self.step_of()})"

    def step_of(self) -> str:
        return f"step {self.step + 1} of {len(self.stages) + 1}"


def staged_rollout(strategy: StrategySpec, stable: Release | None, target: Release) -> StagedRollout | None:
    """The stages a rollout of `target` goes through, or None when it simply replaces.

    Without a stable release (the first version, or nothing promoted yet) there is nothing to
    shadow or to share with, and rolling back to the stable release is no staged rollout either:
    those replace, as `Replace` does.
    """
    stages = stages_of(strategy)
    if not stages or stable is None or target == stable:
        return None
    return StagedRollout(strategy.type, stages)


@dataclass(frozen=True)
class Tracks:
    """What each Deployment runs after a decision, and how many replicas it gets.

    `None` replicas are left to whoever owns them (an HPA when `spec.replicas` is unset); the
    operator then never writes them.
    """

    main: Release  # the main Deployment, behind the Service
    main_replicas: int | None
    candidate: Release | None = None  # the candidate Deployment; None: it must not exist
    candidate_replicas: int = 0
    candidate_in_service: bool = False  # the Service selects its pods (a canary), or not (a shadow)
    mirrored: bool = False  # the main track copies every request to the candidate's own Service
    # Promoted: the candidate's Deployment is left as it is (no restart) until the main one serves it.
    handing_over: bool = False

    @property
    def candidate_percent(self) -> int | None:
        """The candidate's share of the replicas behind the Service (and so of the user requests),
        in percent; None when the main Deployment's replicas are not the operator's to know."""
        if self.candidate is None or not self.candidate_in_service:
            return 0
        if self.main_replicas is None:
            return None
        return round(100 * self.candidate_replicas / (self.main_replicas + self.candidate_replicas))


def canary_replicas(total: int | None, percent: int) -> tuple[int | None, int]:
    """(stable, candidate) replicas for a canary at `percent` of `total`.

    The candidate gets ceil(percent of total), at least 1 and at most all but one: the stable
    release always keeps a replica, so a canary never takes every request (with 1 replica in
    all, each track runs one: 50%). Without `total` (`spec.replicas` unset: an HPA scales the
    main Deployment) the candidate runs one replica beside whatever the HPA keeps, whose replicas
    the operator never writes: the fewest users a canary can reach, whatever the step says.
    """
    if total is None:
        return None, 1
    if total < 2:
        return 1, 1
    candidate = min(max(1, math.ceil(percent * total / 100)), total - 1)
    return total - candidate, candidate


def tracks_for(
    current: Release,
    stable: Release | None,
    staged: StagedRollout | None,
    replicas: int | None,
    *,
    candidate_ready: int | None = None,
) -> Tracks:
    """The Deployments' releases and replicas for the facts of a decision.

    A canary's stable release gives up only as many replicas as the candidate has ready behind
    the Service (`candidate_ready`; None: the step's plan, as if all were), so neither a canary
    starting, nor a step up, nor a shadow turning canary lowers the capacity. While promoted and
    handing over, the candidate's track keeps its last stage's shape until the main Deployment
    serves it.
    """
    if staged is None or stable is None or (current == stable and not staged.handing_over):
        return Tracks(current, replicas)
    shadow_replicas = replicas or 1  # a shadow gets a copy of every request: the same capacity
    if staged.handing_over:
        last = staged.stages[-1]
        in_service = last.kind is StageKind.CANARY
        candidate = canary_replicas(replicas, last.percent)[1] if in_service else shadow_replicas
        return Tracks(
            current, replicas, current, candidate, candidate_in_service=in_service, handing_over=True
        )
    stage = staged.stage
    if stage.kind is StageKind.SHADOW:
        return Tracks(stable, replicas, current, shadow_replicas, mirrored=True)
    kept, candidate = canary_replicas(replicas, stage.percent)
    if kept is not None and replicas is not None and candidate_ready is not None:
        kept = max(kept, replicas - candidate_ready)
    return Tracks(stable, kept, current, candidate, candidate_in_service=True)
