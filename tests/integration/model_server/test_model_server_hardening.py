"""Hostile input over HTTP: random ids, row caps, JSON only, label checks, 413 with a lingering close."""

import json
import re
import socket
from pathlib import Path

import httpx
import numpy as np
import pytest
from model_server_harness import MODEL_NAME, ModelServer, pinned, start_server

from harness.processes import ProcessGroup
from harness.waiting import wait_for

MAX_BODY_BYTES, MAX_INFER_ROWS, MAX_FEEDBACK_ROWS = 100_000, 200, 20
INFER = f"/v2/models/{MODEL_NAME}/infer"
PREDICT = f"/v1/models/{MODEL_NAME}:predict"
FEEDBACK = f"/v2/models/{MODEL_NAME}/feedback"
SETOSA = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def iris_server(module_processes: ProcessGroup, iris_model_file: Path) -> ModelServer:
    flags = (
        *("--max-body-bytes", str(MAX_BODY_BYTES), "--max-infer-rows", str(MAX_INFER_ROWS)),
        *("--max-feedback-rows", str(MAX_FEEDBACK_ROWS), "--max-header-bytes", "8192"),
        *pinned(iris_model_file),
    )
    return start_server(module_processes, str(iris_model_file), *flags).wait_ready()


def v2_body(rows: list[list[float]], **extra: object) -> dict[str, object]:
    tensor = {"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}
    return {"inputs": [tensor], **extra}


def test_response_ids_are_random_and_never_repeat(iris_server: ModelServer) -> None:
    ids = [iris_server.client.post(PREDICT, json={"instances": [SETOSA]}).json()["id"] for _ in range(1000)]

    assert len(set(ids)) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", response_id) for response_id in ids)
    assert len({response_id[:3] for response_id in ids}) > 900  # no common prefix, no counter


def test_a_labelled_id_is_never_opened_again_by_a_new_infer(iris_server: ModelServer) -> None:
    first = iris_server.client.post(INFER, json=v2_body([SETOSA], id="order-17"))
    labelled = iris_server.client.post(FEEDBACK, json={"id": "order-17", "labels": [0]})
    before = iris_server.metric("vigil_model_feedback_total")

    reused = iris_server.client.post(INFER, json=v2_body([SETOSA], id="order-17"))
    relabelled = iris_server.client.post(FEEDBACK, json={"id": "order-17", "labels": [0]})

    assert (first.status_code, labelled.status_code) == (200, 200)
    assert reused.status_code == 409
    assert "give each request its own id" in reused.json()["error"]
    assert relabelled.status_code == 409
    assert iris_server.metric("vigil_model_feedback_total") == before


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            INFER,
            v2_body([SETOSA] * (MAX_INFER_ROWS + 1)),
            f"the limit is {MAX_INFER_ROWS} (MODEL_MAX_INFER_ROWS)",
        ),
        (PREDICT, {"instances": [SETOSA] * (MAX_INFER_ROWS + 1)}, "(MODEL_MAX_INFER_ROWS)"),
        (
            FEEDBACK,
            {"instances": [SETOSA] * (MAX_FEEDBACK_ROWS + 1), "labels": [0] * (MAX_FEEDBACK_ROWS + 1)},
            f"has {MAX_FEEDBACK_ROWS + 1} labels; the limit is {MAX_FEEDBACK_ROWS} (MODEL_MAX_FEEDBACK_ROWS)",
        ),
        (FEEDBACK, {"id": "x", "labels": [0] * 30_000}, "(MODEL_MAX_INFER_ROWS)"),  # an answer's rows
    ],
    ids=["v2 infer", "v1 predict", "feedback by rows", "feedback by id"],
)
def test_more_rows_than_the_cap_get_413_with_the_setting(
    iris_server: ModelServer, path: str, body: object, message: str
) -> None:
    before = iris_server.metric("vigil_model_feedback_total")

    response = iris_server.client.post(path, json=body)

    assert response.status_code == 413
    assert message in response.json()["error"]
    assert iris_server.metric("vigil_model_feedback_total") == before


def test_requests_at_the_caps_are_answered(iris_server: ModelServer) -> None:
    infer = iris_server.client.post(INFER, json=v2_body([SETOSA] * MAX_INFER_ROWS))
    rows = {"instances": [SETOSA] * MAX_FEEDBACK_ROWS, "labels": [0] * MAX_FEEDBACK_ROWS}

    assert infer.status_code == 200
    assert iris_server.client.post(FEEDBACK, json=rows).json()["labelled"] == MAX_FEEDBACK_ROWS


@pytest.mark.parametrize("path", [INFER, PREDICT, FEEDBACK])
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_a_body_not_declared_as_json_gets_415(
    iris_server: ModelServer, path: str, content_type: str | None
) -> None:
    body = json.dumps({"instances": [SETOSA], "labels": [0], **v2_body([SETOSA])})
    headers = {"content-type": content_type} if content_type else {}

    response = iris_server.client.post(path, content=body, headers=headers)

    assert response.status_code == 415
    assert "Content-Type: application/json" in response.json()["error"]


