"""The ModelDeployment status: facts to and from their stored form, and derived conditions. Pure.

Conditions follow kstatus (`Ready`, plus the abnormal-true `Progressing` and `Degraded`, and
`RolledBack`), so `kubectl wait --for=condition=Ready`, Flux and Argo CD health all work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload

from vigil_operator.analysis import Streaks, Verdict, WatchState
from vigil_operator.decisions import (
    CheckRecord,
    Facts,
    HistoryEntry,
    Phase,
    Reason,
    metrics_unavailable,
    phase_of,
)
from vigil_operator.releases import AnalysisSpec, Release, StrategyType
from vigil_operator.strategies import Stage, StagedRollout, StageKind, tracks_for
from vigil_operator.text import EVENT_LIMIT, bounded

STATUS_MESSAGE_LIMIT = EVENT_LIMIT  # a message may quote a bounded check reason and a refusal


@overload
def to_timestamp(moment: datetime) -> str: ...
@overload
def to_timestamp(moment: None) -> None: ...
@overload
def to_timestamp(moment: datetime | None) -> str | None: ...
def to_timestamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def from_timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def facts_from_status(status: dict[str, Any] | None) -> Facts:
    """Facts from a stored status; an empty or foreign status gives the facts of a new object."""
    status = status or {}
    streaks = status.get("streaks") or {}
    check = status.get("lastCheck") or None
    return Facts(
        current=Release.from_dict(status.get("currentRelease")),
        stable=Release.from_dict(status.get("stableRelease")),
        failed_version=status.get("failedVersion") or None,
        rollout_started_at=from_timestamp(status.get("rolloutStartedAt")),
        serving_since=from_timestamp(status.get("servingSince")),
        rollback_reason=status.get("rollbackReason") or None,
        degraded_reason=status.get("degradedReason") or None,
        streaks=Streaks(
            failures=int(streaks.get("failures", 0)),
            passes=int(streaks.get("passes", 0)),
            errors=int(streaks.get("errors", 0)),
        ),
        watch=_watch_from_dict(status.get("watch") or {}),
        counted_until=from_timestamp((status.get("watch") or {}).get("countedUntil")),
        last_check=_check_from_dict(check) if check and check.get("time") else None,
        history=tuple(
            HistoryEntry(
                release,
                str(item.get("outcome", "")),
                from_timestamp(item.get("at")) or _EPOCH,
                str(item.get("reason", "")),
            )
            for item in status.get("history") or []
            if (release := Release.from_dict(item)) is not None
        ),
        retries=int(status.get("retries") or 0),
        apply_error=status.get("applyError") or None,
        refused_specs=tuple(str(h) for h in status.get("refusedSpecHashes") or ()),
        staged=_staged_from_dict(status.get("strategy") or {}),
    )


def _staged_from_dict(data: dict[str, Any]) -> StagedRollout | None:
    """The staged rollout as stored; None (no candidate track) when there is none or it is unreadable."""
    try:
        stages = tuple(
            Stage(StageKind(item["type"]), int(item.get("percent", 0))) for item in data.get("stages") or []
        )
        if not stages:
            return None
        step = int(data.get("step", 1)) - 1
        return StagedRollout(StrategyType(data["type"]), stages, min(max(step, 0), len(stages)))
    except (KeyError, TypeError, ValueError):
        return None


def strategy_status(facts: Facts, replicas: int | None) -> dict[str, Any] | None:
    """`status.strategy`: the candidate's stage, its step and its share of the user requests."""
    staged, current = facts.staged, facts.current
    if staged is None or current is None:
        return None
    tracks = tracks_for(current, facts.stable, staged, replicas)  # the step's plan
    return {
        "type": staged.strategy.value,
        "stage": staged.stage.kind.value,
        "step": staged.step + 1,
        "steps": len(staged.stages) + 1,
        "candidatePercent": 100 if staged.handing_over else tracks.candidate_percent,
        "candidateReplicas": tracks.candidate_replicas,
        "stages": [{"type": stage.kind.value, "percent": stage.percent} for stage in staged.stages],
    }


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _watch_from_dict(data: dict[str, Any]) -> WatchState:
    """The CUSUM state as stored; anything unreadable restarts the watch (fresh, not failed)."""
    try:
        state = WatchState(
            statistic=float(data.get("statistic", 0.0)),
            samples=float(data.get("samples", 0.0)),
            seconds=float(data.get("seconds", 0.0)),
        )
    except (TypeError, ValueError):
        return WatchState()
    values = (state.statistic, state.samples, state.seconds)
    return state if all(math.isfinite(v) and v >= 0 for v in values) else WatchState()


