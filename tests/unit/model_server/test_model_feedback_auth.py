"""The feedback token: a bearer token from a file, re-read when the kubelet rotates the Secret."""

import os
from pathlib import Path

import pytest

from vigil_model_server.auth import FeedbackToken
from vigil_model_server.errors import ApiError


def refusal(token: FeedbackToken, header: str | None) -> ApiError:
    with pytest.raises(ApiError) as error_info:
        token.check(header)
    return error_info.value


def mount_secret(directory: Path, token: str, generation: int) -> Path:
    """Write `token` as the kubelet writes a Secret volume: a new directory behind the ..data symlink."""
    data = directory / f"..{generation}"
    data.mkdir()
    (data / "token").write_text(token)
    (directory / "..data_tmp").symlink_to(data.name)
    os.replace(directory / "..data_tmp", directory / "..data")
    if not (directory / "token").is_symlink():
        (directory / "token").symlink_to("..data/token")
    return directory / "token"


def test_without_a_token_file_every_request_passes() -> None:
    token = FeedbackToken(None)

    token.check(None)

    assert not token.required


def test_the_right_bearer_token_passes_and_a_missing_or_wrong_one_gets_401(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("s3cret-token\n")  # a trailing newline, as `echo` leaves it
    token = FeedbackToken(str(path))

    token.check("Bearer s3cret-token")
    token.check("bearer s3cret-token")
    missing, wrong, basic = refusal(token, None), refusal(token, "Bearer nope"), refusal(token, "Basic czM=")

    assert (missing.status, wrong.status, basic.status) == (401, 401, 401)
    assert missing.headers == {"WWW-Authenticate": 'Bearer realm="vigil-feedback"'}
    assert wrong.headers == {"WWW-Authenticate": 'Bearer realm="vigil-feedback", error="invalid_token"'}
    assert "Authorization: Bearer <token>" in missing.message


def test_a_rotated_secret_takes_effect_without_a_restart(tmp_path: Path) -> None:
    path = mount_secret(tmp_path, "first", 1)
    token = FeedbackToken(str(path))
    token.check("Bearer first")

    mount_secret(tmp_path, "second", 2)

    token.check("Bearer second")
    assert refusal(token, "Bearer first").status == 401


@pytest.mark.parametrize("content", ["", "  \n"])
def test_an_empty_token_file_refuses_all_feedback_with_503(tmp_path: Path, content: str) -> None:
    path = tmp_path / "token"
    path.write_text(content)

    error = refusal(FeedbackToken(str(path)), "Bearer ")

    assert error.status == 503
    assert f"the feedback token file {path} is empty" in error.message


def test_a_missing_token_file_refuses_feedback_until_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "token"
    token = FeedbackToken(str(path))

    error = refusal(token, "Bearer anything")
    path.write_text("late")

    assert error.status == 503
    assert "cannot be read: No such file or directory" in error.message
    token.check("Bearer late")
