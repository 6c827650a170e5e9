"""The small pure helpers of the reconcile shell."""

from __future__ import annotations

import asyncio
import json

import pytest

from vigil_operator import kube, prometheus
from vigil_operator.decisions import Action, QueryPlan
from vigil_operator.kube import ApiException, refusal
from vigil_operator.prometheus import AccessPolicy
from vigil_operator.queries import Target
from vigil_operator.reconcile import (
    DRIFT_CHANGES_SHOWN,
    STALE_COPY_SECONDS,
    _as_stored,
    corrected_already,
    drift_message,
    remember_correction,
    requested_action,
    run_check,
)
from vigil_operator.releases import AnalysisSpec, ModelDeploymentSpec, Release


def test_a_stale_copy_of_a_corrected_deployment_is_not_reported_twice() -> None:
    memory: dict[tuple[str, str], tuple[str, float]] = {}
    key = ("ml", "iris")
    assert not corrected_already(memory, key, "41", 0.0)
    remember_correction(memory, key, "41", 0.0)
    assert corrected_already(memory, key, "41", 1.0), "the watch has not delivered the correction yet"
    assert not corrected_already(memory, key, "43", 1.0), "a newer edit is drift again"
    assert not corrected_already(memory, ("ml", "other"), "41", 1.0)
    assert not corrected_already(memory, key, "41", STALE_COPY_SECONDS), "past any watch lag"
    assert not corrected_already(memory, key, None, 1.0)


def test_corrections_are_forgotten_past_the_watch_lag() -> None:
    memory: dict[tuple[str, str], tuple[str, float]] = {}
    remember_correction(memory, ("ml", "a"), "1", 0.0)
    remember_correction(memory, ("ml", "b"), "2", STALE_COPY_SECONDS)
    assert memory == {("ml", "b"): ("2", STALE_COPY_SECONDS)}


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


def test_a_refusal_message_is_bounded() -> None:
    assert len(refusal(api_error(422, {"message": "x" * 100_000})) or "") <= 512


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


# --- Prometheus access: the operator's policy comes before any request or Secret read -----------

TARGET = Target(name="iris", namespace="ml", version="v2")
PLAN = QueryPlan(cumulative=True, range_seconds=300.0, window_seconds=300.0)


def _spec(url: str, secret: str | None = None) -> ModelDeploymentSpec:
    return ModelDeploymentSpec(
        release=Release("v2", "/m.joblib", "img"),
        analysis=AnalysisSpec(prometheus_url=url, credentials_secret=secret, query_timeout=1.0),
    )


def _check(spec: ModelDeploymentSpec, policy: AccessPolicy) -> str | None:
    async def run() -> str | None:
        try:
            measurement, _ = await run_check(spec, TARGET, PLAN, policy=policy)
            return measurement.error
        finally:
            await prometheus.close()

    return asyncio.run(run())


def test_a_url_outside_the_allow_list_is_an_error_and_its_secret_is_not_even_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def never(namespace: str, name: str) -> dict[str, bytes]:
        raise AssertionError("the Secret must not be read for a refused URL")

    monkeypatch.setattr(kube, "read_secret", never)
    policy = AccessPolicy(allowed_urls=("http://prometheus.monitoring:9090",))
    error = _check(_spec("http://attacker.example:9090", secret="prom-reader"), policy)
    assert error is not None
    assert "not in the operator's allow-list" in error


def test_a_secret_with_a_value_that_is_not_utf8_is_an_error_verdict_naming_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def binary(namespace: str, name: str) -> dict[str, bytes]:
        return {"url": b"https://p.example:9090", "token": b"\xff\xfe\xfd"}

    monkeypatch.setattr(kube, "read_secret", binary)
    error = _check(_spec("https://p.example:9090", secret="prom-reader"), AccessPolicy())
    assert error == "Secret 'prom-reader': the value of key 'token' is not UTF-8 text"


def test_a_secrets_credentials_are_not_sent_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    async def token(namespace: str, name: str) -> dict[str, bytes]:
        return {"url": b"http://p.example:9090", "token": b"t0k"}

    monkeypatch.setattr(kube, "read_secret", token)
    error = _check(_spec("http://p.example:9090", secret="prom-reader"), AccessPolicy())
    assert error is not None
    assert "clear text over http://" in error
    assert "t0k" not in error
