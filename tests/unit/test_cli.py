"""`kubectl vigil`: the views (table, describe, action report) rendered from fixtures, and its arguments."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from vigil_operator.cli import parse_args
from vigil_operator.cli_view import (
    action_report,
    describe,
    next_step,
    recent_checks,
    render_describe,
    render_table,
    table_row,
)
from vigil_operator.decisions import Action

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
FAILED_CHECK = (
    "accuracy 0.787 (95% interval 0.70-0.85) < threshold 0.9 over 240 labelled predictions since v2 serves"
)
QUERY = "label_replace(sum(...))"


def rolled_back() -> dict[str, Any]:
    """v1 promoted at 10:00; v2 rolled out at 11:45 and rolled back at 11:50 by three failed checks."""
    v1 = {"version": "v1", "uri": "file:///m/v1.joblib", "image": "server:1"}
    v2 = {"version": "v2", "uri": "file:///m/v2.joblib", "image": "server:1"}
    return {
        "metadata": {"name": "iris", "namespace": "ml", "creationTimestamp": "2026-11-30T09:00:00Z"},
        "spec": {
            "version": "v2",
            "model": {"uri": v2["uri"]},
            "analysis": {"interval": "30s", "failureLimit": 3, "successLimit": 3, "errorLimit": 5},
        },
        "status": {
            "phase": "RolledBack",
            "message": "v2 was rolled back (AnalysisFailed); v1 serves.",
            "currentVersion": "v1",
            "stableVersion": "v1",
            "failedVersion": "v2",
            "currentRelease": v1,
            "stableRelease": v1,
            "rolloutStartedAt": "2026-11-30T11:50:00.000Z",
            "servingSince": "2026-11-30T11:50:05.000Z",
            "rollbackReason": "AnalysisFailed",
            "streaks": {"failures": 0, "passes": 1, "errors": 0},
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "RolledBack"},
                {"type": "Stalled", "status": "True", "reason": "AnalysisFailed"},
                {"type": "RolledBack", "status": "True", "reason": "AnalysisFailed"},
            ],
            "lastCheck": {
                "time": "2026-11-30T11:59:48.000Z",
                "verdict": "pass",
                "value": 0.97,
                "samples": 12,
                "reason": "accuracy 0.970 over 12 new labelled predictions",
                "query": QUERY,
            },
            "watch": {"statistic": 0.0, "samples": 240, "seconds": 600},
            "history": [
                {**v2, "outcome": "failed", "at": "2026-11-30T11:50:00.000Z", "reason": "v2 failed analysis"},
                {**v1, "outcome": "promoted", "at": "2026-11-30T10:00:00.000Z", "reason": "3 checks passed"},
            ],
        },
    }


def event(reason: str, at: str, message: str = "", kind: str = "Normal") -> dict[str, Any]:
    return {"reason": reason, "type": kind, "message": message or f"{reason} message", "lastTimestamp": at}


def rollback_events() -> list[dict[str, Any]]:
    """What the operator posts for a rollback by failed checks (not in order: the API lists them so)."""
    failed = [
        event(
            "AnalysisFailed",
            f"2026-11-30T11:4{minute}:00Z",
            f"check failed ({count}/3): {FAILED_CHECK}; query: {QUERY}",
            "Warning",
        )
        for count, minute in ((1, 8), (2, 9))
    ]
    return [
        event(
            "RolledBack", "2026-11-30T11:50:00Z", "rolled back from v2 to v1: v2 failed analysis", "Warning"
        ),
        event("RolloutStarted", "2026-11-30T11:45:00Z", "rolling out v2 (was v1)"),
        *failed,
        event("AnalysisFailed", "2026-11-30T11:50:00Z", f"check failed (3/3): {FAILED_CHECK}", "Warning"),
    ]


def test_describe_after_a_rollback_tells_what_serves_why_and_what_happened() -> None:
    text = render_describe(describe(rolled_back(), rollback_events(), NOW), NOW)
    lines = text.splitlines()
    assert lines[2] == "Phase:       RolledBack  v2 was rolled back (AnalysisFailed); v1 serves."
    assert lines[3] == "Versions:    spec v2  serving v1  stable v1  failed v2"
    assert lines[4] == (
        "Conditions:  Ready=False  Reconciling=?  Stalled=True (AnalysisFailed)  Degraded=?  "
        "RolledBack=True (AnalysisFailed)"
    )
    assert lines[5] == (
        "Analysis:    every 30s, built-in accuracy, threshold 0.9, 3 passes promote, 3 failures roll back"
    )
    assert "Drift watch: evidence 0.00 over 240 labelled predictions in 10m" in text
    history = lines[lines.index("History (newest first):") + 1 :][:2]
    assert history[0].split()[:4] == ["v2", "failed", "10m", "ago"]
    assert history[1].split()[:4] == ["v1", "promoted", "2h", "ago"]
    shown = [line.split()[3] for line in lines[lines.index("Events (last 5):") + 1 :]]
    assert shown == ["RolloutStarted", "AnalysisFailed", "AnalysisFailed", "RolledBack", "AnalysisFailed"]
    assert text.count("query:") == 1, "the query is shown once, under Checks, not in every event"


def test_describe_lists_every_check_on_record_with_value_interval_and_verdict() -> None:
    lines = render_describe(describe(rolled_back(), rollback_events(), NOW), NOW).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Checks (every 30s;"))
    table = lines[start + 1 : start + 6]
    assert table[0].split() == ["WHEN", "VERDICT", "VALUE", "SAMPLES", "REASON"]
    assert [row.split()[:5] for row in table[1:]] == [
        ["12m", "ago", "fail", "0.787", "-"],
        ["11m", "ago", "fail", "0.787", "-"],
        ["10m", "ago", "fail", "0.787", "-"],
        ["12s", "ago", "pass", "0.97", "12"],
    ]
    assert "check failed (2/3): accuracy 0.787" in table[2]
    assert "query:" not in table[2]  # the query is shown once, below
    assert lines[start + 6] == f"  query: {QUERY}"
    assert lines[start + 7] == "  in a row: 1 passed, 0/3 failed, 0/5 without data"  # after promotion


def test_describe_says_what_happens_next_and_when() -> None:
    text = render_describe(describe(rolled_back(), [], NOW), NOW)
    assert (
        "Next:        next check at 12:00:18Z (in 18s): watching v1, a significant drop in accuracy rolls it "
        "back; v2 is not rolled out again until you change spec.version, or run `kubectl vigil retry iris`"
    ) in text


def test_describe_as_json_is_the_same_view() -> None:
    view = describe(rolled_back(), rollback_events(), NOW)
    again = json.loads(json.dumps(view))
    assert again["next"] == {"what": view["next"]["what"], "at": "2026-11-30T12:00:18.000Z"}
    assert [check["verdict"] for check in again["checks"]] == ["fail", "fail", "fail", "pass"]
    assert again["checks"][-1]["source"] == "status.lastCheck"
    assert again["history"][0]["outcome"] == "failed"
    assert again["events"][0]["reason"] == "RolloutStarted"  # oldest first


def analyzing(**status: Any) -> dict[str, Any]:
    mdep = rolled_back()
    v2 = {"version": "v2", "uri": "file:///m/v2.joblib", "image": "server:1"}
    mdep["status"].update(
        phase="Analyzing",
        currentVersion="v2",
        currentRelease=v2,
        failedVersion=None,
        rollbackReason=None,
        streaks={"failures": 1, "passes": 0, "errors": 0},
        **status,
    )
    return mdep


def test_next_step_while_analysing_counts_the_checks_left_either_way() -> None:
    step = next_step(analyzing(), NOW)
    assert step == {
        "what": "next check at 12:00:18Z (in 18s): 3 more passing checks promote v2; "
        "2 more failing checks roll back to v1",
        "at": "2026-11-30T12:00:18.000Z",
    }


def test_next_step_of_a_canary_names_its_stage() -> None:
    strategy: dict[str, Any] = {"type": "Canary", "step": 1, "steps": 3}
    strategy["stages"] = [{"type": "Canary", "percent": 10}, {"type": "Canary", "percent": 50}]
    assert (
        "3 more passing checks move v2 past Canary 10% (step 1 of 3)"
        in next_step(analyzing(strategy=strategy), NOW)["what"]
    )


def test_next_step_while_rolling_out_gives_the_progress_deadline() -> None:
    mdep = analyzing(servingSince=None, rolloutStartedAt="2026-11-30T11:59:00.000Z")
    mdep["spec"]["progressDeadlineSeconds"] = 120
    assert next_step(mdep, NOW) == {
        "what": "waiting for v2 to become available; if it is not by 12:01:00Z, it is rolled back to v1",
        "at": "2026-11-30T12:01:00.000Z",
    }


def test_next_step_when_only_a_person_can_move_things_on() -> None:
    mdep = analyzing(degradedReason="NoStableRelease")
    assert next_step(mdep, NOW) == {
        "what": "nothing until a person acts (NoStableRelease): change spec.version, or run "
        "`kubectl vigil retry iris`",
        "at": None,
    }
    fresh = {"metadata": {"name": "iris"}, "spec": {"version": "v1"}}
    assert next_step(fresh, NOW)["what"] == "waiting for the operator to pick it up (no status yet)"


@pytest.mark.parametrize(
    "status",
    [
        {
            "currentRelease": {"version": "v1"},
            "lastCheck": {"time": "2026-11-30T11:00:00Z", "verdict": "odd"},
        },
        {"currentRelease": {"version": "v1"}, "servingSince": "yesterday"},
    ],
)
def test_a_status_that_cannot_be_read_is_said_so_not_a_crash(status: dict[str, Any]) -> None:
    mdep = {"metadata": {"name": "iris"}, "spec": {"version": "v1"}, "status": status}
    assert next_step(mdep, NOW) == {"what": "unknown: the status could not be read", "at": None}
    render_describe(describe(mdep, [event("X", "not a time")], NOW), NOW)


def test_events_of_the_same_second_keep_the_order_they_were_written_in() -> None:
    failed = event("AnalysisFailed", "2026-11-30T11:50:00Z")
    reverted = event("RolledBack", "2026-11-30T11:50:00Z")
    failed["metadata"], reverted["metadata"] = {"resourceVersion": "99"}, {"resourceVersion": "100"}
    view = describe(rolled_back(), [reverted, failed], NOW)
    assert [item["reason"] for item in view["events"]] == ["AnalysisFailed", "RolledBack"]


def test_a_manual_promotion_is_no_check_but_promotion_by_checks_is() -> None:
    events = [
        event("Promoted", "2026-11-30T11:00:00Z", "v2 promoted to stable: promotion requested by annotation"),
        event(
            "Promoted", "2026-11-30T11:10:00Z", "v3 promoted to stable: 3 checks passed: accuracy 0.950 ok"
        ),
    ]
    checks = recent_checks(None, events)
    assert [(check["verdict"], check["value"]) for check in checks] == [("pass", 0.95)]


def test_a_new_object_renders_without_status_and_events_are_limited() -> None:
    fresh = {"metadata": {"name": "iris", "namespace": "ml"}, "spec": {"version": "v1"}}
    events = [event(f"E{i}", f"2026-11-30T11:0{i}:00Z") for i in range(5)]
    text = render_describe(describe(fresh, events, NOW), NOW, limit=2)
    assert "Phase:       Pending" in text
    assert "Checks" not in text
    assert "Events (last 2):" in text
    assert "E4 message" in text
    assert "E2 message" not in text


def test_a_staged_rollout_shows_its_step_and_the_candidates_share() -> None:
    mdep = analyzing(
        strategy={
            "type": "Shadow",
            "stage": "Canary",
            "step": 2,
            "steps": 3,
            "candidatePercent": 25,
            "candidateReplicas": 1,
        }
    )
    text = render_describe(describe(mdep, [], NOW), NOW)
    assert (
        "Strategy:    Shadow, step 2 of 3: Canary, the candidate answers 25% of user requests "
        "(1 replica of its own)" in text
    )


def test_the_table_is_kubectl_get_mdep_plus_step_and_last_check() -> None:
    canary = analyzing(
        strategy={"type": "Canary", "stage": "Canary", "step": 2, "steps": 3, "candidatePercent": 50}
    )
    canary["metadata"]["name"] = "wine"
    fresh = {"metadata": {"name": "new", "namespace": "ml"}, "spec": {"version": "v1"}}
    rows = [table_row(rolled_back()), table_row(canary), table_row(fresh)]
    assert render_table(rows, NOW).splitlines() == [
        "NAME   VERSION   STABLE   PHASE        STAGE    SHARE    ACCURACY   STEP     LAST CHECK     AGE",
        "iris   v2        v1       RolledBack   <none>   <none>   0.97       <none>   pass 12s ago   3h",
        "wine   v2        v1       Analyzing    Canary   50       0.97       2/3      pass 12s ago   3h",
        "new    v1        <none>   <none>       <none>   <none>   <none>     <none>   <none>         <none>",
    ]
    assert render_table(rows, NOW, namespaces=True).splitlines()[1].split()[:2] == ["ml", "iris"]
    assert render_table([], NOW) == "No resources found."


def test_the_table_row_as_json() -> None:
    row = json.loads(json.dumps(table_row(rolled_back())))
    assert row == {
        "name": "iris",
        "namespace": "ml",
        "version": "v2",
        "current": "v1",
        "stable": "v1",
        "phase": "RolledBack",
        "stage": None,
        "share": None,
        "accuracy": 0.97,
        "step": None,
        "steps": None,
        "lastCheck": {"verdict": "pass", "time": "2026-11-30T11:59:48.000Z"},
        "created": "2026-11-30T09:00:00Z",
    }


def test_the_action_report_shows_the_operators_events_and_the_new_state() -> None:
    mdep = rolled_back()
    mdep["status"].update(phase="RolledBack", message="v2 was rolled back (ManualRollback); v1 serves.")
    events = [event("RolledBack", "2026-11-30T11:59:59Z", "rolled back from v2 to v1: rollback requested")]
    report = action_report(Action.ROLLBACK, mdep, events, 1.25)
    assert report.done
    assert report.text.splitlines() == [
        "the operator handled rollback in 1.25s:",
        "  RolledBack             rolled back from v2 to v1: rollback requested",
        "now: RolledBack  v2 was rolled back (ManualRollback); v1 serves.",
    ]
    ignored = [event("ActionIgnored", "2026-11-30T11:59:59Z", "promote: nothing under analysis")]
    assert not action_report(Action.PROMOTE, mdep, ignored, 0.5).done


@pytest.mark.parametrize("command", ["describe", "watch", "promote", "rollback", "retry"])
def test_the_commands(command: str) -> None:
    args = parse_args([command, "iris", "-n", "ml", "--context", "kind", "--kubeconfig", "/k"])
    assert (args.command, args.name, args.namespace, args.context, args.kubeconfig) == (
        command,
        "iris",
        "ml",
        "kind",
        "/k",
    )


def test_get_takes_an_optional_name_and_json_output() -> None:
    assert parse_args(["get"]).name is None
    args = parse_args(["get", "iris", "-o", "json"])
    assert (args.name, args.output) == ("iris", "json")
    assert parse_args(["get", "-A"]).all_namespaces


def test_actions_wait_by_default_with_a_bound() -> None:
    args = parse_args(["promote", "iris"])
    assert (args.wait, args.timeout) == (True, 60.0)
    args = parse_args(["retry", "iris", "--no-wait", "--timeout", "5"])
    assert (args.wait, args.timeout) == (False, 5.0)


@pytest.mark.parametrize(
    "argv", [["delete", "iris"], ["describe"], ["get", "-o", "yaml"], ["watch", "-o", "json", "x"]]
)
def test_what_is_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