def _check_from_dict(data: dict[str, Any]) -> CheckRecord:
    return CheckRecord(
        time=from_timestamp(data["time"]) or _EPOCH,
        verdict=Verdict(data.get("verdict", "error")),
        value=data.get("value"),
        samples=data.get("samples"),
        lower=data.get("lower"),
        upper=data.get("upper"),
        query=str(data.get("query", "")),
        reason=str(data.get("reason", "")),
    )


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


def conditions_of(facts: Facts, analysis: AnalysisSpec, desired: Release) -> list[Condition]:
    """Ready, Progressing, Degraded and RolledBack, then kstatus's own Reconciling and Stalled.

    kstatus (Flux's `wait`, kpt, cli-utils) reads only Reconciling and Stalled for a custom
    kind: Reconciling=True is InProgress, Stalled=True is Failed, neither is Current.
    """
    phase = phase_of(facts)
    current = facts.current.version if facts.current else "nothing"
    no_data = metrics_unavailable(facts, analysis)
    if facts.apply_error is not None:  # first: it is what a person must fix, whatever else follows
        degraded = Condition(
            "Degraded", True, "ApplyFailed", f"the API server refused the Deployment: {facts.apply_error}"
        )
    elif facts.degraded_reason is not None:
        degraded = Condition("Degraded", True, facts.degraded_reason, message_of(facts, desired))
    elif no_data:
        degraded = Condition(
            "Degraded",
            True,
            "MetricsUnavailable",
            f"{facts.streaks.errors} checks in a row returned no usable data; keeping {current}",
        )
    else:
        degraded = Condition("Degraded", False, "AsExpected", "")
    ready = phase is Phase.PROMOTED and facts.current == desired
    moving = phase in (Phase.PROGRESSING, Phase.ANALYZING)
    progressing = Condition(
        "Progressing",
        moving,
        "RolloutInProgress" if phase is Phase.PROGRESSING else ("Analyzing" if moving else "Idle"),
        f"{current}: {phase.value}" if moving else "",
    )
    stalled = _stalled(facts, desired, degraded)
    return [
        Condition("Ready", ready, phase.value, message_of(facts, desired)),
        progressing,
        degraded,
        Condition(
            "RolledBack",
            facts.rollback_reason is not None,
            facts.rollback_reason or "NotRolledBack",
            f"{facts.failed_version} was rolled back to {current}" if facts.rollback_reason else "",
        ),
        _reconciling(progressing, stalled),
        stalled,
    ]


def _stalled(facts: Facts, desired: Release, degraded: Condition) -> Condition:
    """kstatus's Stalled: Degraded or rolled back, so only a person moves things on.

    Degraded (its reason first): nothing to revert to, the restored release failed too, or
    `errorLimit` checks had no data (MetricsUnavailable: the release serves but nothing judges
    it; it clears by itself once a check reads data). Rolled back: the spec names a version
    that failed; change the spec or retry.
    """
    if degraded.status:
        return Condition("Stalled", True, degraded.reason, degraded.message)
    if phase_of(facts) is Phase.ROLLED_BACK:
        return Condition("Stalled", True, facts.rollback_reason or "RolledBack", message_of(facts, desired))
    return Condition("Stalled", False, "AsExpected", "")


def _reconciling(progressing: Condition, stalled: Condition) -> Condition:
    """kstatus's Reconciling: the operator is rolling out or analysing and needs nobody.

    Never True with Stalled: kstatus takes whichever of the two it meets first.
    """
    if stalled.status:
        return Condition("Reconciling", False, "Stalled", "")
    return Condition("Reconciling", progressing.status, progressing.reason, progressing.message)


