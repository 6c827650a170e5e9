"""Prometheus metrics. The names are a contract: the operator's rollback queries read them."""

from __future__ import annotations

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

FEEDBACK_TOTAL = "vigil_model_feedback_total"
FEEDBACK_CORRECT_TOTAL = "vigil_model_feedback_correct_total"
ACCURACY = "vigil_model_accuracy"
PREDICTIONS_TOTAL = "vigil_model_predictions_total"
REQUEST_DURATION_SECONDS = "vigil_model_request_duration_seconds"
REQUESTS_TOTAL = "vigil_model_requests_total"
BATCH_SIZE = "vigil_model_batch_size"
# Shadow: what the stable release's servers mirrored to the candidate, and the candidate's labelled
# ids by who was right (the operator's paired comparison reads these names and labels).
MIRROR_TOTAL = "vigil_model_mirror_total"
PAIRED_FEEDBACK_TOTAL = "vigil_model_paired_feedback_total"
MIRROR_KINDS = ("predictions", "labels")
MIRROR_RESULTS = ("sent", "dropped", "failed")
PAIRED_OUTCOMES = ("both_right", "both_wrong", "only_stable_right", "only_candidate_right")

# Latencies of this server sit between ~100 µs and a few seconds for large requests.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# The *_created series double the number of series and nothing of Vigil reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated


class Metrics:
    """All metrics of one served model, labelled with its name and version, in their own registry."""

    def __init__(
        self, model: str, version: str, *, mirroring: bool = False, stable_version: str | None = None
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._model, self._version = model, version
        labels = ("model", "version")
        # prometheus_client appends _total to counter names itself.
        self.feedback = Counter(
            FEEDBACK_TOTAL.removesuffix("_total"),
            "Labelled predictions scored against ground truth",
            labels,
            registry=self.registry,
        ).labels(model, version)
        self.feedback_correct = Counter(
            FEEDBACK_CORRECT_TOTAL.removesuffix("_total"),
            "Labelled predictions that were correct",
            labels,
            registry=self.registry,
        ).labels(model, version)
        self._accuracy = Gauge(
            ACCURACY,
            "Share of correct predictions among the last N labelled ones (ACCURACY_WINDOW)",
            labels,
            registry=self.registry,
        )
        self.predictions = Counter(
            PREDICTIONS_TOTAL.removesuffix("_total"),
            "Rows predicted",
            labels,
            registry=self.registry,
        ).labels(model, version)
        self._durations = Histogram(
            REQUEST_DURATION_SECONDS,
            "Time from a request's arrival at the application to its response, by endpoint",
            (*labels, "endpoint"),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._requests = Counter(
            REQUESTS_TOTAL.removesuffix("_total"),
            "Requests answered, by endpoint and HTTP status code",
            (*labels, "endpoint", "code"),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            BATCH_SIZE,
            "Rows per call into the model (micro-batching coalesces concurrent requests)",
            labels,
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        ).labels(model, version)
        # Exposed at 0 from the start, so drops and every outcome are series before the first one.
        self.mirrored: dict[tuple[str, str], Counter] = {}
        if mirroring:
            mirror = Counter(
                MIRROR_TOTAL.removesuffix("_total"),
                "Requests mirrored to the shadow candidate, by kind and result (dropped: the queue was full)",
                (*labels, "kind", "result"),
                registry=self.registry,
            )
            self.mirrored = {
                (kind, result): mirror.labels(model, version, kind, result)
                for kind in MIRROR_KINDS
                for result in MIRROR_RESULTS
            }
        self._paired: dict[str, Counter] = {}
        if stable_version is not None:
            paired = Counter(
                PAIRED_FEEDBACK_TOTAL.removesuffix("_total"),
                "Labelled rows predicted by this shadow candidate and the stable version, by who was right",
                (*labels, "stable_version", "outcome"),
                registry=self.registry,
            )
            self._paired = {
                outcome: paired.labels(model, version, stable_version, outcome) for outcome in PAIRED_OUTCOMES
            }
        # Children are looked up once: .labels() costs more than the update itself.
        self._request_counters: dict[tuple[str, int], Counter] = {}
        self._request_durations: dict[str, Histogram] = {}

    def observe_request(self, endpoint: str, code: int, seconds: float | None) -> None:
        """Count one answered request and its duration (None: not timed, such as unknown paths)."""
        counter = self._request_counters.get((endpoint, code))
        if counter is None:
            counter = self._requests.labels(self._model, self._version, endpoint, str(code))
            self._request_counters[(endpoint, code)] = counter
        counter.inc()
        if seconds is not None:
            histogram = self._request_durations.get(endpoint)
            if histogram is None:
                histogram = self._durations.labels(self._model, self._version, endpoint)
                self._request_durations[endpoint] = histogram
            histogram.observe(seconds)

    def observe_feedback(self, labelled: int, correct: int, accuracy: float) -> None:
        """Add scored predictions; the accuracy series appears with the first feedback."""
        self.feedback.inc(labelled)
        self.feedback_correct.inc(correct)
        self._accuracy.labels(self._model, self._version).set(accuracy)

    def count_mirrored(self, kind: str, result: str, requests: int = 1) -> None:
        """Count `requests` mirrored to the candidate (`kind` predictions or labels) by `result`."""
        self.mirrored[(kind, result)].inc(requests)

    def observe_paired(self, candidate_right: np.ndarray, stable_right: np.ndarray) -> None:
        """Count labelled rows by which of the two versions predicted them right."""
        both = int(np.count_nonzero(candidate_right & stable_right))
        only_candidate = int(np.count_nonzero(candidate_right & ~stable_right))
        only_stable = int(np.count_nonzero(~candidate_right & stable_right))
        counts = {
            "both_right": both,
            "only_candidate_right": only_candidate,
            "only_stable_right": only_stable,
            "both_wrong": len(candidate_right) - both - only_candidate - only_stable,
        }
        for outcome, count in counts.items():
            self._paired[outcome].inc(count)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
