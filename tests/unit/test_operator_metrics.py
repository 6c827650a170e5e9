"""The operator's own metrics forget what nothing will update again (vigil_operator.metrics)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from prometheus_client import REGISTRY

from vigil_operator import metrics
from vigil_operator.analysis import Verdict
from vigil_operator.decisions import CheckRecord, Decision, Event, Facts, Reason
from vigil_operator.reconcile import _count
from vigil_operator.releases import Release

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
    _count(namespace, name, Decision(V1, Facts(current=V1, stable=V1)), check(0.95, Verdict.PASS), "v1")
    rolled_back = Decision(
        V1,
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

    _count(namespace, name, Decision(V3, Facts(current=V3, stable=V1)), check(0.93, Verdict.PASS), "v3")

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
        promoted = Decision(V1, Facts(current=V1, stable=V1), events=(Event(Reason.PROMOTED, "v1 promoted"),))
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
