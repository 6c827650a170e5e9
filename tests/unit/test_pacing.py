"""When the operator retries, writes status and re-reads the feedback Secret (vigil_operator.pacing)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from vigil_operator.pacing import (
    own_write,
    retry_delay,
    secret_check_due,
    significant,
    spec_unapplied,
    status_write_due,
    supersedes,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
HEARTBEAT = 300.0


def promoted_status(checked_at: datetime, *, passes: int = 7, value: float = 0.97) -> dict:
    return {
        "observedGeneration": 2,
        "phase": "Promoted",
        "currentVersion": "v2",
        "stableVersion": "v2",
        "streaks": {"failures": 0, "passes": passes, "errors": 0},
        "watch": {
            "statistic": 0.0,
            "samples": 900.0,
            "seconds": 300.0,
            "countedUntil": "2026-11-30T11:59:30.000Z",
        },
        "lastCheck": {
            "time": checked_at.isoformat().replace("+00:00", "Z"),
            "verdict": "pass",
            "value": value,
            "samples": 30.0,
            "query": "q offset 30s",
            "reason": f"accuracy {value}",
        },
        "conditions": [{"type": "Ready", "status": "True", "reason": "Promoted", "message": "v2 is stable"}],
    }


def test_a_passing_check_after_promotion_waits_for_the_heartbeat() -> None:
    stored = promoted_status(NOW - timedelta(seconds=30))
    wanted = promoted_status(NOW, passes=8, value=0.96)
    assert not status_write_due(stored, wanted, NOW, HEARTBEAT)
    later = NOW + timedelta(seconds=HEARTBEAT)
    assert status_write_due(stored, promoted_status(later, passes=18), later, HEARTBEAT)


def test_a_new_verdict_a_failure_or_a_phase_change_is_written_at_once() -> None:
    stored = promoted_status(NOW - timedelta(seconds=30))
    failing = promoted_status(NOW)
    failing["lastCheck"]["verdict"] = "fail"
    failing["streaks"]["failures"] = 1
    assert status_write_due(stored, failing, NOW, HEARTBEAT)
    rolled_back = copy.deepcopy(stored)
    rolled_back["phase"] = "RolledBack"
    assert status_write_due(stored, rolled_back, NOW, HEARTBEAT)
    condition = copy.deepcopy(stored)
    condition["conditions"][0]["status"] = "False"
    assert status_write_due(stored, condition, NOW, HEARTBEAT)


def test_passes_count_before_promotion_not_after() -> None:
    analysing = promoted_status(NOW) | {"phase": "Analyzing", "stableVersion": "v1"}
    more = copy.deepcopy(analysing)
    more["streaks"]["passes"] += 1
    assert significant(analysing) != significant(more)
    promoted_more = promoted_status(NOW, passes=99)
    assert significant(promoted_status(NOW)) == significant(promoted_more)


def test_nothing_changed_is_never_written_and_a_status_without_a_check_always_is() -> None:
    stored = promoted_status(NOW - timedelta(days=1))
    assert not status_write_due(stored, copy.deepcopy(stored), NOW, HEARTBEAT)
    without_check = {key: value for key, value in stored.items() if key != "lastCheck"}
    assert status_write_due(without_check, stored, NOW, HEARTBEAT)


@given(
    failures=st.integers(min_value=0, max_value=10_000),
    base=st.floats(min_value=0.01, max_value=60),
    cap=st.floats(min_value=0.1, max_value=3600),
    draw=st.floats(min_value=0.0, max_value=1.0),
)
def test_retry_delays_are_bounded_by_half_a_step_and_the_cap(
    failures: int, base: float, cap: float, draw: float
) -> None:
    delay = retry_delay(failures, base, cap, rand=lambda: draw)
    step = min(cap, base * 2 ** min(max(failures, 1) - 1, 32))
    assert step / 2 - 1e-9 <= delay <= step + 1e-9
    assert delay <= cap + 1e-9


def test_retry_delays_grow_exponentially_until_the_cap() -> None:
    fixed = [retry_delay(n, 1.0, 60.0, rand=lambda: 1.0) for n in range(1, 9)]
    assert fixed == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_jitter_spreads_retries_of_objects_that_failed_together() -> None:
    draws = iter([0.0, 0.5, 0.99])
    delays = {retry_delay(5, 1.0, 300.0, rand=lambda: next(draws)) for _ in range(3)}
    assert len(delays) == 3


def test_the_secret_is_read_when_never_read_on_a_new_rotation_and_after_the_recheck_period() -> None:
    assert secret_check_due(None, None, NOW, 600)
    assert not secret_check_due((None, NOW - timedelta(seconds=10)), None, NOW, 600)
    assert secret_check_due(("r1", NOW), "r2", NOW, 600)
    assert secret_check_due((None, NOW - timedelta(seconds=600)), None, NOW, 600)


def test_only_the_operators_own_writes_are_recognised() -> None:
    assert own_write("42", {"41", "42"})
    assert not own_write("43", {"41", "42"})
    assert not own_write(None, {"41"})


def md(generation: int = 1, action: str | None = None, deleting: bool = False, rv: str = "5") -> dict:
    meta: dict = {"generation": generation, "resourceVersion": rv, "annotations": {}}
    if action is not None:
        meta["annotations"]["vigil.dev/action"] = action
    if deleting:
        meta["deletionTimestamp"] = "2026-11-30T12:00:00Z"
    return {"metadata": meta, "status": {"phase": "Promoted"}}


def test_a_spec_change_an_action_or_a_deletion_supersedes_the_body_a_round_started_from() -> None:
    assert supersedes(md(1), md(2))
    assert supersedes(md(1), md(1, action="rollback"))
    assert supersedes(md(1, action="retry"), md(1, action="rollback"))
    assert supersedes(md(1), md(1, deleting=True))
    assert supersedes(None, md(1))
    assert supersedes(md(1), None)


def test_a_status_write_or_a_cleared_action_does_not_supersede_a_round() -> None:
    written = md(1, rv="6")
    written["status"] = {"phase": "Degraded"}
    assert not supersedes(md(1), written)
    assert not supersedes(md(1, deleting=True), md(1, deleting=True, rv="7"))
    assert not supersedes(None, None)


@given(st.integers(1, 5), st.integers(1, 5), st.sampled_from([None, "retry", "rollback"]), st.booleans())
def test_supersedes_is_exactly_a_new_generation_action_or_deletion(
    old: int, new: int, action: str | None, deleting: bool
) -> None:
    assert supersedes(md(old), md(new, action=action, deleting=deleting)) == (
        old != new or action is not None or deleting
    )


def test_a_round_on_a_spec_the_status_has_not_seen_makes_no_check() -> None:
    assert spec_unapplied({"metadata": {"generation": 3}, "status": {"observedGeneration": 2}})
    assert not spec_unapplied({"metadata": {"generation": 3}, "status": {"observedGeneration": 3}})
    # A new object has no status yet: nothing to check anyway, and nothing to hold back.
    assert not spec_unapplied({"metadata": {"generation": 1}})
