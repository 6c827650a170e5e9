"""s3:// against a real S3-compatible server (SeaweedFS, tests/harness/s3server.py): loads, every
refusal, the deadline, retries while the store is frozen, and no credential in any message or log."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from model_server_harness import MODEL_NAME, ModelServer, server_argv

from harness.ports import free_port
from harness.processes import ProcessGroup
from harness.s3server import S3Server
from harness.waiting import wait_for
from vigil_model_server.loader import LoadError, LoadOptions, StoreUnavailable, load_model

BUCKET = "models"
EXIT_STORE_UNAVAILABLE = 3


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, iris_model_file: Path) -> Iterator[S3Server]:
    """One SeaweedFS for the module, holding the iris model at iris/v1/model.joblib."""
    processes = ProcessGroup(log_dir=tmp_path_factory.mktemp("s3-logs"))
    server = S3Server.start(tmp_path_factory.mktemp("s3"), processes)
    server.create_bucket(BUCKET)
    server.put(BUCKET, "iris/v1/model.joblib", iris_model_file.read_bytes())
    yield server
    processes.close()


@pytest.fixture
def aws_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The server's AWS_* environment in this process, for load_model called in process."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3.env


@pytest.fixture
def frozen(s3: S3Server) -> Iterator[None]:
    """SeaweedFS stopped with SIGSTOP: it accepts connections (the kernel does) and answers nothing."""
    assert s3.process is not None
    os.kill(s3.process.popen.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(s3.process.popen.pid, signal.SIGCONT)


def pinned(content: bytes, **options: object) -> LoadOptions:
    return LoadOptions(sha256=hashlib.sha256(content).hexdigest(), **options)  # type: ignore[arg-type]


def start(processes: ProcessGroup, uri: str, env: dict[str, str], *flags: str) -> ModelServer:
    port = free_port()
    return ModelServer(processes.start("model-server", server_argv(uri, port, *flags), env=env), port)


def test_a_model_in_s3_is_served(
    s3: S3Server, processes: ProcessGroup, iris_model_file: Path, iris_data: tuple
) -> None:
    digest = hashlib.sha256(iris_model_file.read_bytes()).hexdigest()
    server = start(processes, f"s3://{BUCKET}/iris/v1/model.joblib", s3.env, "--sha256", digest)

    server.wait_ready()
    features, _ = iris_data
    answer = server.client.post(
        f"/v1/models/{MODEL_NAME}:predict", json={"instances": features[:3].tolist()}
    ).json()

    assert len(answer["predictions"]) == 3
    assert "s3://models/iris/v1/model.joblib" in server.process.log()


def test_a_checksum_mismatch_a_missing_object_and_the_size_cap_are_final(
    aws_env: dict[str, str], iris_model_file: Path
) -> None:
    content = iris_model_file.read_bytes()
    patient = {"download_retry_seconds": 60.0}

    with pytest.raises(LoadError, match=r"s3://models/iris/v1/model\.joblib: sha256 mismatch"):
        load_model("s3://models/iris/v1/model.joblib", LoadOptions(sha256="0" * 64, **patient))
    with pytest.raises(LoadError, match=r"s3://models/iris/v2/model\.joblib: no such object") as missing:
        load_model("s3://models/iris/v2/model.joblib", pinned(content, **patient))
    with pytest.raises(LoadError, match=r"s3://no-such-bucket/model\.joblib: no such object"):
        load_model("s3://no-such-bucket/model.joblib", pinned(content, **patient))
    with pytest.raises(LoadError, match=f"larger than {len(content) - 1} bytes") as capped:
        load_model("s3://models/iris/v1/model.joblib", pinned(content, max_bytes=len(content) - 1, **patient))

    assert not isinstance(missing.value, StoreUnavailable)
    assert not isinstance(capped.value, StoreUnavailable)
    assert (
        load_model("s3://models/iris/v1/model.joblib", pinned(content)).sha256
        == hashlib.sha256(content).hexdigest()
    )


def test_wrong_credentials_say_access_denied_and_never_show_the_secret(
    s3: S3Server, processes: ProcessGroup, iris_model_file: Path
) -> None:
    wrong_secret = "wrongSecret-" + s3.secret_key[::-1]
    env = {**s3.env, "AWS_SECRET_ACCESS_KEY": wrong_secret}
    digest = hashlib.sha256(iris_model_file.read_bytes()).hexdigest()
    server = start(
        processes, f"s3://{BUCKET}/iris/v1/model.joblib", env, "--sha256", digest, "--log-level", "debug"
    )
    server.wait_live()

    def refused() -> str | None:
        answer = server.client.get("/v2/health/ready")
        return answer.text if answer.status_code == 503 and "access denied" in answer.text else None

    reason = wait_for(refused, timeout=60, what="readiness to say access denied")
    log = server.process.log()

    assert "s3://models/iris/v1/model.joblib: access denied" in reason
    assert "s3://models/iris/v1/model.joblib: access denied" in log
    for secret in (wrong_secret, s3.secret_key):
        assert secret not in reason
        assert secret not in log
        assert secret not in server.client.get(f"/v2/models/{MODEL_NAME}").text


@pytest.mark.usefixtures("frozen")
def test_a_store_that_answers_nothing_fails_at_the_deadline(aws_env: dict[str, str]) -> None:
    options = LoadOptions(allow_unpinned_pickle=True, download_timeout_seconds=1.0, download_retry_seconds=0)

    started = time.monotonic()
    with pytest.raises(
        StoreUnavailable, match=r"did not finish within 1 s \(MODEL_DOWNLOAD_TIMEOUT_SECONDS\)"
    ):
        load_model("s3://models/iris/v1/model.joblib", options)

    assert time.monotonic() - started < 5


def test_a_frozen_store_is_retried_until_it_answers(
    s3: S3Server, processes: ProcessGroup, iris_model_file: Path
) -> None:
    assert s3.process is not None
    digest = hashlib.sha256(iris_model_file.read_bytes()).hexdigest()
    os.kill(s3.process.popen.pid, signal.SIGSTOP)
    try:
        server = start(
            processes,
            f"s3://{BUCKET}/iris/v1/model.joblib",
            {**s3.env, "MODEL_DOWNLOAD_TIMEOUT_SECONDS": "1", "MODEL_DOWNLOAD_RETRY_SECONDS": "120"},
            "--sha256",
            digest,
        )
        server.wait_live()
        wait_for(
            lambda: "retrying in" in server.client.get("/v2/health/ready").text,
            timeout=60,
            what="readiness to say the download is retried",
        )
    finally:
        os.kill(s3.process.popen.pid, signal.SIGCONT)

    server.wait_ready()
    assert server.process.alive()


def test_an_s3_server_that_stays_away_ends_the_process_with_status_3(
    s3: S3Server, processes: ProcessGroup
) -> None:
    env = {
        **s3.env,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "MODEL_DOWNLOAD_RETRY_SECONDS": "2",
    }
    server = start(processes, f"s3://{BUCKET}/iris/v1/model.joblib", env, "--allow-unpinned-pickle")

    status = wait_for(lambda: server.process.popen.poll(), timeout=60, what="the server to exit")

    assert status == EXIT_STORE_UNAVAILABLE
    assert "s3://models/iris/v1/model.joblib: download failed" in server.process.log()
    assert s3.secret_key not in server.process.log()
    with pytest.raises(httpx.TransportError):
        server.client.get("/v2/health/live")
