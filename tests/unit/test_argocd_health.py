"""The Argo CD health Lua for ModelDeployment, run in a real Lua runtime (lupa) against status
objects made by the operator's own status builder for every phase.

tests/e2e/test_argocd_sync.py and tests/e2e/test_gitops.py (Flux) run the same script against live
objects after a real rollback.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lupa.lua51
import pytest
import yaml

from vigil_operator.analysis import Streaks, Verdict
from vigil_operator.decisions import CheckRecord, Facts, Phase, phase_of
from vigil_operator.releases import AnalysisSpec, Release
from vigil_operator.status import status_of

REPO_ROOT = Path(__file__).resolve().parents[2]
HEALTH_LUA = REPO_ROOT / "manifests" / "gitops" / "argocd" / "health.lua"
ARGOCD_CM = REPO_ROOT / "manifests" / "gitops" / "argocd" / "argocd-cm.yaml"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
V1 = Release("v1", "http://models/iris/v1.joblib", "server:0.1.0")
V2 = Release("v2", "http://models/iris/v2.joblib", "server:0.1.0")
ANALYSIS = AnalysisSpec(prometheus_url="http://prometheus:9090", error_limit=3)


def health_script() -> str:
    return HEALTH_LUA.read_text()


def _to_lua(runtime: Any, value: Any) -> Any:
    """JSON-like data as Argo CD hands it to Lua: tables, 1-based arrays, nulls absent."""
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items() if v is not None})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value if v is not None])
    return value


def evaluate_health(obj: dict[str, Any]) -> dict[str, str]:
    """Run the health script on one object in Lua 5.1 (Argo CD's gopher-lua speaks 5.1)."""
    runtime = lupa.lua51.LuaRuntime(register_eval=False)
    runtime.globals().obj = _to_lua(runtime, obj)
    result = runtime.execute(health_script())
    return {"status": result["status"], "message": result["message"]}


def _check(verdict: Verdict, value: float) -> CheckRecord:
    return CheckRecord(NOW, verdict, value, 500, value - 0.02, value + 0.02, "query", "why")


# (name, facts, desired release, expected Argo CD health, a word the message must contain)
CASES: list[tuple[str, Facts, Release, str, str]] = [
    ("first rollout", Facts(current=V1, rollout_started_at=NOW), V1, "Progressing", "rolling out v1"),
    (
        "analysing v2",
        Facts(current=V2, stable=V1, serving_since=NOW, last_check=_check(Verdict.PASS, 0.97)),
        V2,
        "Progressing",
        "v2",
    ),
    ("v1 promoted", Facts(current=V1, stable=V1, serving_since=NOW), V1, "Healthy", "stable"),
    (
        "v2 rolled back",
        Facts(
            current=V1,
            stable=V1,
            serving_since=NOW,
            failed_version="v2",
            rollback_reason="AnalysisFailed",
            last_check=_check(Verdict.FAIL, 0.79),
        ),
        V2,
        "Degraded",
        "AnalysisFailed",
    ),
    (
        "rolled back at the progress deadline",
        Facts(
            current=V1,
            stable=V1,
            serving_since=NOW,
            failed_version="v2",
            rollback_reason="ProgressDeadlineExceeded",
        ),
        V2,
        "Degraded",
        "ProgressDeadlineExceeded",
    ),
    (
        "first version fails: nothing to revert to",
        Facts(current=V1, serving_since=NOW, degraded_reason="NoStableRelease"),
        V1,
        "Degraded",
        "NoStableRelease",
    ),
    (
        "metrics unavailable while analysing",
        Facts(current=V2, stable=V1, serving_since=NOW, streaks=Streaks(errors=3)),
        V2,
        "Degraded",
        "MetricsUnavailable",
    ),
    (
        "metrics unavailable after promotion",
        Facts(current=V1, stable=V1, serving_since=NOW, streaks=Streaks(errors=5)),
        V1,
        "Degraded",
        "MetricsUnavailable",
    ),
]


def _object(status: dict[str, Any] | None, generation: int = 3) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "generation": generation},
        "spec": {"version": "v2"},
    }
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize(
    ("facts", "desired", "health", "word"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_health_of_each_phase(facts: Facts, desired: Release, health: str, word: str) -> None:
    status = status_of(facts, ANALYSIS, desired, generation=3, now=NOW)
    result = evaluate_health(_object(status))
    assert result["status"] == health, result
    assert word in result["message"], result


def test_every_phase_is_covered() -> None:
    assert {phase_of(case[1]) for case in CASES} == set(Phase)


def test_stale_status_is_progressing_even_if_it_says_ready() -> None:
    status = status_of(Facts(current=V1, stable=V1, serving_since=NOW), ANALYSIS, V1, generation=2, now=NOW)
    assert evaluate_health(_object(status, generation=2))["status"] == "Healthy"
    result = evaluate_health(_object(status, generation=3))
    assert result["status"] == "Progressing"
    assert "generation 3" in result["message"]


def test_no_status_yet_is_progressing() -> None:
    assert evaluate_health(_object(None))["status"] == "Progressing"


def test_condition_transition_times_do_not_matter() -> None:
    facts = Facts(current=V1, stable=V1, serving_since=NOW)
    first = status_of(facts, ANALYSIS, V1, generation=3, now=NOW)
    later = status_of(facts, ANALYSIS, V1, generation=3, now=NOW + timedelta(hours=1))
    assert evaluate_health(_object(first)) == evaluate_health(_object(later))


def test_invalid_spec_is_degraded() -> None:
    # The shape reconcile._report_invalid_spec writes: only a Ready=False/InvalidSpec condition.
    status = {
        "observedGeneration": 3,
        "message": "spec.analysis.window must be at least the interval",
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "InvalidSpec",
                "message": "spec.analysis.window must be at least the interval",
                "observedGeneration": 3,
                "lastTransitionTime": "2026-01-01T12:00:00.000Z",
            }
        ],
    }
    result = evaluate_health(_object(status))
    assert result == {"status": "Degraded", "message": "InvalidSpec: " + status["message"]}


def test_any_stalled_reason_is_degraded_with_its_message() -> None:
    # Stalled is the one "a person must act" signal, whatever reason a later operator adds.
    status = status_of(Facts(current=V1, stable=V1, serving_since=NOW), ANALYSIS, V1, generation=3, now=NOW)
    for condition in status["conditions"]:
        if condition["type"] == "Stalled":
            condition.update(status="True", reason="SomethingNew", message="fix this")
    assert evaluate_health(_object(status)) == {"status": "Degraded", "message": "SomethingNew: fix this"}


def test_a_status_written_before_stalled_existed_is_still_degraded_after_a_rollback() -> None:
    facts = Facts(
        current=V1, stable=V1, serving_since=NOW, failed_version="v2", rollback_reason="AnalysisFailed"
    )
    status = status_of(facts, ANALYSIS, V2, generation=3, now=NOW)
    status["conditions"] = [c for c in status["conditions"] if c["type"] not in ("Reconciling", "Stalled")]
    result = evaluate_health(_object(status))
    assert result["status"] == "Degraded"
    assert result["message"].startswith("AnalysisFailed: v2 was rolled back")


def test_argocd_cm_embeds_the_script_verbatim() -> None:
    config_map = yaml.safe_load(ARGOCD_CM.read_text())
    assert config_map["kind"] == "ConfigMap"
    assert config_map["data"]["resource.customizations.health.vigil.dev_ModelDeployment"] == health_script()
