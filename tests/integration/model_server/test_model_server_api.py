"""Every endpoint of the contract, against a real server process serving the iris model."""

import re

import numpy as np
import pytest
from model_server_harness import MODEL_NAME, MODEL_VERSION, ModelServer
from prometheus_client.parser import text_string_to_metric_families
from sklearn.linear_model import LogisticRegression

SETOSA, VIRGINICA = [5.1, 3.5, 1.4, 0.2], [6.9, 3.1, 5.4, 2.1]
MODEL = f"/v2/models/{MODEL_NAME}"
VERSIONED = f"{MODEL}/versions/{MODEL_VERSION}"


def v2_body(*rows: list[float], **extra: object) -> dict[str, object]:
    data = [value for row in rows for value in row]
    tensor = {"name": "input-0", "shape": [len(rows), 4], "datatype": "FP32", "data": data}
    return {"inputs": [tensor], **extra}


def test_health_endpoints_say_live_and_ready(iris_server: ModelServer) -> None:
    assert iris_server.client.get("/v2/health/live").json() == {"live": True}
    assert iris_server.client.get("/v2/health/ready").json() == {"ready": True}
    assert iris_server.client.get("/v2").json()["name"] == "vigil-model-server"


@pytest.mark.parametrize("base", [MODEL, VERSIONED])
def test_model_metadata_and_readiness_in_both_url_forms(iris_server: ModelServer, base: str) -> None:
    metadata = iris_server.client.get(base).json()
    ready = iris_server.client.get(f"{base}/ready")

    assert metadata["name"] == MODEL_NAME
    assert metadata["versions"] == [MODEL_VERSION]
    assert metadata["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert [output["name"] for output in metadata["outputs"]] == ["predict", "predict_proba"]
    assert (ready.status_code, ready.json()) == (200, {"name": MODEL_NAME, "ready": True})


@pytest.mark.parametrize("base", [MODEL, VERSIONED])
def test_v2_infer_predicts_each_row_and_carries_an_id(
    iris_server: ModelServer, iris_classifier: LogisticRegression, base: str
) -> None:
    response = iris_server.client.post(f"{base}/infer", json=v2_body(SETOSA, VIRGINICA))

    assert response.status_code == 200
    document = response.json()
    assert (document["model_name"], document["model_version"]) == (MODEL_NAME, MODEL_VERSION)
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", document["id"])  # 16 random bytes, URL-safe base64
    expected = iris_classifier.predict(np.array([SETOSA, VIRGINICA], dtype=np.float32)).tolist()
    assert document["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [2], "data": expected}]


def test_v2_infer_gives_probabilities_when_asked_and_echoes_the_client_id(
    iris_server: ModelServer, iris_classifier: LogisticRegression
) -> None:
    body = v2_body(SETOSA, outputs=[{"name": "predict_proba"}, {"name": "predict"}], id="client-42")

    document = iris_server.client.post(f"{MODEL}/infer", json=body).json()

    assert document["id"] == "client-42"
    proba, predict = document["outputs"]
    assert (proba["name"], proba["datatype"], proba["shape"]) == ("predict_proba", "FP64", [1, 3])
    np.testing.assert_allclose(proba["data"], iris_classifier.predict_proba([SETOSA]).ravel(), rtol=1e-6)
    assert predict["data"] == [0]


def test_v1_predict_and_model_status(iris_server: ModelServer) -> None:
    body = {"instances": [SETOSA, VIRGINICA]}
    response = iris_server.client.post(f"/v1/models/{MODEL_NAME}:predict", json=body)
    status = iris_server.client.get(f"/v1/models/{MODEL_NAME}")

    assert response.status_code == 200
    assert response.json()["predictions"] == [0, 2]
    assert response.json()["id"]
    assert status.json() == {"name": MODEL_NAME, "ready": True}


def test_every_endpoint_of_the_contract_answers(iris_server: ModelServer) -> None:
    infer_body = v2_body(SETOSA)
    feedback_body = {"instances": [SETOSA], "labels": [0]}
    contract = [
        ("GET", "/v2/health/live", None),
        ("GET", "/v2/health/ready", None),
        ("GET", MODEL, None),
        ("GET", f"{MODEL}/ready", None),
        ("POST", f"{MODEL}/infer", infer_body),
        ("POST", f"{MODEL}/feedback", feedback_body),
        ("GET", VERSIONED, None),
        ("GET", f"{VERSIONED}/ready", None),
        ("POST", f"{VERSIONED}/infer", infer_body),
        ("POST", f"{VERSIONED}/feedback", feedback_body),
        ("POST", f"/v1/models/{MODEL_NAME}:predict", {"instances": [SETOSA]}),
        ("GET", "/metrics", None),
    ]

    statuses = {
        path: iris_server.client.request(method, path, json=body).status_code
        for method, path, body in contract
    }

    assert statuses == {path: 200 for _, path, _ in contract}


def test_metric_names_are_exactly_the_contract(iris_server: ModelServer) -> None:
    iris_server.client.post(f"{MODEL}/feedback", json={"instances": [SETOSA], "labels": [0]})

    text = iris_server.client.get("/metrics").text

    assert {family.name for family in text_string_to_metric_families(text)} == {
        "vigil_model_feedback",  # the parser drops _total from counter family names
        "vigil_model_feedback_correct",
        "vigil_model_accuracy",
        "vigil_model_predictions",
        "vigil_model_request_duration_seconds",
        "vigil_model_requests",
        "vigil_model_batch_size",
    }
    for line in (
        "vigil_model_feedback_total{",
        "vigil_model_feedback_correct_total{",
        "vigil_model_accuracy{",
    ):
        assert f'\n{line}model="{MODEL_NAME}",version="{MODEL_VERSION}"}}' in text


def test_metrics_are_prometheus_text_with_the_contract_names(iris_server: ModelServer) -> None:
    iris_server.client.post(f"{MODEL}/infer", json=v2_body(SETOSA))

    response = iris_server.client.get("/metrics")

    assert response.headers["content-type"].startswith("text/plain")
    names = set(re.findall(r"^(vigil_model_[a-z_]+)\{", response.text, flags=re.MULTILINE))
    assert names >= {
        "vigil_model_feedback_total",
        "vigil_model_feedback_correct_total",
        "vigil_model_predictions_total",
        "vigil_model_request_duration_seconds_bucket",
        "vigil_model_requests_total",
    }
    assert iris_server.metric("vigil_model_requests_total", endpoint="infer", code="200") >= 1
    assert iris_server.metric("vigil_model_request_duration_seconds_count", endpoint="infer") >= 1
