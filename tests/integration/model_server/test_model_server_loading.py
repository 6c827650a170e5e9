"""A model that cannot be loaded leaves the server live but not ready, with one clear log line."""

import hashlib
import os
from pathlib import Path

import httpx
import joblib
import pytest
import skops.io
from model_server_harness import MODEL_NAME, MODEL_VERSION, SERVER, ModelServer, start_server
from sklearn.linear_model import LogisticRegression

from harness.ports import free_port
from harness.processes import ProcessGroup
from harness.waiting import wait_for


def refusal_cases(tmp_path: Path, model_file: Path) -> dict[str, tuple[str, list[str], str]]:
    """Name: (model URI, extra flags, the reason the log and the readiness probe give)."""
    not_an_estimator = tmp_path / "weights.joblib"
    joblib.dump({"coef": [1.0, 2.0]}, not_an_estimator)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    wrong = "0" * 64
    return {
        "checksum mismatch": (str(model_file), ["--sha256", wrong], f"sha256 mismatch: expected {wrong}"),
        "missing file": (str(tmp_path / "gone.joblib"), [], "no such file"),
        "not an estimator": (str(not_an_estimator), [], "holds a dict, not an estimator with predict()"),
        "unsupported format": (onnx.as_uri(), [], "unsupported model format '.onnx'"),
    }


CASES = ["checksum mismatch", "missing file", "not an estimator", "unsupported format"]


@pytest.mark.parametrize("case", CASES)
def test_a_model_that_cannot_load_leaves_the_server_live_but_not_ready(
    processes: ProcessGroup, tmp_path: Path, iris_model_file: Path, case: str
) -> None:
    model_uri, flags, reason = refusal_cases(tmp_path, iris_model_file)[case]
    server = start_server(processes, model_uri, *flags).wait_live()

    def loading_failed() -> httpx.Response | None:
        response = server.client.get("/v2/health/ready")
        return response if "model not loaded" in response.json()["error"] else None

    ready = wait_for(loading_failed, timeout=30, what="the readiness probe to report the loading error")

    assert ready.status_code == 503
    assert reason in ready.json()["error"]
    model_ready = server.client.get(f"/v2/models/{MODEL_NAME}/ready")
    infer = server.client.post(f"/v2/models/{MODEL_NAME}/infer", json={"inputs": []})
    assert (model_ready.status_code, infer.status_code) == (503, 503)
    assert reason in infer.json()["error"]
    assert server.client.get("/v2/health/live").status_code == 200
    error_lines = [line for line in server.process.log().splitlines() if " ERROR " in line]
    assert len(error_lines) == 1
    assert "model not loaded, server stays unready" in error_lines[0]
    assert reason in error_lines[0]


def test_environment_variables_alone_configure_a_server_for_a_checked_skops_model(
    processes: ProcessGroup, tmp_path: Path, iris_classifier: LogisticRegression
) -> None:
    path = tmp_path / "model.skops"
    skops.io.dump(iris_classifier, path)
    port = free_port()
    env = {
        "MODEL_URI": path.as_uri(),
        "MODEL_NAME": MODEL_NAME,
        "MODEL_VERSION": MODEL_VERSION,
        "MODEL_SHA256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    assert not {"MODEL_URI", "PORT"} & set(os.environ)

    server = ModelServer(processes.start("model-server", [str(SERVER)], env=env), port).wait_ready()
    virginica = {"instances": [[6.9, 3.1, 5.4, 2.1]]}
    response = server.client.post(f"/v1/models/{MODEL_NAME}:predict", json=virginica)

    assert response.json()["predictions"] == [2]
    assert "(skops, sha256" in server.process.log()
