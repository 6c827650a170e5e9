"""The operator's own Prometheus metrics, and forgetting the series nothing will update again.

A series that stays after its version is gone keeps its last value forever, and an alert on it
never resolves; so the series of versions that are neither current nor stable, and every series
of a deleted ModelDeployment, are removed.
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import Counter, Gauge, Histogram

OBJECT = ("namespace", "name")  # every per-object metric's first labels: the ModelDeployment's

CHECKS = Counter("vigil_operator_checks_total", "Analysis checks by verdict", [*OBJECT, "verdict"])
ROLLBACKS = Counter("vigil_operator_rollbacks_total", "Automatic and manual rollbacks", [*OBJECT, "reason"])
PROMOTIONS = Counter("vigil_operator_promotions_total", "Versions promoted to stable", [*OBJECT])
LAST_ACCURACY = Gauge(
    "vigil_operator_last_accuracy",
    "The value of the last successful check of each ModelDeployment",
    [*OBJECT, "version"],
)
RECONCILE_SECONDS = Histogram(
    "vigil_operator_reconcile_duration_seconds",
    "Time of one reconcile round of one ModelDeployment, Prometheus query included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Each per-object metric with its label names, in the order `remove` takes their values.
PER_OBJECT: dict[Counter | Gauge, tuple[str, ...]] = {
    CHECKS: (*OBJECT, "verdict"),
    ROLLBACKS: (*OBJECT, "reason"),
    PROMOTIONS: OBJECT,
    LAST_ACCURACY: (*OBJECT, "version"),
}


def _label_values(metric: Counter | Gauge, names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The label values of every series `metric` has now (a counter's _total and _created once)."""
    found: dict[tuple[str, ...], None] = {}
    for family in metric.collect():
        for sample in family.samples:
            found[tuple(sample.labels[label] for label in names)] = None
    return list(found)


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
