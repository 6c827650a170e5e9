"""Prometheus metrics. The names are a contract: the operator's rollback queries read them."""

from __future__ import annotations

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

# Latencies of this server sit between ~100 µs and a few seconds for large requests.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# The *_created series double the number of series and nothing of Vigil reads them.
disable_created_metrics()


class Metrics:
    """All metrics of one served model, labelled with its name and version, in their own registry."""

    def __init__(self, model: str, version: str) -> None:
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

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
