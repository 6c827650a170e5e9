"""The operator's own Prometheus metrics, and forgetting the series nothing will update again.

A series that stays after its version is gone keeps its last value forever, and an alert on it
never resolves; so the series of versions that are neither current nor stable, and every series
of a deleted ModelDeployment, are removed.

The state gauges (phase, Degraded, threshold) mirror the status every round, so alerts and the
dashboard read what `kubectl get mdep` shows without kube-state-metrics' custom resource config.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from vigil_operator.analysis import Verdict
from vigil_operator.decisions import Facts, Phase, Reason, phase_of
from vigil_operator.releases import AnalysisSpec, Release
from vigil_operator.status import conditions_of, strategy_status
from vigil_operator.strategies import StageKind

OBJECT = ("namespace", "name")  # every per-object metric's first labels: the ModelDeployment's

CHECKS = Counter("vigil_operator_checks_total", "Analysis checks by verdict", [*OBJECT, "verdict"])
ROLLBACKS = Counter("vigil_operator_rollbacks_total", "Automatic and manual rollbacks", [*OBJECT, "reason"])
PROMOTIONS = Counter("vigil_operator_promotions_total", "Versions promoted to stable", [*OBJECT])
LAST_ACCURACY = Gauge(
    "vigil_operator_last_accuracy",
    "The value of the last successful check of each ModelDeployment",
    [*OBJECT, "version"],
)
LEADER = Gauge(
    "vigil_operator_leader",
    "1 while this replica holds the leader Lease and acts, 0 while it stands by",
)
RECONCILE_SECONDS = Histogram(
    "vigil_operator_reconcile_duration_seconds",
    "Time of one reconcile round of one ModelDeployment, Prometheus query included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Per Prometheus (its URL without credentials): what a batched analysis is meant to keep low.
PROMETHEUS_QUERIES = Counter(
    "vigil_operator_prometheus_queries_total",
    "Queries sent to each Prometheus (batched checks, custom queries, paired counts, diagnoses)",
    ["prometheus"],
)
BATCH_SIZE = Histogram(
    "vigil_operator_batch_size",
    "Checks answered by one batched query, per Prometheus",
    ["prometheus"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)
PHASE = Gauge(
    "vigil_operator_phase",
    "1 for the phase each ModelDeployment is in (status.phase), 0 for every other phase",
    [*OBJECT, "phase"],
)
DEGRADED = Gauge(
    "vigil_operator_degraded",
    "1 while the Degraded condition is True, 0 otherwise; `reason` is the condition's reason",
    [*OBJECT, "reason"],
)
THRESHOLD = Gauge(
    "vigil_operator_threshold",
    "spec.analysis.threshold of each ModelDeployment: below it a version fails its checks",
    OBJECT,
)
SHADOW_REJECTIONS = Counter(
    "vigil_operator_shadow_rejections_total",
    "Shadow candidates rejected (they answered no user request, so no rollback is counted)",
    OBJECT,
)
STAGE = Gauge(
    "vigil_operator_strategy_stage",
    "1 for the stage the candidate is at (status.strategy.stage; None: no candidate track), 0 for the others",
    [*OBJECT, "stage"],
)
STEP = Gauge(
    "vigil_operator_strategy_step",
    "The candidate's step in its strategy (status.strategy.step), 0 without a candidate track",
    OBJECT,
)
CANDIDATE_SHARE = Gauge(
    "vigil_operator_candidate_share",
    "Share of the replicas behind the Service that run a version under analysis, 0 to 1 "
    "(a shadow: 0; Replace while analysing: 1); absent while an HPA owns the stable replicas",
    OBJECT,
)
NO_STAGE = "None"
# Each per-object metric with its label names, in the order `remove` takes their values.
PER_OBJECT: dict[Counter | Gauge, tuple[str, ...]] = {
    CHECKS: (*OBJECT, "verdict"),
    ROLLBACKS: (*OBJECT, "reason"),
    PROMOTIONS: OBJECT,
    LAST_ACCURACY: (*OBJECT, "version"),
    PHASE: (*OBJECT, "phase"),
    DEGRADED: (*OBJECT, "reason"),
    THRESHOLD: OBJECT,
    SHADOW_REJECTIONS: OBJECT,
    STAGE: (*OBJECT, "stage"),
    STEP: OBJECT,
    CANDIDATE_SHARE: OBJECT,
}
# Every `reason` of the rollbacks counter. Each starts at 0: `increase()` needs a sample before
# the first rollback, or an alert on it would never see the first one.
ROLLBACK_REASONS = (Reason.ANALYSIS_FAILED, Reason.PROGRESS_DEADLINE_EXCEEDED, Reason.MANUAL_ROLLBACK)
NOT_DEGRADED = "AsExpected"


@dataclass(frozen=True)
class ObjectState:
    """What the state gauges of one ModelDeployment say after a round."""

    phase: Phase
    degraded_reason: str | None  # the Degraded condition's reason while it is True
    threshold: float
    stage: str = NO_STAGE  # status.strategy.stage
    step: int = 0  # status.strategy.step
    candidate_share: float | None = 0.0  # None: unknown (an HPA owns the stable replicas)


def object_state(
    facts: Facts, analysis: AnalysisSpec, desired: Release, replicas: int | None = None
) -> ObjectState:
    """The gauges' values, derived like the status itself, so the two never disagree. Pure."""
    degraded = next(c for c in conditions_of(facts, analysis, desired) if c.type == "Degraded")
    phase = phase_of(facts)
    strategy = strategy_status(facts, replicas)
    if strategy is None:
        share: float | None = 1.0 if phase is Phase.ANALYZING else 0.0
    else:
        percent = strategy["candidatePercent"]
        share = None if percent is None else percent / 100
    return ObjectState(
        phase=phase,
        degraded_reason=degraded.reason if degraded.status else None,
        threshold=analysis.threshold,
        stage=NO_STAGE if strategy is None else strategy["stage"],
        step=0 if strategy is None else strategy["step"],
        candidate_share=share,
    )