def message_of(facts: Facts, desired: Release) -> str:
    """One sentence for `status.message` and the Ready condition."""
    current = facts.current.version if facts.current else "nothing"
    match phase_of(facts):
        case Phase.PROGRESSING:
            return f"rolling out {current}"
        case Phase.ANALYZING:
            check = facts.last_check.reason if facts.last_check else "waiting for the first check"
            stage = f" as {facts.staged.position()}" if facts.staged is not None else ""
            return f"analysing {current}{stage}: {check}"
        case Phase.PROMOTED:
            return f"{current} is stable and serving"
        case Phase.ROLLED_BACK if facts.rollback_reason == Reason.SHADOW_REJECTED:
            return (
                f"{facts.failed_version} was rejected as a shadow (it answered no user request); "
                f"{current} serves. Change spec.version, or run kubectl vigil retry, to try "
                f"{desired.version} again"
            )
        case Phase.ROLLED_BACK:
            return (
                f"{facts.failed_version} was rolled back ({facts.rollback_reason}); {current} serves. "
                f"Change spec.version, or run kubectl vigil retry, to try {desired.version} again"
            )
        case Phase.DEGRADED:
            return f"{current} needs attention: {facts.degraded_reason}"


def status_of(
    facts: Facts,
    analysis: AnalysisSpec,
    desired: Release,
    generation: int,
    now: datetime,
    previous_conditions: list[dict[str, Any]] | None = None,
    replicas: int | None = None,
) -> dict[str, Any]:
    """The full status to store; a condition keeps its lastTransitionTime while unchanged.

    `replicas` (spec.replicas) gives the candidate's share of the replicas in `status.strategy`.
    """
    before = {c.get("type"): c for c in previous_conditions or []}
    conditions = []
    for condition in conditions_of(facts, analysis, desired):
        status = "True" if condition.status else "False"
        old = before.get(condition.type) or {}
        since = old.get("lastTransitionTime") if old.get("status") == status else None
        conditions.append(
            {
                "type": condition.type,
                "status": status,
                "reason": condition.reason,
                "message": bounded(condition.message, STATUS_MESSAGE_LIMIT),
                "observedGeneration": generation,
                "lastTransitionTime": since or to_timestamp(now),
            }
        )
    check = facts.last_check
    return {
        "observedGeneration": generation,
        "phase": phase_of(facts).value,
        "message": bounded(message_of(facts, desired), STATUS_MESSAGE_LIMIT),
        "currentVersion": facts.current.version if facts.current else None,
        "stableVersion": facts.stable.version if facts.stable else None,
        "failedVersion": facts.failed_version,
        "currentRelease": facts.current.to_dict() if facts.current else None,
        "stableRelease": facts.stable.to_dict() if facts.stable else None,
        "rolloutStartedAt": to_timestamp(facts.rollout_started_at),
        "servingSince": to_timestamp(facts.serving_since),
        "rollbackReason": facts.rollback_reason,
        "degradedReason": facts.degraded_reason,
        "retries": facts.retries,
        "applyError": facts.apply_error,
        "refusedSpecHashes": list(facts.refused_specs) or None,
        "strategy": strategy_status(facts, replicas),
        "streaks": {
            "failures": facts.streaks.failures,
            "passes": facts.streaks.passes,
            "errors": facts.streaks.errors,
        },
        "watch": {
            "statistic": facts.watch.statistic,  # unrounded: a restart must not change the evidence
            "samples": facts.watch.samples,
            "seconds": facts.watch.seconds,
            "countedUntil": to_timestamp(facts.counted_until),
        },
        "lastCheck": None
        if check is None
        else {
            "time": to_timestamp(check.time),
            "verdict": check.verdict.value,
            "value": check.value,
            "samples": check.samples,
            "lower": check.lower,
            "upper": check.upper,
            "query": check.query,
            "reason": bounded(check.reason, STATUS_MESSAGE_LIMIT),
        },
        "history": [
            {
                **entry.release.to_dict(),
                "outcome": entry.outcome,
                "at": to_timestamp(entry.at),
                "reason": entry.reason,
            }
            for entry in facts.history
        ],
        "conditions": conditions,
    }
