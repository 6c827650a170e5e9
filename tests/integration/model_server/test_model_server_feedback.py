"""Ground truth over HTTP: labels by rows or by response id move the operator's counters exactly."""

from pathlib import Path

import numpy as np
import pytest
from model_server_harness import MODEL_NAME, ModelServer, pinned, start_server
from sklearn.linear_model import LogisticRegression

from harness.processes import ProcessGroup

ACCURACY_WINDOW, FEEDBACK_CACHE_SIZE = 4, 3
FEEDBACK = f"/v2/models/{MODEL_NAME}/feedback"
COUNTERS = ("feedback_total", "feedback_correct_total", "predictions_total")


@pytest.fixture(scope="module")
def iris_server(module_processes: ProcessGroup, iris_model_file: Path) -> ModelServer:
    flags = ("--accuracy-window", str(ACCURACY_WINDOW), "--feedback-cache-size", str(FEEDBACK_CACHE_SIZE))
    flags += pinned(iris_model_file)
    return start_server(module_processes, str(iris_model_file), *flags).wait_ready()


def infer(server: ModelServer, rows: np.ndarray) -> str:
    tensor = {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.tolist()}
    response = server.client.post(f"/v2/models/{MODEL_NAME}/infer", json={"inputs": [tensor]})
    assert response.status_code == 200
    return response.json()["id"]


def counters(server: ModelServer) -> dict[str, float]:
    """The model's vigil_model_*_total counters, by their short names."""
    return {name: server.metric(f"vigil_model_{name}") for name in COUNTERS}


def test_labels_by_id_and_by_rows_give_exact_counts_and_the_window_accuracy(
    iris_server: ModelServer, iris_classifier: LogisticRegression, iris_data: tuple[np.ndarray, np.ndarray]
) -> None:
    features, labels = iris_data
    # Rows the model gets wrong as well as right, so "correct" is not just "labelled".
    rows = features[[0, 50, 70, 77, 100, 133, 149]]
    truth = labels[[0, 50, 70, 77, 100, 133, 149]]
    right = iris_classifier.predict(rows) == truth
    assert 0 < right.sum() < len(rows)
    before = counters(iris_server)

    response_id = infer(iris_server, rows[:3])
    by_id = iris_server.client.post(FEEDBACK, json={"id": response_id, "labels": truth[:3].tolist()})
    later = {"instances": rows[3:].tolist(), "labels": truth[3:].tolist()}
    by_rows = iris_server.client.post(FEEDBACK, json=later)

    assert by_id.status_code == by_rows.status_code == 200
    assert (by_id.json()["labelled"], by_id.json()["correct"]) == (3, right[:3].sum())
    assert (by_rows.json()["labelled"], by_rows.json()["correct"]) == (4, right[3:].sum())
    after = counters(iris_server)
    added = {name: after[name] - before[name] for name in COUNTERS}
    assert added == {"feedback_total": 7, "feedback_correct_total": right.sum(), "predictions_total": 7}
    # The window holds the last 4 labelled rows: those sent by rows.
    assert iris_server.metric("vigil_model_accuracy") == pytest.approx(right[3:].mean())


def test_a_v1_response_id_takes_labels_once(iris_server: ModelServer) -> None:
    setosa = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
    predicted = iris_server.client.post(f"/v1/models/{MODEL_NAME}:predict", json=setosa)
    response_id = predicted.json()["id"]

    first = iris_server.client.post(FEEDBACK, json={"id": response_id, "labels": [0]})
    second = iris_server.client.post(FEEDBACK, json={"id": response_id, "labels": [0]})

    assert (first.status_code, first.json()["correct"]) == (200, 1)
    assert second.status_code == 409
    assert "already has labels" in second.json()["error"]


def test_an_id_expires_once_newer_predictions_fill_the_cache(
    iris_server: ModelServer, iris_data: tuple[np.ndarray, np.ndarray]
) -> None:
    features, _ = iris_data
    oldest = infer(iris_server, features[:1])
    infer(iris_server, features[1 : 1 + FEEDBACK_CACHE_SIZE])

    response = iris_server.client.post(FEEDBACK, json={"id": oldest, "labels": [0]})

    assert response.status_code == 404
    assert f"older than the last {FEEDBACK_CACHE_SIZE} predicted rows" in response.json()["error"]


def test_labels_that_do_not_fit_change_no_counter(iris_server: ModelServer) -> None:
    before = counters(iris_server)

    response = iris_server.client.post(FEEDBACK, json={"instances": [[5.1, 3.5, 1.4, 0.2]], "labels": [0, 1]})

    assert response.status_code == 422
    assert "has 2 label(s) for 1 row(s)" in response.json()["error"]
    assert counters(iris_server) == before
