"""The small pure helpers of the reconcile shell."""

from __future__ import annotations

import json

import pytest

from vigil_operator.decisions import Action
from vigil_operator.kube import ApiException, refusal
from vigil_operator.reconcile import DRIFT_CHANGES_SHOWN, _as_stored, drift_message, requested_action


def test_a_status_compares_as_the_api_server_stores_it() -> None:
    status = {"phase": "Promoted", "failedVersion": None, "lastCheck": {"value": None, "verdict": "pass"}}
    assert _as_stored(status) == {"phase": "Promoted", "lastCheck": {"verdict": "pass"}}
    assert _as_stored({"history": [{"sha256": None, "version": "v1"}]}) == {"history": [{"version": "v1"}]}


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [("retry", Action.RETRY), (" Promote ", Action.PROMOTE), ("rollback", Action.ROLLBACK), ("reboot", None)],
)
def test_the_action_annotation_is_parsed_and_unknown_values_kept_for_the_report(
    annotation: str, expected: Action | None
) -> None:
    body = {"metadata": {"annotations": {"vigil.dev/action": annotation}}}
    assert requested_action(body) == (expected, annotation)


def test_no_annotation_no_action() -> None:
    assert requested_action({"metadata": {}}) == (None, None)


def api_error(status: int, body: object) -> ApiException:
    error = ApiException(status=status, reason="Unprocessable Entity" if status == 422 else "Error")
    error.body = body if isinstance(body, str | bytes) else json.dumps(body)
    return error


INVALID_LABEL = (
    'Deployment.apps "iris" is invalid: spec.template.labels: Invalid value: "team name": '
    "name part must consist of alphanumeric characters"
)


@pytest.mark.parametrize("status", [400, 403, 422])
def test_a_refusal_carries_the_api_servers_message(status: int) -> None:
    error = api_error(status, {"kind": "Status", "status": "Failure", "message": INVALID_LABEL})
    assert refusal(error) == INVALID_LABEL
    assert refusal(api_error(status, json.dumps({"message": INVALID_LABEL}).encode())) == INVALID_LABEL


def test_a_refusal_without_a_readable_body_still_says_something() -> None:
    assert refusal(api_error(422, "<html>proxy error</html>")) == "Unprocessable Entity"


@pytest.mark.parametrize("status", [404, 409, 429, 500, 503])
def test_transient_errors_are_not_refusals(status: int) -> None:
    assert refusal(api_error(status, {"message": "try again"})) is None


def test_a_drift_message_lists_the_first_changes_and_counts_the_rest() -> None:
    changes = [f"spec.field{index}: 1 -> 2" for index in range(DRIFT_CHANGES_SHOWN + 2)]
    message = drift_message("iris", changes)
    assert message.startswith("reverted edits of Deployment iris: spec.field0: 1 -> 2; spec.field1")
    assert message.endswith("; and 2 more")
    assert drift_message("iris", changes[:1]) == "reverted edits of Deployment iris: spec.field0: 1 -> 2"
