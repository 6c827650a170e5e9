"""Loading, against the real process: refusals leave the server live but not ready and say why;
an unavailable model store is retried, then the process exits; URI credentials never show."""

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
import skops.io
from model_server_harness import (
    MODEL_NAME,
    MODEL_VERSION,
    SERVER,
    ModelServer,
    pinned,
    server_argv,
    start_server,
)
from sklearn.linear_model import LogisticRegression

from harness.model_store import ModelStore
from harness.ports import free_port
from harness.processes import ProcessGroup
from harness.waiting import wait_for

EXIT_STORE_UNAVAILABLE = 3
HTTP_CASES_TIMEOUT = 30


@pytest.fixture
def store() -> Iterator[ModelStore]:
    """A real HTTP model store on 127.0.0.1, not started: each test decides when it comes up."""
    unstarted = ModelStore()
    yield unstarted
    unstarted.stop()


def refusal_cases(tmp_path: Path, model_file: Path) -> dict[str, tuple[str, list[str], str]]:
    """Name: (model URI, extra flags, the reason the log and the readiness probe give)."""
    not_an_estimator = tmp_path / "weights.joblib"
    joblib.dump({"coef": [1.0, 2.0]}, not_an_estimator)
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")
    # What unpickling a model saved by another scikit-learn version looks like: attributes that
    # this version's predict() needs are missing or shaped differently.
    missing_attribute = tmp_path / "missing-attribute.joblib"
    broken = joblib.load(model_file)
    del broken.coef_
    joblib.dump(broken, missing_attribute)
    no_classes = tmp_path / "no-classes.joblib"
    broken = joblib.load(model_file)
    broken.classes_ = np.array([])
    joblib.dump(broken, no_classes)
    wrong = "0" * 64
    return {
        "checksum mismatch": (str(model_file), ["--sha256", wrong], f"sha256 mismatch: expected {wrong}"),
        "missing file": (str(tmp_path / "gone.joblib"), [], "no such file"),
        "not an estimator": (
            str(not_an_estimator),
            [*pinned(not_an_estimator)],
            "holds a dict, not an estimator with predict()",
        ),
        "unsupported format": (onnx.as_uri(), [], "unsupported model format '.onnx'"),
        "unpinned pickle": (str(model_file), [], "runs code from it, so it needs its sha256"),
        "warm-up AttributeError": (
            str(missing_attribute),
            [*pinned(missing_attribute)],
            "fails its warm-up prediction: AttributeError",
        ),
        "warm-up IndexError": (
            str(no_classes),
            [*pinned(no_classes)],
            "fails its warm-up prediction: IndexError",
        ),
    }


CASES = [
    "checksum mismatch",
    "missing file",
    "not an estimator",
    "unsupported format",
    "unpinned pickle",
    "warm-up AttributeError",
    "warm-up IndexError",
]


def wait_not_ready(server: ModelServer, timeout: float = HTTP_CASES_TIMEOUT) -> httpx.Response:
    """The readiness answer once it reports a loading error (never "still loading" for ever)."""

    def loading_failed() -> httpx.Response | None:
        assert server.process.alive(), f"the server exited:\n{server.process.log()}"
        response = server.client.get("/v2/health/ready")
        return response if "model not loaded" in response.json()["error"] else None

    return wait_for(loading_failed, timeout=timeout, what="the readiness probe to report the loading error")


def assert_live_but_not_ready(server: ModelServer, reason: str) -> None:
    ready = wait_not_ready(server)
    assert ready.status_code == 503
    assert reason in ready.json()["error"]
    model_ready = server.client.get(f"/v2/models/{MODEL_NAME}/ready")
    infer = server.client.post(f"/v2/models/{MODEL_NAME}/infer", json={"inputs": []})
    assert (model_ready.status_code, infer.status_code) == (503, 503)
    assert reason in model_ready.json()["error"]
    assert reason in infer.json()["error"]
    assert server.client.get("/v2/health/live").status_code == 200
    error_lines = [line for line in server.process.log().splitlines() if " ERROR " in line]
    assert len(error_lines) == 1
    assert "model not loaded, server stays unready" in error_lines[0]
    assert reason in error_lines[0]


@pytest.mark.parametrize("case", CASES)
def test_a_model_that_cannot_load_leaves_the_server_live_but_not_ready(
    processes: ProcessGroup,
    tmp_path: Path,
    iris_model_file: Path,
    case: str,
) -> None:
    model_uri, flags, reason = refusal_cases(tmp_path, iris_model_file)[case]
    server = start_server(processes, model_uri, *flags).wait_live()

    assert_live_but_not_ready(server, reason)


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


def test_an_unpinned_pickle_loads_when_the_environment_allows_it(
    processes: ProcessGroup, iris_model_file: Path
) -> None:
    port = free_port()
    argv = server_argv(str(iris_model_file), port)
    env = {"MODEL_ALLOW_UNPINNED_PICKLE": "true"}

    server = ModelServer(processes.start("model-server", argv, env=env), port).wait_ready()

    assert "(joblib, sha256" in server.process.log()


