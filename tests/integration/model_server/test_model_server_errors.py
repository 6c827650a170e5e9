"""Bad input of every kind gets a 4xx with a JSON message a person can act on, never a 5xx."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from model_server_harness import MODEL_NAME, MODEL_VERSION, ModelServer, pinned, start_server
from prometheus_client.parser import text_string_to_metric_families

from harness.processes import ProcessGroup

MAX_BODY_BYTES = 2000
INFER = f"/v2/models/{MODEL_NAME}/infer"
JSON = {"content-type": "application/json"}
GOOD_TENSOR = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}


@pytest.fixture(scope="module")
def iris_server(module_processes: ProcessGroup, iris_model_file: Path) -> ModelServer:
    """This module's server has a small body limit, to test it without megabytes of JSON."""
    limit = ("--max-body-bytes", str(MAX_BODY_BYTES), *pinned(iris_model_file))
    return start_server(module_processes, str(iris_model_file), *limit).wait_ready()


def tensor(**overrides: object) -> dict[str, object]:
    return {"inputs": [GOOD_TENSOR | overrides]}


JSON_CASES = [
    # (method, path, JSON body, status, part of the message)
    ("POST", INFER, tensor(shape=[1, 3], data=[5.1, 3.5, 1.4]), 422, "each row needs 4 features, got 3"),
    ("POST", INFER, tensor(data=[5.1, 3.5, 1.4, "x"]), 422, "FP64 needs numbers; data holds strings"),
    ("POST", INFER, tensor(data=[5.1, 3.5, 1.4, None]), 422, "data holds nulls"),
    ("POST", INFER, tensor(datatype="BYTES"), 422, "'BYTES' is not supported"),
    ("POST", INFER, tensor(shape=[2, 4]), 422, "shape [2, 4] means 8 values but data holds 4"),
    ("POST", INFER, {"inputs": [GOOD_TENSOR], "outputs": [{"name": "foo"}]}, 422, "unknown output 'foo'"),
    ("POST", INFER, {"instances": [[5.1, 3.5, 1.4, 0.2]]}, 400, '"inputs" must be a non-empty list'),
    ("POST", "/v2/models/mnist/infer", tensor(), 404, "'mnist' is not served here; this server serves 'iris"),
    ("POST", f"/v2/models/{MODEL_NAME}/versions/9/infer", tensor(), 404, "has no version '9' here"),
    ("GET", "/v2/models/mnist", None, 404, "model 'mnist' is not served here"),
    ("GET", f"/v2/models/{MODEL_NAME}/versions/9/ready", None, 404, "has no version '9' here"),
    ("POST", f"/v1/models/{MODEL_NAME}:predict", {"instances": [5.1, 3.5]}, 422, "must be a list of rows"),
    ("POST", f"/v1/models/{MODEL_NAME}:predict", {"instances": [[1, 2, 3, 4, 5]]}, 422, "needs 4 features"),
    ("POST", "/v1/models/mnist:predict", {"instances": [[1, 2, 3, 4]]}, 404, "model 'mnist' is not served"),
    ("POST", f"/v2/models/{MODEL_NAME}/feedback", {"id": "nope", "labels": [1]}, 404, "no recent prediction"),
    ("POST", f"/v2/models/{MODEL_NAME}/feedback", {"labels": [1]}, 400, 'give either "instances" or "id"'),
    (
        "POST",
        f"/v2/models/{MODEL_NAME}/feedback",
        {"instances": [[5.1, 3.5, 1.4, 0.2]], "labels": ["setosa"]},
        422,
        "label 'setosa' is not one of the model's classes: 0, 1, 2",
    ),
    ("GET", "/v2/modles/iris", None, 404, "no endpoint at /v2/modles/iris"),
    ("DELETE", INFER, None, 405, "DELETE is not allowed on"),
    ("GET", INFER, None, 405, "GET is not allowed on"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), JSON_CASES)
def test_a_bad_request_gets_a_4xx_with_a_message(
    iris_server: ModelServer, method: str, path: str, body: object, status: int, message: str
) -> None:
    response = iris_server.client.request(method, path, json=body)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("raw_body", "message"),
    [
        (b'{"inputs": [', "the body is not valid JSON"),
        (b"", "the body is not valid JSON"),
        (b'{"inputs": [{"data": [NaN]}]}', "the body is not valid JSON"),
        (b'{"inputs": [{"shape": [1, 4], "datatype": "FP64", "data": [1e400, 1, 1, 1]}]}', "infinity"),
        (b'{"id": "\xff\xfe"}', "the body is not valid JSON"),
    ],
)
def test_a_body_that_is_not_json_gets_400(iris_server: ModelServer, raw_body: bytes, message: str) -> None:
    response = iris_server.client.post(INFER, content=raw_body, headers=JSON)

    assert response.status_code == 400
    assert message in response.json()["error"]


def test_a_body_over_the_limit_gets_413_with_or_without_a_declared_length(iris_server: ModelServer) -> None:
    oversized = b"[" + b"1.0," * MAX_BODY_BYTES + b"1.0]"

    def chunks() -> Iterator[bytes]:
        yield from (oversized[i : i + 500] for i in range(0, len(oversized), 500))

    declared = iris_server.client.post(INFER, content=oversized, headers=JSON)
    streamed = iris_server.client.post(INFER, content=chunks(), headers=JSON)

    for response in (declared, streamed):
        assert response.status_code == 413
        assert f"the limit is {MAX_BODY_BYTES} (MAX_BODY_BYTES)" in response.json()["error"]
    assert "content-length" not in streamed.request.headers


def test_refused_requests_are_counted_by_code_and_none_was_a_5xx(iris_server: ModelServer) -> None:
    iris_server.client.post(INFER, content=b"{", headers=JSON)

    counted = {
        (sample.labels["endpoint"], sample.labels["code"])
        for family in text_string_to_metric_families(iris_server.client.get("/metrics").text)
        for sample in family.samples
        if sample.name == "vigil_model_requests_total"
        and (sample.labels["model"], sample.labels["version"]) == (MODEL_NAME, MODEL_VERSION)
    }

    assert ("infer", "400") in counted
    # 503 is the honest answer of the readiness probe while the model loads; nothing else is 5xx.
    assert {(endpoint, code) for endpoint, code in counted if code.startswith("5")} <= {("ready", "503")}
