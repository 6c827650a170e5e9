"""The operator's own Prometheus metrics."""

from prometheus_client import Counter, Gauge, Histogram

CHECKS = Counter(
    "vigil_operator_checks_total", "Analysis checks by verdict", ["namespace", "name", "verdict"]
)
ROLLBACKS = Counter(
    "vigil_operator_rollbacks_total", "Automatic and manual rollbacks", ["namespace", "name", "reason"]
)
PROMOTIONS = Counter("vigil_operator_promotions_total", "Versions promoted to stable", ["namespace", "name"])
LAST_ACCURACY = Gauge(
    "vigil_operator_last_accuracy",
    "The value of the last successful check of each ModelDeployment",
    ["namespace", "name", "version"],
)
RECONCILE_SECONDS = Histogram(
    "vigil_operator_reconcile_duration_seconds",
    "Time of one reconcile round of one ModelDeployment, Prometheus query included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
