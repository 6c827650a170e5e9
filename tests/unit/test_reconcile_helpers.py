"""The small pure helpers of the reconcile shell."""

from __future__ import annotations

import pytest

from vigil_operator.decisions import Action
from vigil_operator.reconcile import _as_stored, requested_action


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
