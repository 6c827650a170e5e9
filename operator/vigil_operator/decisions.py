"""The decision core: what to run and what to report, given what is observed. Pure.

`decide()` takes the desired release (from spec), the facts recorded in status, the
observed Deployment, the outcome of this round's check (if one was due) and a manual
action, and returns the release the Deployment must run, the new facts, and the events
to emit. Every rollout, promotion and rollback rule lives here and nowhere else; the
Kopf handlers only read the inputs, call this, and apply the answer.

The phase and the conditions are derived from the facts (`phase_of`, `conditions_of`),
so they can never disagree with them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from vigil_operator.analysis import CheckOutcome, Streaks, Verdict, next_streaks
from vigil_operator.constants import HISTORY_LIMIT
from vigil_operator.releases import AnalysisSpec, Release


class Phase(enum.StrEnum):
    PROGRESSING = "Progressing"  # the Deployment is rolling a release out
    ANALYZING = "Analyzing"  # a new release serves; checks decide between promotion and rollback
    PROMOTED = "Promoted"  # the release serving is the stable one
    ROLLED_BACK = "RolledBack"  # a failed release was reverted; the stable one serves
    DEGRADED = "Degraded"  # needs a person: nothing to revert to, or the restored release failed too


class Action(enum.StrEnum):
    """Manual actions, requested with the `vigil.dev/action` annotation."""

    RETRY = "retry"  # roll the failed version (still named by spec) out again
    ROLLBACK = "rollback"  # revert the release under analysis now
    PROMOTE = "promote"  # promote the release under analysis now


class Reason(enum.StrEnum):
    """Event and condition reasons; the docs' troubleshooting page explains each."""

    ROLLOUT_STARTED = "RolloutStarted"
    ROLLOUT_COMPLETE = "RolloutComplete"
    ANALYSIS_FAILED = "AnalysisFailed"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    MANUAL_ROLLBACK = "ManualRollback"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    METRICS_RECOVERED = "MetricsRecovered"
    NO_STABLE_RELEASE = "NoStableRelease"
    RESTORED_RELEASE_FAILED = "RestoredReleaseFailed"
    RETRY_REQUESTED = "RetryRequested"
    ACTION_IGNORED = "ActionIgnored"


@dataclass(frozen=True)
class ObservedDeployment:
    """What the Deployment reports about the release it runs."""

    release: Release | None  # parsed from its pod template; None when it is not ours to read
    available: bool  # up to date, every replica updated and available
    deadline_exceeded: bool  # its Progressing condition says ProgressDeadlineExceeded


@dataclass(frozen=True)
class CheckRecord:
    """The last check, as status shows it."""

    time: datetime
    verdict: Verdict
    value: float | None
    samples: float | None
    lower: float | None
    upper: float | None
    query: str
    reason: str


@dataclass(frozen=True)
class HistoryEntry:
    release: Release
    outcome: str  # promoted, failed, superseded
    at: datetime
    reason: str = ""


@dataclass(frozen=True)
class Facts:
    """What the operator knows about one ModelDeployment; kept in its status."""

    current: Release | None = None  # the release the Deployment was told to run
    stable: Release | None = None  # the last promoted release: where a rollback goes
    failed_version: str | None = None  # not rolled out again until the spec changes or a retry
    rollout_started_at: datetime | None = None
    serving_since: datetime | None = None  # when `current` became available: analysis starts here
    rollback_reason: str | None = None  # set while the stable release serves after a rollback
    degraded_reason: str | None = None  # set when only a person can move things on
    streaks: Streaks = field(default_factory=Streaks)
    last_check: CheckRecord | None = None
    history: tuple[HistoryEntry, ...] = ()


@dataclass(frozen=True)
class Event:
    reason: Reason
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Inputs:
    desired: Release
    analysis: AnalysisSpec
    facts: Facts
    observed: ObservedDeployment | None
    now: datetime
    check: CheckOutcome | None = None  # present when `check_due` said so and the shell ran it
    query: str = ""  # the rendered query of `check`
    action: Action | None = None


@dataclass(frozen=True)
class Decision:
    target: Release  # what the Deployment must run
    facts: Facts
    events: tuple[Event, ...] = ()
    requeue_after: float = 1.0  # seconds until the next look, unless something changes first