def test_the_server_becomes_ready_once_a_late_model_store_comes_up(
    processes: ProcessGroup, store: ModelStore, iris_model_file: Path
) -> None:
    """The model store is down when the pod starts, then back: the pod becomes ready, no restart."""
    store.files["/iris/model.joblib"] = iris_model_file.read_bytes()
    server = start_server(processes, f"{store.url}/iris/model.joblib", *pinned(iris_model_file)).wait_live()

    def retrying() -> str | None:
        error = server.client.get("/v2/health/ready").json()["error"]
        return error if "retrying in" in error else None

    reason = wait_for(retrying, timeout=HTTP_CASES_TIMEOUT, what="readiness to say the download is retried")
    assert reason.startswith("the model is still loading: ")
    assert "Connection refused" in reason or "connect" in reason.lower()
    store.start()

    server.wait_ready()
    assert server.process.alive()
    assert store.requests == ["/iris/model.joblib"]
    assert "model store unavailable, retrying" in server.process.log()


@pytest.mark.parametrize("cause", ["down", "dripping"])
def test_a_model_store_that_stays_unavailable_ends_the_process_with_status_3(
    processes: ProcessGroup, store: ModelStore, iris_model_file: Path, cause: str
) -> None:
    """Down for good, or a byte every 100 ms against a 1 s deadline: retried, then exit 3 (a restart)."""
    store.files["/model.joblib"] = iris_model_file.read_bytes()
    if cause == "dripping":
        store.drip_seconds["/model.joblib"] = 0.1
        store.start()
    limits = ["--download-timeout-seconds", "1", "--download-retry-seconds", "2"]
    server = start_server(processes, f"{store.url}/model.joblib", *pinned(iris_model_file), *limits)

    status = wait_for(
        lambda: server.process.popen.poll(), timeout=HTTP_CASES_TIMEOUT, what="the server to exit"
    )

    assert status == EXIT_STORE_UNAVAILABLE
    log = server.process.log()
    assert "model store unavailable, exiting with status 3 so that the pod restarts" in log
    assert "gave up after" in log
    if cause == "dripping":
        assert "did not finish within 1 s (MODEL_DOWNLOAD_TIMEOUT_SECONDS)" in log
        assert len(store.requests) >= 2


@pytest.mark.parametrize("case", ["oversized", "checksum mismatch", "https to http redirect"])
def test_a_model_store_answer_that_is_refused_leaves_the_server_live_but_not_ready(
    processes: ProcessGroup, tmp_path: Path, store: ModelStore, iris_model_file: Path, case: str
) -> None:
    content = iris_model_file.read_bytes()
    store.files["/model.joblib"] = content
    store.start()
    env: dict[str, str] = {}
    uri, flags = f"{store.url}/model.joblib", [*pinned(iris_model_file)]
    if case == "oversized":
        flags += ["--max-model-bytes", "500"]
        reason = "the model file is larger than 500 bytes (MODEL_MAX_BYTES)"
    elif case == "checksum mismatch":
        flags = ["--sha256", "1" * 64]
        reason = f"sha256 mismatch: expected {'1' * 64}, file has {hashlib.sha256(content).hexdigest()}"
    else:
        # The attack: an unpinned pickle over https, redirected to plain http by someone
        # on the path. The TLS store is real; the server trusts its certificate.
        tls = ModelStore(certificate_dir=tmp_path / "tls").start()
        tls.redirects["/model.joblib"] = f"{store.url}/model.joblib"
        env["SSL_CERT_FILE"] = str(tls.certificate)
        uri, flags = f"{tls.url}/model.joblib", ["--allow-unpinned-pickle"]
        reason = "refusing a redirect from https to http://"
    port = free_port()

    server = ModelServer(processes.start("model-server", server_argv(uri, port, *flags), env=env), port)
    assert_live_but_not_ready(server.wait_live(), reason)

    if case == "https to http redirect":
        tls.stop()
        assert store.requests == []
    else:
        assert store.requests == ["/model.joblib"]  # final answers are not retried


@pytest.mark.parametrize("outcome", ["loaded", "missing"])
def test_no_response_or_log_line_shows_the_credentials_in_the_model_uri(
    processes: ProcessGroup, store: ModelStore, iris_model_file: Path, outcome: str
) -> None:
    store.files["/model.joblib"] = iris_model_file.read_bytes()
    store.start()
    path = "/model.joblib" if outcome == "loaded" else "/missing.joblib"
    secret_uri = (
        f"http://reader:hunter2@127.0.0.1:{store.port}{path}?X-Amz-Signature=s3cr3t&X-Amz-Credential=AKIA"
    )
    server = start_server(processes, secret_uri, *pinned(iris_model_file), "--log-level", "debug")

    if outcome == "loaded":
        server.wait_ready()
        answers = [server.client.get("/v2/health/ready"), server.client.get(f"/v2/models/{MODEL_NAME}")]
    else:
        wait_not_ready(server.wait_live())
        answers = [
            server.client.get("/v2/health/ready"),
            server.client.get(f"/v2/models/{MODEL_NAME}/ready"),
            server.client.post(f"/v2/models/{MODEL_NAME}/infer", json={"inputs": []}),
            server.client.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": [[1, 2, 3, 4]]}),
            server.client.get(f"/v1/models/{MODEL_NAME}"),
        ]
        assert (
            f"http://***@127.0.0.1:{store.port}/missing.joblib?***: download failed: HTTP 404"
            in (answers[0].json()["error"])
        )
    log = server.process.log()
    assert f"http://***@127.0.0.1:{store.port}{path}?***" in log
    for shown in [log, *(answer.text for answer in answers)]:
        for secret in ("hunter2", "s3cr3t", "AKIA", "reader"):
            assert secret not in shown
