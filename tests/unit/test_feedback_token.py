"""The feedback token Secret (vigil_operator.feedback): when a token is written, and the Secret."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import yaml

from vigil_operator.builders import Owner
from vigil_operator.feedback import feedback_secret_for, needs_new_token, new_token, rotation_requested

GOLDEN = Path(__file__).parent / "golden" / "feedback-secret.yaml"
OWNER = Owner(name="iris", namespace="ml", uid="3f0c6a5e-8b5f-4c39-9a55-0d4c7e3b1a2f")
ROTATED = {"annotations": {"vigil.dev/feedback-token-rotation": "2026-11-30"}}


def test_the_secret_matches_the_golden_file() -> None:
    built = feedback_secret_for(OWNER, "example-token", "2026-11-30")
    if os.environ.get("VIGIL_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(
            "# Golden file: what vigil_operator.feedback.feedback_secret_for makes for ml/iris\n"
            "# (token 'example-token'). Rewrite with VIGIL_UPDATE_GOLDEN=1 and review the diff.\n"
            + yaml.safe_dump(built, sort_keys=False, width=100)
        )
    assert yaml.safe_load(GOLDEN.read_text()) == built


def test_the_secret_is_owned_by_the_model_deployment_and_holds_the_token_under_token() -> None:
    secret = feedback_secret_for(OWNER, "t0k", None)
    assert secret["metadata"]["name"] == "iris-feedback"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert secret["metadata"]["ownerReferences"][0]["controller"] is True
    assert base64.b64decode(secret["data"]["token"]) == b"t0k"
    assert "annotations" not in secret["metadata"]


def test_tokens_are_random_and_long() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    assert all(len(token) >= 43 for token in tokens)  # 32 random bytes, URL-safe base64


@pytest.mark.parametrize(
    ("existing", "rotation", "write"),
    [
        (None, None, True),  # no Secret yet
        (({}, {"other"}), None, True),  # a Secret without a token
        (({}, {"token"}), None, False),  # never overwritten
        (({}, {"token"}), "2026-11-30", True),  # a rotation value the Secret has not seen
        ((ROTATED, {"token"}), "2026-11-30", False),  # already handled: a re-sync does not rotate again
        ((ROTATED, {"token"}), "2026-12-01", True),  # a new value rotates again
        ((ROTATED, {"token"}), None, False),  # the annotation removed: nothing to do
    ],
)
def test_a_token_is_written_only_when_missing_or_on_a_new_rotation_value(
    existing: tuple[dict, set[str]] | None, rotation: str | None, write: bool
) -> None:
    assert needs_new_token(existing, rotation) is write


@pytest.mark.parametrize(
    ("annotations", "value"),
    [
        ({}, None),
        ({"vigil.dev/rotate-feedback-token": " now "}, "now"),
        ({"vigil.dev/rotate-feedback-token": ""}, None),
    ],
)
def test_the_rotation_annotation_is_read_from_the_model_deployment(
    annotations: dict, value: str | None
) -> None:
    assert rotation_requested({"metadata": {"annotations": annotations}}) == value


def test_the_handled_rotation_is_recorded_on_the_secret() -> None:
    secret = feedback_secret_for(OWNER, "t0k", "2026-11-30")
    assert secret["metadata"]["annotations"] == {"vigil.dev/feedback-token-rotation": "2026-11-30"}
