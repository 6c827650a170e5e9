"""`kubectl vigil get`: the rollout story rendered from a ModelDeployment and its events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vigil_operator.cli import parse_args, render

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def rolled_back() -> dict:
    return {
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"version": "v2"},
        "status": {
            "phase": "RolledBack",
            "message": "v2 was rolled back (AnalysisFailed); v1 serves.",
            "currentVersion": "v1",
            "stableVersion": "v1",
            "failedVersion": "v2",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "RolledBack"},
                {"type": "Stalled", "status": "True", "reason": "AnalysisFailed"},
                {"type": "RolledBack", "status": "True", "reason": "AnalysisFailed"},
            ],
            "lastCheck": {
                "time": "2026-11-30T11:59:48.000Z",
                "verdict": "pass",
                "reason": "accuracy 0.970 over 12 new labelled predictions",
                "query": "label_replace(sum(...))",
            },
            "watch": {"statistic": 0.0, "samples": 240, "seconds": 600},
            "history": [
                {
                    "version": "v2",
                    "outcome": "failed",
                    "at": "2026-11-30T11:50:00.000Z",
                    "reason": "v2 failed",
                },
                {
                    "version": "v1",
                    "outcome": "promoted",
                    "at": "2026-11-30T10:00:00.000Z",
                    "reason": "3 passed",
                },
            ],
        },
    }


def event(reason: str, at: str, kind: str = "Normal") -> dict:
    return {"reason": reason, "type": kind, "message": f"{reason} message", "lastTimestamp": at}


def test_the_story_shows_what_serves_why_and_what_happened() -> None:
    events = [
        event("RolledBack", "2026-11-30T11:50:00Z", "Warning"),
        event("RolloutStarted", "2026-11-30T11:40:00Z"),
    ]
    text = render(rolled_back(), events, NOW)
    lines = text.splitlines()
    assert lines[2] == "Phase:       RolledBack  v2 was rolled back (AnalysisFailed); v1 serves."
    assert lines[3] == "Versions:    spec v2  serving v1  stable v1  failed v2"
    assert lines[4] == (
        "Conditions:  Ready=False  Reconciling=?  Stalled=True (AnalysisFailed)  Degraded=?  "
        "RolledBack=True (AnalysisFailed)"
    )
    assert "Last check (12s ago): pass  accuracy 0.970 over 12 new labelled predictions" in text
    assert "  query: label_replace(sum(...))" in text
    assert "Drift watch: evidence 0.00 over 240 labelled predictions in 10m" in text
    history = lines[lines.index("History (newest first):") + 1 :][:2]
    assert history[0].split()[:4] == ["v2", "failed", "10m", "ago"]
    assert history[1].split()[:4] == ["v1", "promoted", "2h", "ago"]
    shown = [line.split()[3] for line in lines[lines.index("Events (last 2):") + 1 :]]
    assert shown == ["RolloutStarted", "RolledBack"]  # oldest first, like kubectl describe


def test_a_new_object_renders_without_status_and_events_are_limited() -> None:
    fresh = {"metadata": {"name": "iris", "namespace": "ml"}, "spec": {"version": "v1"}}
    text = render(fresh, [event(f"E{i}", f"2026-11-30T11:0{i}:00Z") for i in range(5)], NOW, limit=2)
    assert "Phase:       Pending" in text
    assert "Last check" not in text
    assert "Events (last 2):" in text
    assert "E4 message" in text
    assert "E2 message" not in text


@pytest.mark.parametrize("command", ["get", "promote", "rollback", "retry"])
def test_the_commands(command: str) -> None:
    args = parse_args([command, "iris", "-n", "ml"])
    assert (args.command, args.name, args.namespace) == (command, "iris", "ml")


def test_an_unknown_command_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_args(["delete", "iris"])


def test_a_staged_rollout_shows_its_step_and_the_candidates_share() -> None:
    mdep = {
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"version": "v2"},
        "status": {
            "phase": "Analyzing",
            "strategy": {
                "type": "Shadow",
                "stage": "Canary",
                "step": 2,
                "steps": 3,
                "candidatePercent": 25,
                "candidateReplicas": 1,
            },
        },
    }
    text = render(mdep, [], datetime(2025, 3, 1, tzinfo=UTC))
    assert (
        "Strategy:    Shadow, step 2 of 3: Canary, the candidate answers 25% of user requests "
        "(1 replica of its own)" in text
    )