@dataclass(frozen=True)
class QueryPlan:
    """Which evidence a due check weighs: all since serving (before promotion) or a window."""

    cumulative: bool
    range_seconds: float


ROLLOUT_POLL_SECONDS = 2.0


def phase_of(facts: Facts) -> Phase:
    if facts.degraded_reason is not None:
        return Phase.DEGRADED
    if facts.serving_since is None:
        return Phase.PROGRESSING
    if facts.rollback_reason is not None:
        return Phase.ROLLED_BACK
    if facts.current is not None and facts.current == facts.stable:
        return Phase.PROMOTED
    return Phase.ANALYZING


def metrics_unavailable(facts: Facts, analysis: AnalysisSpec) -> bool:
    return facts.streaks.errors >= analysis.error_limit


def watching(facts: Facts, analysis: AnalysisSpec) -> bool:
    """Whether checks run at all: always before promotion, after it when asked to."""
    phase = phase_of(facts)
    if phase is Phase.ANALYZING:
        return True
    return phase in (Phase.PROMOTED, Phase.ROLLED_BACK) and analysis.after_promotion


def check_due(facts: Facts, analysis: AnalysisSpec, now: datetime) -> QueryPlan | None:
    """The query to run now, or None when no check is due yet."""
    if facts.serving_since is None or not watching(facts, analysis):
        return None
    last = facts.last_check.time if facts.last_check else facts.serving_since
    if now < last + timedelta(seconds=analysis.interval):
        return None
    if phase_of(facts) is Phase.ANALYZING:
        return QueryPlan(cumulative=True, range_seconds=(now - facts.serving_since).total_seconds())
    return QueryPlan(cumulative=False, range_seconds=analysis.window)


def decide(inputs: Inputs) -> Decision:
    """The whole reconcile rule; see the module docstring."""
    facts, events = _apply_action(inputs)
    facts = _settle_reverted_spec(inputs.desired, facts)
    target = _choose_target(inputs.desired, facts)
    if facts.current != target:
        facts, more = _start_rollout(inputs, facts, target)
        return Decision(target, facts, events + more, ROLLOUT_POLL_SECONDS)
    facts, more = _follow_rollout(inputs, facts)
    events += more
    if facts.current != target:  # the rollout failed and was reverted
        return Decision(facts.current, facts, events, ROLLOUT_POLL_SECONDS)
    if inputs.check is not None and check_due(facts, inputs.analysis, inputs.now) is not None:
        facts, more = _apply_check(inputs, facts, inputs.check)
        events += more
    return Decision(facts.current or target, facts, events, _requeue_after(facts, inputs))


def _apply_action(inputs: Inputs) -> tuple[Facts, tuple[Event, ...]]:
    facts, action = inputs.facts, inputs.action
    if action is None:
        return facts, ()
    phase = phase_of(facts)
    if action is Action.RETRY:
        if facts.failed_version is None and facts.degraded_reason is None:
            return facts, (Event(Reason.ACTION_IGNORED, "retry: nothing failed, nothing to retry"),)
        note = f"retry requested: rolling {inputs.desired.version} out again"
        cleared = replace(
            facts,
            failed_version=None,
            degraded_reason=None,
            rollback_reason=None,
            streaks=Streaks(),
            last_check=None,
        )
        if facts.current == inputs.desired:  # degraded on the desired release itself: analyse afresh
            cleared = replace(cleared, serving_since=None)
        return cleared, (Event(Reason.RETRY_REQUESTED, note),)
    if action is Action.ROLLBACK:
        under_test = phase in (Phase.ANALYZING, Phase.PROGRESSING) and facts.current != facts.stable
        if not under_test or facts.stable is None:
            message = f"rollback: no new release with a stable one to revert to (phase {phase})"
            return facts, (Event(Reason.ACTION_IGNORED, message),)
        return _roll_back(facts, inputs.now, Reason.MANUAL_ROLLBACK, "rollback requested by annotation")
    if phase is not Phase.ANALYZING:
        return facts, (Event(Reason.ACTION_IGNORED, f"promote: nothing under analysis in phase {phase}"),)
    return _promote(facts, inputs.now, "promotion requested by annotation")


