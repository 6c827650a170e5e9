"""Feedback needs the bearer token when the server has a token file; rotation needs no restart."""

import os
from pathlib import Path

import pytest
from model_server_harness import MODEL_NAME, MODEL_VERSION, ModelServer, pinned, start_server

from harness.processes import ProcessGroup

FEEDBACK = f"/v2/models/{MODEL_NAME}/feedback"
VERSIONED_FEEDBACK = f"/v2/models/{MODEL_NAME}/versions/{MODEL_VERSION}/feedback"
SETOSA_LABELLED = {"instances": [[5.1, 3.5, 1.4, 0.2]], "labels": [0]}


def mount_secret(directory: Path, token: str, generation: int) -> Path:
    """Write `token` as the kubelet updates a mounted Secret: a new directory swapped in behind ..data."""
    data = directory / f"..{generation}"
    data.mkdir()
    (data / "token").write_text(token)
    (directory / "..data_tmp").symlink_to(data.name)
    os.replace(directory / "..data_tmp", directory / "..data")
    if not (directory / "token").is_symlink():
        (directory / "token").symlink_to("..data/token")
    return directory / "token"


@pytest.fixture(scope="module")
def secret_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feedback-secret")


@pytest.fixture(scope="module")
def iris_server(module_processes: ProcessGroup, iris_model_file: Path, secret_dir: Path) -> ModelServer:
    token_file = mount_secret(secret_dir, "first-token", 1)
    flags = ("--feedback-token-file", str(token_file), *pinned(iris_model_file))
    return start_server(module_processes, str(iris_model_file), *flags).wait_ready()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", [FEEDBACK, VERSIONED_FEEDBACK])
def test_feedback_without_or_with_a_wrong_token_gets_401_and_with_it_200(
    iris_server: ModelServer, path: str
) -> None:
    before = iris_server.metric("vigil_model_feedback_total")

    missing = iris_server.client.post(path, json=SETOSA_LABELLED)
    wrong = iris_server.client.post(path, json=SETOSA_LABELLED, headers=bearer("guess"))
    right = iris_server.client.post(path, json=SETOSA_LABELLED, headers=bearer("first-token"))

    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer <token>" in missing.json()["error"]
    assert iris_server.metric("vigil_model_feedback_total") == before + 1  # only the authenticated one


def test_inference_needs_no_token(iris_server: ModelServer) -> None:
    response = iris_server.client.post(
        f"/v1/models/{MODEL_NAME}:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
    )

    assert response.status_code == 200


def test_a_rotated_token_takes_effect_without_a_restart(iris_server: ModelServer, secret_dir: Path) -> None:
    pid = iris_server.process.popen.pid
    mount_secret(secret_dir, "second-token", 2)

    old = iris_server.client.post(FEEDBACK, json=SETOSA_LABELLED, headers=bearer("first-token"))
    new = iris_server.client.post(FEEDBACK, json=SETOSA_LABELLED, headers=bearer("second-token"))

    assert (old.status_code, new.status_code) == (401, 200)
    assert iris_server.process.popen.pid == pid
    assert iris_server.process.alive()


def test_an_empty_token_file_refuses_feedback_with_503_saying_why(
    processes: ProcessGroup, iris_model_file: Path, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("")
    flags = ("--feedback-token-file", str(token_file), *pinned(iris_model_file))
    server = start_server(processes, str(iris_model_file), *flags).wait_ready()

    response = server.client.post(FEEDBACK, json=SETOSA_LABELLED, headers=bearer("anything"))

    assert response.status_code == 503
    assert f"the feedback token file {token_file} is empty" in response.json()["error"]
    assert "refusing feedback" in server.process.log()


def test_without_the_flag_feedback_stays_open_and_the_log_warns(
    processes: ProcessGroup, iris_model_file: Path
) -> None:
    server = start_server(processes, str(iris_model_file), *pinned(iris_model_file)).wait_ready()

    response = server.client.post(FEEDBACK, json=SETOSA_LABELLED)

    assert response.status_code == 200
    assert "feedback is unauthenticated" in server.process.log()
