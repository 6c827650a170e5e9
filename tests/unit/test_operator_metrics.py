"""The operator's own metrics forget what nothing will update again (vigil_operator.metrics)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY

from vigil_operator import metrics
from vigil_operator.analysis import Streaks, Verdict
from vigil_operator.decisions import CheckRecord, Decision, Event, Facts, Phase, Reason
from vigil_operator.reconcile import _count
from vigil_operator.releases import AnalysisSpec, Release, StrategyType
from vigil_operator.status import conditions_of
from vigil_operator.strategies import Stage, StagedRollout, StageKind, Tracks

V1, V2, V3 = (Release(version=v, uri=f"file:///{v}", image="server:1") for v in ("v1", "v2", "v3"))


def _object() -> tuple[str, str]:
    """A namespace no other test uses: the metrics live in one process-wide registry."""
    return f"ns-{uuid.uuid4().hex[:8]}", "iris"


def last_accuracy(namespace: str, name: str, version: str) -> float | None:
    labels = {"namespace": namespace, "name": name, "version": version}
    return REGISTRY.get_sample_value("vigil_operator_last_accuracy", labels)


def series_of(namespace: str, name: str) -> list[str]:
    """Every sample of the operator's metrics that carries this object's labels."""
    return [
        sample.name
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.labels.get("namespace") == namespace and sample.labels.get("name") == name
    ]


def check(value: float, verdict: Verdict = Verdict.FAIL) -> CheckRecord:
    return CheckRecord(datetime.now(UTC), verdict, value, 400, None, None, query="", reason="")


def test_a_rolled_back_version_loses_its_last_accuracy_and_the_restored_one_keeps_its_own() -> None:
    namespace, name = _object()
    _count(
        namespace,
        name,
        Decision(Tracks(V1, 1), Facts(current=V1, stable=V1)),
        check(0.95, Verdict.PASS),
        "v1",
    )
    rolled_back = Decision(
        Tracks(V1, 1),
        Facts(current=V1, stable=V1, failed_version="v2", rollback_reason=Reason.ANALYSIS_FAILED),
        events=(Event(Reason.ROLLED_BACK, "rolled back from v2 to v1", warning=True),),
    )
    metrics.LAST_ACCURACY.labels(namespace, name, "v2").set(0.71)  # an earlier check of v2

    _count(namespace, name, rolled_back, check(0.70), "v2")

    assert last_accuracy(namespace, name, "v2") is None
    assert last_accuracy(namespace, name, "v1") == 0.95
    labels = {"namespace": namespace, "name": name, "reason": "AnalysisFailed"}
    assert REGISTRY.get_sample_value("vigil_operator_rollbacks_total", labels) == 1


def test_versions_under_analysis_and_stable_are_kept_superseded_ones_are_not() -> None:
    namespace, name = _object()
    for version in ("v1", "v2"):
        metrics.LAST_ACCURACY.labels(namespace, name, version).set(0.9)

    _count(
        namespace,
        name,
        Decision(Tracks(V3, 1), Facts(current=V3, stable=V1)),
        check(0.93, Verdict.PASS),
        "v3",
    )

    assert [last_accuracy(namespace, name, v) for v in ("v1", "v2", "v3")] == [0.9, None, 0.93]


def test_forgetting_one_objects_versions_leaves_other_objects_alone() -> None:
    namespace, name = _object()
    metrics.LAST_ACCURACY.labels(namespace, "other", "v2").set(0.8)
    metrics.LAST_ACCURACY.labels(namespace, name, "v2").set(0.8)

    metrics.forget_versions(namespace, name, keep={"v1"})

    assert last_accuracy(namespace, name, "v2") is None
    assert last_accuracy(namespace, "other", "v2") == 0.8


def test_a_deleted_object_loses_every_series_and_no_other_object_does() -> None:
    namespace, name = _object()
    for who in (name, "other"):
        promoted = Decision(
            Tracks(V1, 1), Facts(current=V1, stable=V1), events=(Event(Reason.PROMOTED, "v1 promoted"),)
        )
        _count(namespace, who, promoted, check(0.95, Verdict.PASS), "v1")
        metrics.ROLLBACKS.labels(namespace, who, "ManualRollback").inc()
    assert len(series_of(namespace, name)) >= 4

    metrics.forget_object(namespace, name)

    assert series_of(namespace, name) == []
    # `*_created` series exist unless something in the process turned them off (the model server does).
    assert {sample for sample in series_of(namespace, "other") if not sample.endswith("_created")} == {
        "vigil_operator_checks_total",
        "vigil_operator_promotions_total",
        "vigil_operator_rollbacks_total",
        "vigil_operator_last_accuracy",
    }


def test_forgetting_an_object_without_series_is_harmless() -> None:
    namespace, name = _object()
    metrics.forget_object(namespace, name)
    metrics.forget_versions(namespace, name, keep=())
    assert series_of(namespace, name) == []


ANALYSIS = AnalysisSpec(prometheus_url="http://p:9090", threshold=0.92, error_limit=3)
SERVING_SINCE = datetime(2025, 1, 1, tzinfo=UTC)


def gauge(metric: str, namespace: str, name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, {"namespace": namespace, "name": name, **labels})


@pytest.mark.parametrize(
    ("facts", "phase", "degraded"),
    [
        (Facts(current=V1), Phase.PROGRESSING, None),
        (Facts(current=V2, stable=V1, serving_since=SERVING_SINCE), Phase.ANALYZING, None),
        (Facts(current=V1, stable=V1, serving_since=SERVING_SINCE), Phase.PROMOTED, None),
        (
            Facts(
                current=V1,
                stable=V1,
                serving_since=SERVING_SINCE,
                failed_version="v2",
                rollback_reason=Reason.ANALYSIS_FAILED,
            ),
            Phase.ROLLED_BACK,
            None,
        ),
        (
            Facts(current=V1, serving_since=SERVING_SINCE, degraded_reason=Reason.NO_STABLE_RELEASE),
            Phase.DEGRADED,
            "NoStableRelease",
        ),
        (
            Facts(current=V1, stable=V1, serving_since=SERVING_SINCE, streaks=Streaks(errors=3)),
            Phase.PROMOTED,
            "MetricsUnavailable",
        ),
        (
            Facts(current=V1, stable=V1, serving_since=SERVING_SINCE, apply_error="denied by policy"),
            Phase.PROMOTED,
            "ApplyFailed",
        ),
    ],
    ids=["progressing", "analyzing", "promoted", "rolled-back", "degraded", "metrics-unavailable", "apply"],
)
def test_the_state_gauges_say_what_the_status_says(facts: Facts, phase: Phase, degraded: str | None) -> None:
    state = metrics.object_state(facts, ANALYSIS, V1)
    assert (state.phase, state.degraded_reason, state.threshold) == (phase, degraded, 0.92)
    assert (state.stage, state.step) == ("None", 0)  # Replace: no candidate track
    assert state.candidate_share == (1.0 if phase is Phase.ANALYZING else 0.0)
    conditions = {c.type: c for c in conditions_of(facts, ANALYSIS, V1)}
    assert conditions["Degraded"].status is (degraded is not None)


def test_recording_the_state_sets_one_phase_and_one_degraded_series() -> None:
    namespace, name = _object()
    metrics.record_state(namespace, name, metrics.ObjectState(Phase.DEGRADED, "NoStableRelease", 0.9))

    assert {p.value: gauge("vigil_operator_phase", namespace, name, phase=p.value) for p in Phase} == {
        "Progressing": 0,
        "Analyzing": 0,
        "Promoted": 0,
        "RolledBack": 0,
        "Degraded": 1,
    }
    assert gauge("vigil_operator_degraded", namespace, name, reason="NoStableRelease") == 1
    assert gauge("vigil_operator_threshold", namespace, name) == 0.9

    metrics.record_state(namespace, name, metrics.ObjectState(Phase.PROMOTED, None, 0.95))

    assert gauge("vigil_operator_phase", namespace, name, phase="Promoted") == 1
    assert gauge("vigil_operator_phase", namespace, name, phase="Degraded") == 0
    # The old reason's series goes: an alert on it resolves instead of reading a stale 1.
    assert gauge("vigil_operator_degraded", namespace, name, reason="NoStableRelease") is None
    assert gauge("vigil_operator_degraded", namespace, name, reason="AsExpected") == 0
    assert gauge("vigil_operator_threshold", namespace, name) == 0.95


def test_counters_start_at_zero_so_the_first_rollback_is_an_increase() -> None:
    namespace, name = _object()
    metrics.record_state(namespace, name, metrics.ObjectState(Phase.ANALYZING, None, 0.9))

    for reason in ("AnalysisFailed", "ProgressDeadlineExceeded", "ManualRollback"):
        assert gauge("vigil_operator_rollbacks_total", namespace, name, reason=reason) == 0
    for verdict in Verdict:
        assert gauge("vigil_operator_checks_total", namespace, name, verdict=verdict.value) == 0
    assert gauge("vigil_operator_promotions_total", namespace, name) == 0


def test_a_deleted_object_loses_its_state_gauges_too() -> None:
    namespace, name = _object()
    metrics.record_state(namespace, name, metrics.ObjectState(Phase.ANALYZING, "MetricsUnavailable", 0.9))

    metrics.forget_object(namespace, name)

    assert series_of(namespace, name) == []


V2 = Release("v2", "file:///m/v2.joblib", "img")
SHADOW = StagedRollout(StrategyType.SHADOW, (Stage(StageKind.SHADOW), Stage(StageKind.CANARY, 25)))


@pytest.mark.parametrize(
    ("staged", "replicas", "stage", "step", "share"),
    [
        (SHADOW, 4, "Shadow", 1, 0.0),
        (SHADOW.next(), 4, "Canary", 2, 0.25),
        (SHADOW.next(), None, "Canary", 2, None),  # an HPA owns the stable replicas: unknown
    ],
    ids=["shadow", "canary", "canary-hpa"],
)
def test_the_strategy_gauges_say_what_status_strategy_says(
    staged: StagedRollout, replicas: int | None, stage: str, step: int, share: float | None
) -> None:
    namespace, name = _object()
    facts = Facts(current=V2, stable=V1, serving_since=SERVING_SINCE, staged=staged)
    state = metrics.object_state(facts, ANALYSIS, V2, replicas)
    assert (state.stage, state.step, state.candidate_share) == (stage, step, share)

    metrics.record_state(namespace, name, state)

    labels = {"namespace": namespace, "name": name}
    for each in ("None", "Shadow", "Canary", "Full"):
        value = REGISTRY.get_sample_value("vigil_operator_strategy_stage", {**labels, "stage": each})
        assert value == (1.0 if each == stage else 0.0)
    assert REGISTRY.get_sample_value("vigil_operator_strategy_step", labels) == step
    assert REGISTRY.get_sample_value("vigil_operator_candidate_share", labels) == share
    assert REGISTRY.get_sample_value("vigil_operator_shadow_rejections_total", labels) == 0


def test_a_rejected_shadow_is_counted_as_a_rejection_not_a_rollback() -> None:
    namespace, name = _object()
    metrics.record_state(namespace, name, metrics.object_state(Facts(current=V1, stable=V1), ANALYSIS, V1))
    rejected = Decision(
        Tracks(V1, 1),
        Facts(current=V1, stable=V1, failed_version="v2", rollback_reason=Reason.SHADOW_REJECTED),
        events=(Event(Reason.SHADOW_REJECTED, "shadow v2 rejected", warning=True),),
    )
    _count(namespace, name, rejected, check(0.7), "v2")
    labels = {"namespace": namespace, "name": name}
    assert REGISTRY.get_sample_value("vigil_operator_shadow_rejections_total", labels) == 1
    for reason in metrics.ROLLBACK_REASONS:
        assert REGISTRY.get_sample_value("vigil_operator_rollbacks_total", {**labels, "reason": reason}) == 0