def _choose_target(desired: Release, facts: Facts) -> Release:
    """The spec's release, unless it names the version that failed (GitOps keeps naming it)."""
    if facts.current is not None and desired.version == facts.failed_version:
        return facts.current
    return desired


def _settle_reverted_spec(desired: Release, facts: Facts) -> Facts:
    """Spec reverted (in git) to the release restored by a rollback: nothing is rolled back any more."""
    if facts.rollback_reason is None or facts.current != desired or desired.version == facts.failed_version:
        return facts
    return replace(facts, rollback_reason=None, failed_version=None)


def _start_rollout(inputs: Inputs, facts: Facts, target: Release) -> tuple[Facts, tuple[Event, ...]]:
    history = facts.history
    if (
        facts.current is not None
        and facts.current != facts.stable
        and facts.current.version != target.version
    ):
        history = _remember(history, facts.current, "superseded", inputs.now)
    started = replace(
        facts,
        current=target,
        rollout_started_at=inputs.now,
        serving_since=None,
        rollback_reason=None,
        degraded_reason=None,
        failed_version=None if target.version != facts.failed_version else facts.failed_version,
        streaks=Streaks(),
        last_check=None,
        history=history,
    )
    previous = facts.current.version if facts.current else "nothing"
    return started, (Event(Reason.ROLLOUT_STARTED, f"rolling out {target.version} (was {previous})"),)


def _follow_rollout(inputs: Inputs, facts: Facts) -> tuple[Facts, tuple[Event, ...]]:
    """Progress of the Deployment towards `facts.current`."""
    observed, current = inputs.observed, facts.current
    if facts.serving_since is not None or current is None or facts.degraded_reason is not None:
        return facts, ()
    if observed is None or observed.release != current:
        return facts, ()  # the shell is applying the release; look again soon
    if observed.available:
        serving = replace(facts, serving_since=inputs.now)
        return serving, (
            Event(Reason.ROLLOUT_COMPLETE, f"{current.version} is available; {_next_step(serving)}"),
        )
    if not observed.deadline_exceeded:
        return facts, ()
    message = f"{current.version} did not become available within its progress deadline"
    if facts.stable is not None and current != facts.stable:
        return _roll_back(facts, inputs.now, Reason.PROGRESS_DEADLINE_EXCEEDED, message)
    return replace(facts, degraded_reason=Reason.PROGRESS_DEADLINE_EXCEEDED), (
        Event(Reason.PROGRESS_DEADLINE_EXCEEDED, f"{message}; no other release to revert to", warning=True),
    )


def _next_step(facts: Facts) -> str:
    return "watching it" if phase_of(facts) is not Phase.ANALYZING else "analysis starts"


def _apply_check(inputs: Inputs, facts: Facts, check: CheckOutcome) -> tuple[Facts, tuple[Event, ...]]:
    analysis = inputs.analysis
    was_unavailable = metrics_unavailable(facts, analysis)
    streaks = next_streaks(facts.streaks, check.verdict)
    record = CheckRecord(
        time=inputs.now,
        verdict=check.verdict,
        value=_rounded(check.value),
        samples=_rounded(check.samples, 1),
        lower=_rounded(check.lower),
        upper=_rounded(check.upper),
        query=inputs.query,
        reason=check.reason,
    )
    facts = replace(facts, streaks=streaks, last_check=record)
    detail = f"{check.reason}; query: {inputs.query}"
    events: tuple[Event, ...] = ()
    if check.verdict is Verdict.ERROR:
        if streaks.errors == analysis.error_limit:
            message = f"{streaks.errors} checks in a row without data, keeping the current release: {detail}"
            events += (Event(Reason.METRICS_UNAVAILABLE, message, warning=True),)
        return facts, events
    if was_unavailable:
        events += (Event(Reason.METRICS_RECOVERED, f"metrics are back: {detail}"),)
    if check.verdict is Verdict.FAIL:
        message = f"check failed ({streaks.failures}/{analysis.failure_limit}): {detail}"
        events += (Event(Reason.ANALYSIS_FAILED, message, warning=True),)
        if streaks.failures >= analysis.failure_limit:
            facts, more = _breach(facts, inputs.now, detail)
            events += more
        return facts, events
    promotable = check.verdict is Verdict.PASS and phase_of(facts) is Phase.ANALYZING
    if promotable and streaks.passes >= analysis.success_limit:
        facts, more = _promote(facts, inputs.now, f"{streaks.passes} checks passed: {check.reason}")
        events += more
    return facts, events


