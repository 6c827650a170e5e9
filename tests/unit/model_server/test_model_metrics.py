"""Metrics: the names the operator's queries use, and exact values after known traffic."""

import asyncio

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression

from vigil_model_server.errors import ApiError
from vigil_model_server.loader import LoadedModel
from vigil_model_server.metrics import Metrics
from vigil_model_server.service import ModelService
from vigil_model_server.settings import Settings

LABELS = {"model": "iris", "version": "3"}


@pytest.fixture
def service_and_metrics(classifier: LogisticRegression) -> tuple[ModelService, Metrics]:
    settings = Settings(model_uri="unused", model_name="iris", model_version="3", accuracy_window=4)
    metrics = Metrics("iris", "3")
    model = LoadedModel(estimator=classifier, source="unused", format="joblib", sha256="0" * 64)
    return ModelService(model, settings, metrics), metrics


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {**LABELS, **labels})


def test_the_exposition_has_exactly_the_contract_names_with_model_and_version_labels() -> None:
    metrics = Metrics("iris", "3")
    metrics.observe_request("infer", 200, 0.001)
    metrics.observe_feedback(labelled=2, correct=1, accuracy=0.5)

    families = {
        family.name: family for family in text_string_to_metric_families(metrics.exposition().decode())
    }

    assert {name: family.type for name, family in families.items()} == {
        "vigil_model_feedback": "counter",
        "vigil_model_feedback_correct": "counter",
        "vigil_model_accuracy": "gauge",
        "vigil_model_predictions": "counter",
        "vigil_model_request_duration_seconds": "histogram",
        "vigil_model_requests": "counter",
        "vigil_model_batch_size": "histogram",
    }
    sample_names = {sample.name for family in families.values() for sample in family.samples}
    for name in (
        "vigil_model_feedback_total",
        "vigil_model_feedback_correct_total",
        "vigil_model_accuracy",
        "vigil_model_predictions_total",
        "vigil_model_request_duration_seconds_bucket",
        "vigil_model_requests_total",
    ):
        assert name in sample_names
    requests = next(s for s in families["vigil_model_requests"].samples if s.name.endswith("_total"))
    assert requests.labels == {**LABELS, "endpoint": "infer", "code": "200"}


def test_feedback_counters_start_at_zero_and_accuracy_appears_with_the_first_labels() -> None:
    metrics = Metrics("iris", "3")

    assert value(metrics, "vigil_model_feedback_total") == 0
    assert value(metrics, "vigil_model_feedback_correct_total") == 0
    assert value(metrics, "vigil_model_accuracy") is None


def test_known_feedback_gives_exact_counts_and_the_window_accuracy(
    service_and_metrics: tuple[ModelService, Metrics], iris: tuple[np.ndarray, np.ndarray]
) -> None:
    service, metrics = service_and_metrics
    features, labels = iris
    setosa, versicolor = features[labels == 0][:3], features[labels == 1][:2]

    async def traffic() -> None:
        inference = await service.infer(setosa, ("predict",), None)
        service.feedback_for_id(inference.response_id, [0, 0, 2])  # two right, one wrong
        await service.feedback_for_rows(versicolor, [1, 0])  # one right, one wrong

    asyncio.run(traffic())

    assert value(metrics, "vigil_model_predictions_total") == 5
    assert value(metrics, "vigil_model_feedback_total") == 5
    assert value(metrics, "vigil_model_feedback_correct_total") == 3
    assert value(metrics, "vigil_model_accuracy") == pytest.approx(2 / 4)  # window of 4: [T, F, T, F]


def test_refused_feedback_changes_no_counter(service_and_metrics: tuple[ModelService, Metrics]) -> None:
    service, metrics = service_and_metrics

    async def bad_feedback() -> None:
        inference = await service.infer(np.ones((2, 4)), ("predict",), "mine")
        with pytest.raises(ApiError, match="not one of the model's classes"):
            service.feedback_for_id(inference.response_id, [0, "setosa"])
        service.feedback_for_id("mine", [0, 0])  # still open after the refused attempt

    asyncio.run(bad_feedback())

    assert value(metrics, "vigil_model_feedback_total") == 2


def test_paired_counts_split_labelled_rows_by_who_was_right() -> None:
    metrics = Metrics("iris", "4", stable_version="3")
    paired = {"stable_version": "3", "version": "4"}
    at_start = {
        outcome: value(metrics, "vigil_model_paired_feedback_total", **paired, outcome=outcome)
        for outcome in ("both_right", "both_wrong", "only_stable_right", "only_candidate_right")
    }

    metrics.observe_paired(
        candidate_right=np.array([True, True, False, False, True]),
        stable_right=np.array([True, False, True, False, True]),
    )

    assert at_start == dict.fromkeys(at_start, 0.0)
    assert {
        outcome: value(metrics, "vigil_model_paired_feedback_total", **paired, outcome=outcome)
        for outcome in at_start
    } == {"both_right": 2.0, "only_candidate_right": 1.0, "only_stable_right": 1.0, "both_wrong": 1.0}


def test_mirror_counts_exist_at_zero_only_on_a_mirroring_server() -> None:
    mirroring, plain = Metrics("iris", "3", mirroring=True), Metrics("iris", "3")

    for kind in ("predictions", "labels"):
        for result in ("sent", "dropped", "failed"):
            assert value(mirroring, "vigil_model_mirror_total", kind=kind, result=result) == 0.0
    assert b"vigil_model_mirror_total" not in plain.exposition()
    assert b"vigil_model_paired_feedback_total" not in plain.exposition()