def test_json_with_a_charset_is_json(iris_server: ModelServer) -> None:
    body = json.dumps({"instances": [SETOSA]})
    headers = {"content-type": "application/json; charset=utf-8"}

    assert iris_server.client.post(PREDICT, content=body, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("labels", "message"),
    [([None], "null, true and false are never labels"), ([True], "null, true and false are never labels")],
    ids=["null", "true"],
)
def test_null_and_boolean_labels_get_422_and_count_nothing(
    iris_server: ModelServer, labels: list[object], message: str
) -> None:
    before = iris_server.metric("vigil_model_feedback_total")

    response = iris_server.client.post(FEEDBACK, json={"instances": [SETOSA], "labels": labels})

    assert response.status_code == 422
    assert message in response.json()["error"]
    assert iris_server.metric("vigil_model_feedback_total") == before


def test_an_out_of_range_int8_gets_422(iris_server: ModelServer) -> None:
    tensor = {"name": "input-0", "shape": [1, 4], "datatype": "INT8", "data": [5, 3, 1, 300]}

    response = iris_server.client.post(INFER, json={"inputs": [tensor]})

    assert response.status_code == 422
    assert "INT8 holds values from -128 to 127; data has 300" in response.json()["error"]


def read_response(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_a_client_that_sends_the_whole_oversized_body_reads_413_not_a_reset(iris_server: ModelServer) -> None:
    body = json.dumps(v2_body([SETOSA] * 20_000)).encode()  # about 10 times MAX_BODY_BYTES
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )

    with socket.create_connection(("127.0.0.1", iris_server.port), timeout=30) as connection:
        connection.sendall(head.encode() + body)  # all of it before reading, like most clients
        response = read_response(connection)  # a reset would raise ConnectionResetError here

    status_line, _, rest = response.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    assert b"connection: close" in rest.lower()
    assert (
        f"the limit is {MAX_BODY_BYTES} (MAX_BODY_BYTES)"
        in json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    )


def test_a_413_for_a_body_read_whole_closes_at_once_instead_of_lingering(iris_server: ModelServer) -> None:
    """Too many rows in a body within the byte limit: nothing is left to drain, so the server
    closes right after the 413 (a linger would hold a connection slot for seconds)."""
    body = json.dumps(v2_body([SETOSA] * (MAX_INFER_ROWS + 1))).encode()
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    # The timeout is below the server's linger (5 s): a lingering server makes recv() time out.
    with socket.create_connection(("127.0.0.1", iris_server.port), timeout=3) as connection:
        connection.sendall(head.encode() + body)
        response = read_response(connection)

    assert response.startswith(b"HTTP/1.1 413 ")
    assert b"(MODEL_MAX_INFER_ROWS)" in response


def test_a_client_that_expects_100_continue_gets_413_before_sending_the_body(
    iris_server: ModelServer,
) -> None:
    head = (
        f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 * MAX_BODY_BYTES}\r\nExpect: 100-continue\r\n\r\n"
    )

    with socket.create_connection(("127.0.0.1", iris_server.port), timeout=30) as connection:
        connection.sendall(head.encode())
        response = read_response(connection)

    assert response.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in response


def test_headers_over_the_limit_get_431(iris_server: ModelServer) -> None:
    response = iris_server.client.get("/v2/health/live", headers={"x-padding": "a" * 10_000})
    fine = iris_server.client.get("/v2/health/live", headers={"x-padding": "a" * 4_000})

    assert response.status_code == 431
    assert "(MAX_HEADER_BYTES)" in response.json()["error"]
    assert fine.status_code == 200


@pytest.mark.parametrize(
    ("host", "addresses"),
    [("::1", ["[::1]"]), ("127.0.0.1,::1", ["127.0.0.1", "[::1]"])],
    ids=["IPv6", "IPv4 and IPv6"],
)
def test_the_server_listens_on_ipv6_and_on_several_addresses(
    processes: ProcessGroup, iris_model_file: Path, host: str, addresses: list[str]
) -> None:
    server = start_server(processes, str(iris_model_file), *pinned(iris_model_file), "--host", host)

    def answers(address: str) -> bool:
        assert server.process.alive(), server.process.log()
        try:
            return httpx.get(f"http://{address}:{server.port}/v2/health/live", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    for address in addresses:
        wait_for(lambda: answers(address), timeout=60, interval=0.1, what=f"{address} to answer")  # noqa: B023


def test_pipeline_nan_is_422_not_200_with_nulls(processes: ProcessGroup, tmp_path: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    features, labels = load_iris(return_X_y=True)
    pipeline = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=1000)).fit(
        features, labels
    )
    path = tmp_path / "model.joblib"
    joblib.dump(pipeline, path)
    server = start_server(processes, str(path), *pinned(path)).wait_ready()

    response = server.client.post(
        INFER, json=v2_body([[-5.1, 3.5, 1.4, 0.2]], outputs=[{"name": "predict_proba"}])
    )

    assert response.status_code == 422
    assert "NaN" in response.json()["error"]