def _rounded(number: float | None, digits: int = 4) -> float | None:
    """What status keeps of a measured number: enough to judge, short enough for `kubectl get`."""
    return None if number is None else round(number, digits)


def _breach(facts: Facts, now: datetime, detail: str) -> tuple[Facts, tuple[Event, ...]]:
    """`failureLimit` failing checks in a row: revert one step, or stop and ask for a person.

    `detail` (the last check's reason and query) ends every message: the value and what measured it.
    """
    current = facts.current
    assert current is not None
    failed = f"{current.version} failed analysis"
    if current != facts.stable and facts.stable is not None:
        return _roll_back(facts, now, Reason.ANALYSIS_FAILED, f"{failed}: {detail}")
    if current != facts.stable:
        message = f"{failed}; it is the first release, nothing to revert to"
        return _degrade(facts, Reason.NO_STABLE_RELEASE, message, detail)
    if facts.rollback_reason is not None:
        message = f"{failed}; it is the release restored by a rollback"
        return _degrade(facts, Reason.RESTORED_RELEASE_FAILED, message, detail)
    previous = _previous_stable(facts)
    if previous is None:
        message = f"{failed} after promotion; no earlier release to revert to"
        return _degrade(facts, Reason.NO_STABLE_RELEASE, message, detail)
    return _roll_back(
        replace(facts, stable=previous), now, Reason.ANALYSIS_FAILED, f"{failed} after promotion: {detail}"
    )


def _degrade(facts: Facts, reason: Reason, message: str, detail: str) -> tuple[Facts, tuple[Event, ...]]:
    event = Event(reason, f"{message}; keeping it: {detail}", warning=True)
    return replace(facts, degraded_reason=reason), (event,)


def _roll_back(facts: Facts, now: datetime, reason: Reason, message: str) -> tuple[Facts, tuple[Event, ...]]:
    failed, stable = facts.current, facts.stable
    assert failed is not None
    assert stable is not None
    reverted = replace(
        facts,
        current=stable,
        failed_version=failed.version,
        rollback_reason=reason,
        degraded_reason=None,
        rollout_started_at=now,
        serving_since=None,
        streaks=Streaks(),
        history=_remember(facts.history, failed, "failed", now, message),
    )
    event = Event(
        Reason.ROLLED_BACK, f"rolled back from {failed.version} to {stable.version}: {message}", True
    )
    return reverted, (event,)


def _promote(facts: Facts, now: datetime, message: str) -> tuple[Facts, tuple[Event, ...]]:
    current = facts.current
    assert current is not None
    promoted = replace(
        facts,
        stable=current,
        streaks=Streaks(),
        history=_remember(facts.history, current, "promoted", now, message),
    )
    return promoted, (Event(Reason.PROMOTED, f"{current.version} promoted to stable: {message}"),)


def _previous_stable(facts: Facts) -> Release | None:
    """The release promoted before the current stable one, from history.

    A release that failed after its promotion (a later entry, so seen first) is not a way back.
    """
    failed_since: set[Release] = set()
    for entry in facts.history:
        if entry.outcome == "failed":
            failed_since.add(entry.release)
        elif (
            entry.outcome == "promoted"
            and entry.release != facts.stable
            and entry.release not in failed_since
        ):
            return entry.release
    return None


def _remember(
    history: tuple[HistoryEntry, ...], release: Release, outcome: str, now: datetime, reason: str = ""
) -> tuple[HistoryEntry, ...]:
    """Newest first, bounded."""
    return (HistoryEntry(release, outcome, now, reason), *history)[:HISTORY_LIMIT]


def _requeue_after(facts: Facts, inputs: Inputs) -> float:
    if facts.serving_since is None and facts.degraded_reason is None:
        return ROLLOUT_POLL_SECONDS
    if not watching(facts, inputs.analysis) or facts.degraded_reason is not None:
        return 300.0
    last = facts.last_check.time if facts.last_check else facts.serving_since
    assert last is not None
    due = last + timedelta(seconds=inputs.analysis.interval)
    return max(0.1, (due - inputs.now).total_seconds())