def record_state(namespace: str, name: str, state: ObjectState) -> None:
    """Set the state gauges of one object, and start its counters at 0 (see ROLLBACK_REASONS)."""
    for phase in Phase:
        PHASE.labels(namespace, name, phase.value).set(1 if phase is state.phase else 0)
    reason = state.degraded_reason or NOT_DEGRADED
    for labels in _label_values(DEGRADED, PER_OBJECT[DEGRADED]):
        if labels[:2] == (namespace, name) and labels[2] != reason:
            DEGRADED.remove(*labels)
    DEGRADED.labels(namespace, name, reason).set(0 if state.degraded_reason is None else 1)
    THRESHOLD.labels(namespace, name).set(state.threshold)
    for stage in (NO_STAGE, *StageKind):
        STAGE.labels(namespace, name, str(stage)).set(1 if stage == state.stage else 0)
    STEP.labels(namespace, name).set(state.step)
    if state.candidate_share is None:
        if (namespace, name) in _label_values(CANDIDATE_SHARE, OBJECT):
            CANDIDATE_SHARE.remove(namespace, name)
    else:
        CANDIDATE_SHARE.labels(namespace, name).set(state.candidate_share)
    SHADOW_REJECTIONS.labels(namespace, name)
    for rollback_reason in ROLLBACK_REASONS:
        ROLLBACKS.labels(namespace, name, rollback_reason.value)
    for verdict in Verdict:
        CHECKS.labels(namespace, name, verdict.value)
    PROMOTIONS.labels(namespace, name)


def _label_values(metric: Counter | Gauge, names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The label values of every series `metric` has now, projected on `names`.

    Read from the metric's own table of children (prometheus_client keeps them keyed by their
    label values), not through `collect()`: that builds a sample per series, and this runs
    several times a round, so at a thousand objects it made each round cost O(objects).
    """
    positions = [metric._labelnames.index(label) for label in names]
    with metric._lock:
        keys = list(metric._metrics)
    return list(dict.fromkeys(tuple(key[i] for i in positions) for key in keys))


def forget_versions(namespace: str, name: str, keep: Collection[str]) -> None:
    """Remove the last accuracy of the object's versions that are not in `keep` (current, stable)."""
    for labels in _label_values(LAST_ACCURACY, PER_OBJECT[LAST_ACCURACY]):
        if labels[:2] == (namespace, name) and labels[2] not in keep:
            LAST_ACCURACY.remove(*labels)


def forget_object(namespace: str, name: str) -> None:
    """Remove every series of a deleted ModelDeployment."""
    for metric, names in PER_OBJECT.items():
        for labels in _label_values(metric, names):
            if labels[:2] == (namespace, name):
                metric.remove(*labels)
