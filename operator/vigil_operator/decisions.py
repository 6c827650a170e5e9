"""The decision core: what to run and what to report, given what is observed. Pure.

`decide()` takes the desired release (from spec), the facts recorded in status, the
observed Deployments, the outcome of this round's check (if one was due) and a manual
action, and returns what each Deployment must run (`Tracks`: the main one behind the
Service, and a Shadow or Canary candidate's own), the new facts, and the events to emit.
Every rollout, promotion, rejection and rollback rule lives here and nowhere else; the
strategy is looked up once, when a rollout starts (`strategies.staged_rollout`), and from
then on its stages are facts. The Kopf handlers only read the inputs, call this, and apply
the answer.

The phase and the conditions are derived from the facts (`phase_of`, `conditions_of`),
so they can never disagree with them.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from vigil_operator.analysis import (
    CheckOutcome,
    Measurement,
    Streaks,
    Verdict,
    WatchState,
    judge,
    judge_shadow,
    next_streaks,
    watch,
)
from vigil_operator.constants import HISTORY_LIMIT
from vigil_operator.releases import AnalysisSpec, Release, StrategySpec
from vigil_operator.strategies import StagedRollout, StageKind, Tracks, staged_rollout, tracks_for


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
    APPLY_FAILED = "ApplyFailed"  # the API server refused the Deployment (shell-reported)
    DRIFT_CORRECTED = "DriftCorrected"  # an edit of the owned Deployment was reverted (shell-reported)
    SHADOW_STARTED = "ShadowStarted"
    SHADOW_PASSED = "ShadowPassed"
    SHADOW_REJECTED = "ShadowRejected"  # also a rollback reason: the candidate answered no user
    CANARY_STEP_STARTED = "CanaryStepStarted"
    CANARY_STEP_PASSED = "CanaryStepPassed"


@dataclass(frozen=True)
class ObservedDeployment:
    """What the Deployment reports about the release it runs."""

    release_id: str | None  # its pod template's `vigil.dev/release` annotation; None if missing
    available: bool  # up to date, every replica updated and available
    deadline_exceeded: bool  # its Progressing condition says ProgressDeadlineExceeded
    # Replicas of its current pod template that are available and selected by the ModelDeployment's
    # Service (a canary's; 0 for a shadow's): what a canary's stable release may give up.
    ready_in_service: int = 0


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
    watch: WatchState = field(default_factory=WatchState)  # the CUSUM of the promoted release
    # Where the watch's next range starts: the last check that counted labels (an error counts
    # none, so the labels of its interval are read by the next check, not lost).
    counted_until: datetime | None = None
    last_check: CheckRecord | None = None
    history: tuple[HistoryEntry, ...] = ()
    retries: int = 0  # retries requested so far; part of the release id, so a retry recreates pods
    apply_error: str | None = None  # the API server's message while it refuses the Deployment
    # The spec hashes (vigil.dev/spec-hash) of the Deployments it refused: not sent again until what
    # the operator would apply changes (a new spec, a decision, a retry), so a refusal is no loop.
    refused_specs: tuple[str, ...] = ()
    # Shadow and Canary: the stages of the candidate under analysis and the one it is at (None:
    # no candidate track, the main Deployment runs `current`).
    staged: StagedRollout | None = None


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
    observed: ObservedDeployment | None  # the main Deployment
    now: datetime
    measurement: Measurement | None = None  # present when `check_due` said so and the shell measured
    plan: QueryPlan | None = None  # what `measurement` measured; it counts only if still the plan
    query: str = ""  # the rendered query of `measurement`
    action: Action | None = None
    progress_deadline_seconds: float = 600.0  # from rolloutStartedAt, whatever the Deployment says
    strategy: StrategySpec = field(default_factory=StrategySpec)  # how the candidate reaches requests
    observed_candidate: ObservedDeployment | None = None  # the candidate's own Deployment, if any
    replicas: int | None = None  # spec.replicas; None leaves them to an HPA


@dataclass(frozen=True)
class Decision:
    tracks: Tracks  # what the main and the candidate Deployment must run
    facts: Facts
    events: tuple[Event, ...] = ()
    requeue_after: float = 1.0  # seconds until the next look, unless something changes first

    @property
    def target(self) -> Release:
        """What the main Deployment (behind the Service) must run."""
        return self.tracks.main

    @property
    def target_id(self) -> str:
        """The release id the main Deployment's pod template must carry."""
        return release_id(self.target, self.facts.retries)

    @property
    def candidate_id(self) -> str | None:
        """The release id of the candidate Deployment's pod template; None when it must not exist."""
        candidate = self.tracks.candidate
        return None if candidate is None else release_id(candidate, self.facts.retries)


def release_id(release: Release, retries: int = 0) -> str:
    """What the `vigil.dev/release` pod template annotation says: a digest of the release, and the retries.

    Rollouts are tracked by this id rather than by the template's fields, which admission
    webhooks may mutate (an image digest, an injected env var); a retry changes it, so the
    Deployment recreates the pods even when the release is the same.
    """
    digest = hashlib.sha256(json.dumps(release.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    return f"{digest}-{retries}"


@dataclass(frozen=True)
class QueryPlan:
    """Which evidence a due check weighs.

    Before promotion (`cumulative`), every labelled prediction since the version started
    serving. After promotion, the built-in metric counts the labelled predictions since the
    previous check (disjoint ranges, each prediction counted once, fed to the watch rule),
    while a custom query keeps reading its `window`. A shadow candidate's check (`paired_with`
    names the stable version) also reads the paired counts over the same range.
    """

    cumulative: bool
    range_seconds: float  # built-in metric: count labelled predictions over exactly this range
    window_seconds: float  # a custom query's {{window}}
    paired_with: str | None = None  # shadow: the stable version whose paired counts are read too


# A rollout's every step (a pod ready, the Deployment available) wakes a round through the
# Deployment's watch; this timer only backs the events up, and meets the progress deadline. At
# 2 s, a thousand objects rolling out at once cost 500 rounds a second, each for nothing.
ROLLOUT_POLL_SECONDS = 10.0


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


def next_check_at(facts: Facts, analysis: AnalysisSpec) -> datetime | None:
    """When the next check falls due (an interval after the last one), or None while none will."""
    if facts.serving_since is None or not watching(facts, analysis):
        return None
    last = facts.last_check.time if facts.last_check else facts.serving_since
    return last + timedelta(seconds=analysis.interval)


def check_due(facts: Facts, analysis: AnalysisSpec, now: datetime) -> QueryPlan | None:
    """The query to run now, or None when no check is due yet."""
    due = next_check_at(facts, analysis)
    if due is None or facts.serving_since is None or now < due:
        return None
    last = facts.last_check.time if facts.last_check else facts.serving_since
    if phase_of(facts) is Phase.ANALYZING:
        since_serving = (now - facts.serving_since).total_seconds()
        shadow = facts.staged is not None and facts.staged.stage.kind is StageKind.SHADOW
        paired_with = facts.stable.version if shadow and facts.stable is not None else None
        return QueryPlan(
            cumulative=True,
            range_seconds=since_serving,
            window_seconds=since_serving,
            paired_with=paired_with,
        )
    since_counted = (now - (facts.counted_until or last)).total_seconds()
    return QueryPlan(cumulative=False, range_seconds=since_counted, window_seconds=analysis.window)


def decide(inputs: Inputs) -> Decision:
    """The whole reconcile rule; see the module docstring."""
    facts, events = _apply_action(inputs)
    facts = _settle_reverted_spec(inputs.desired, facts)
    target = _choose_target(inputs.desired, facts)
    if facts.current != target:
        facts, more = _start_rollout(inputs, facts, target)
        return _decision(inputs, facts, events + more, ROLLOUT_POLL_SECONDS)
    facts, more = _follow_rollout(inputs, facts)
    events += more
    if facts.current != target:  # the rollout failed and was reverted
        return _decision(inputs, facts, events, ROLLOUT_POLL_SECONDS)
    plan = check_due(facts, inputs.analysis, inputs.now)
    # A measurement made for another plan (an action this round promoted or reverted) is
    # dropped: the next round measures what the new phase needs.
    if inputs.measurement is not None and plan is not None and plan == inputs.plan:
        facts, more = _apply_check(inputs, facts, inputs.measurement, plan)
        events += more
    return _decision(inputs, facts, events, _requeue_after(facts, inputs))


def _decision(inputs: Inputs, facts: Facts, events: tuple[Event, ...], requeue_after: float) -> Decision:
    assert facts.current is not None  # decide() always has a release to run: the spec's, or a restored one
    candidate = inputs.observed_candidate
    ours = candidate is not None and candidate.release_id == release_id(facts.current, facts.retries)
    tracks = tracks_for(
        facts.current,
        facts.stable,
        facts.staged,
        inputs.replicas,
        candidate_ready=candidate.ready_in_service if candidate is not None and ours else 0,
    )
    return Decision(tracks, facts, events, requeue_after)


def _apply_action(inputs: Inputs) -> tuple[Facts, tuple[Event, ...]]:
    facts, action = inputs.facts, inputs.action
    if action is None:
        return facts, ()
    phase = phase_of(facts)
    if action is Action.RETRY:
        if facts.failed_version is None and facts.degraded_reason is None and facts.refused_specs:
            # The refusal came from the cluster (a policy since relaxed, RBAC since granted): send again.
            note = "retry requested: applying the refused Deployment again"
            return replace(facts, refused_specs=()), (Event(Reason.RETRY_REQUESTED, note),)
        if facts.failed_version is None and facts.degraded_reason is None:
            return facts, (Event(Reason.ACTION_IGNORED, "retry: nothing failed, nothing to retry"),)
        note = f"retry requested: rolling {inputs.desired.version} out again"
        cleared = replace(
            facts,
            failed_version=None,
            degraded_reason=None,
            rollback_reason=None,
            streaks=Streaks(),
            watch=WatchState(),
            counted_until=None,
            last_check=None,
            retries=facts.retries + 1,
        )
        if facts.current == inputs.desired:
            # Degraded on the desired release itself: restart its rollout. The new release id
            # recreates the pods, and the progress deadline runs afresh.
            cleared = replace(cleared, serving_since=None, rollout_started_at=inputs.now)
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
        watch=WatchState(),
        counted_until=None,
        last_check=None,
        history=history,
        staged=staged_rollout(inputs.strategy, facts.stable, target),
    )
    previous = facts.current.version if facts.current else "nothing"
    events = (Event(Reason.ROLLOUT_STARTED, f"rolling out {target.version} (was {previous})"),)
    return started, events + _stage_started(started)


def _stage_started(facts: Facts) -> tuple[Event, ...]:
    """The event of the stage the candidate has just entered (none for Replace or a handover)."""
    staged, current, stable = facts.staged, facts.current, facts.stable
    if staged is None or staged.handing_over or current is None or stable is None:
        return ()
    at = staged.step_of()
    if staged.stage.kind is StageKind.SHADOW:
        message = (
            f"{current.version} runs as a shadow ({at}): {stable.version} answers every request and "
            f"mirrors a copy to it; both are scored on the same labelled requests"
        )
        return (Event(Reason.SHADOW_STARTED, message),)
    message = (
        f"{current.version} runs as a canary ({at}): about {staged.stage.percent}% of the replicas behind "
        f"the Service, {stable.version} the rest"
    )
    return (Event(Reason.CANARY_STEP_STARTED, message),)


def _follow_rollout(inputs: Inputs, facts: Facts) -> tuple[Facts, tuple[Event, ...]]:
    """Progress of the Deployment towards `facts.current`, recognised by its release id.

    The progress deadline runs from `rollout_started_at` whatever the Deployment shows, so a
    rollout the API server refused, or one never observed, still meets it. A release degraded
    by its deadline starts serving if its pods become available later.
    """
    observed, current = inputs.observed, facts.current
    if facts.serving_since is not None or current is None:
        return facts, ()
    if _candidate_track_runs_current(facts):
        observed = inputs.observed_candidate
    expected = release_id(current, facts.retries)
    ours = observed if observed is not None and observed.release_id == expected else None
    available = ours is not None and ours.available
    if facts.degraded_reason is not None:
        if facts.degraded_reason != Reason.PROGRESS_DEADLINE_EXCEEDED or not available:
            return facts, ()
        serving = _serving(replace(facts, degraded_reason=None), inputs.now)
        message = f"{current.version} became available after its progress deadline; {_next_step(serving)}"
        return serving, (Event(Reason.ROLLOUT_COMPLETE, message),)
    if available:
        serving = _serving(facts, inputs.now)
        return serving, (
            Event(Reason.ROLLOUT_COMPLETE, f"{current.version} is available; {_next_step(serving)}"),
        )
    started = facts.rollout_started_at
    late = started is not None and inputs.now >= started + timedelta(seconds=inputs.progress_deadline_seconds)
    if not late and not (ours is not None and ours.deadline_exceeded):
        return facts, ()  # still rolling out (or the shell is still applying it): look again soon
    message = f"{current.version} did not become available within its progress deadline"
    if facts.apply_error is not None:
        message += f" (the API server refused its Deployment: {facts.apply_error})"
    if facts.stable is not None and current != facts.stable:
        return _roll_back(facts, inputs.now, Reason.PROGRESS_DEADLINE_EXCEEDED, message)
    return replace(facts, degraded_reason=Reason.PROGRESS_DEADLINE_EXCEEDED), (
        Event(Reason.PROGRESS_DEADLINE_EXCEEDED, f"{message}; no other release to revert to", warning=True),
    )


def _serving(facts: Facts, now: datetime) -> Facts:
    """`current` became available; a promoted candidate, now in the main Deployment, loses its own track."""
    handed_over = facts.staged is not None and facts.staged.handing_over
    return replace(facts, serving_since=now, staged=None if handed_over else facts.staged)


def _candidate_track_runs_current(facts: Facts) -> bool:
    """Whether the release under analysis runs in the candidate's own Deployment (not the main one)."""
    return facts.staged is not None and not facts.staged.handing_over and facts.current != facts.stable


def record_apply(
    facts: Facts, error: str | None, refused_specs: tuple[str, ...] = ()
) -> tuple[Facts, tuple[Event, ...]]:
    """Whether the API server accepted the Deployments (`error` is its message if not, and
    `refused_specs` the spec hashes of those it refused).

    A new refusal is a Warning event; the Degraded condition shows it until an apply succeeds.
    """
    refused_specs = refused_specs if error is not None else ()
    recorded = replace(facts, apply_error=error, refused_specs=refused_specs)
    if error == facts.apply_error or error is None:
        return recorded, ()
    message = f"the API server refused the Deployment: {error}"
    return recorded, (Event(Reason.APPLY_FAILED, message, warning=True),)


def _next_step(facts: Facts) -> str:
    return "watching it" if phase_of(facts) is not Phase.ANALYZING else "analysis starts"


def judge_check(
    measurement: Measurement,
    analysis: AnalysisSpec,
    facts: Facts,
    plan: QueryPlan,
    strategy: StrategySpec | None = None,
) -> tuple[CheckOutcome, WatchState]:
    """The rule for this check: the Wilson gate before promotion, the CUSUM watch after it.

    A shadow candidate must pass the gate and the paired comparison with the stable release
    (`strategy.shadow_margin`); with a custom query, its value stands in for the gate. A custom
    query has no counts to accumulate, so it is judged on its own value in both phases.
    """
    if plan.paired_with is not None:
        margin = (strategy or StrategySpec()).shadow_margin
        comparison = analysis.comparison_criteria(margin)
        return judge_shadow(measurement, analysis.criteria, comparison), facts.watch
    if plan.cumulative or not analysis.builtin:
        return judge(measurement, analysis.criteria), facts.watch
    return watch(measurement, analysis.watch_params, facts.watch, plan.range_seconds)


def _apply_check(
    inputs: Inputs, facts: Facts, measurement: Measurement, plan: QueryPlan
) -> tuple[Facts, tuple[Event, ...]]:
    analysis = inputs.analysis
    check, watch_state = judge_check(measurement, analysis, facts, plan, inputs.strategy)
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
    counted_until = facts.counted_until if check.verdict is Verdict.ERROR else inputs.now
    facts = replace(facts, streaks=streaks, watch=watch_state, counted_until=counted_until, last_check=record)
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
        count = "evidence limit reached" if check.breach else f"{streaks.failures}/{analysis.failure_limit}"
        message = f"check failed ({count}): {detail}"
        events += (Event(Reason.ANALYSIS_FAILED, message, warning=True),)
        if check.breach or streaks.failures >= analysis.failure_limit:
            facts, more = _breach(facts, inputs.now, detail)
            events += more
        return facts, events
    promotable = check.verdict is Verdict.PASS and phase_of(facts) is Phase.ANALYZING
    if promotable and streaks.passes >= analysis.success_limit:
        facts, more = _pass_stage(facts, inputs.now, f"{streaks.passes} checks passed: {check.reason}")
        events += more
    return facts, events


def _pass_stage(facts: Facts, now: datetime, message: str) -> tuple[Facts, tuple[Event, ...]]:
    """`successLimit` passing checks: on to the strategy's next stage, or promoted after the last."""
    staged, current = facts.staged, facts.current
    assert current is not None
    if staged is None or staged.handing_over:
        return _promote(facts, now, message)
    shadow = staged.stage.kind is StageKind.SHADOW
    reason = Reason.SHADOW_PASSED if shadow else Reason.CANARY_STEP_PASSED
    passed = Event(reason, f"{current.version} passed {staged.position()}: {message}")
    if staged.last:
        promoted, more = _promote(facts, now, message)
        return promoted, (passed, *more)
    advanced = replace(facts, staged=staged.next(), streaks=Streaks())
    return advanced, (passed, *_stage_started(advanced))


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
    shadow = facts.staged is not None and facts.staged.stage.kind is StageKind.SHADOW
    if shadow:  # it answered no user request, so nothing is rolled back: it is removed
        message = f"shadow rejected ({reason}): {message}"
        reason = Reason.SHADOW_REJECTED
    reverted = replace(
        facts,
        current=stable,
        failed_version=failed.version,
        rollback_reason=reason,
        staged=None,
        degraded_reason=None,
        rollout_started_at=now,
        serving_since=None,
        streaks=Streaks(),
        watch=WatchState(),
        counted_until=None,
        history=_remember(facts.history, failed, "failed", now, message),
    )
    if shadow:
        kept = f"{failed.version} removed; it answered no user request, {stable.version} answered them all"
        return reverted, (Event(Reason.SHADOW_REJECTED, f"{kept}: {message}", warning=True),)
    event = Event(
        Reason.ROLLED_BACK, f"rolled back from {failed.version} to {stable.version}: {message}", True
    )
    return reverted, (event,)


def _promote(facts: Facts, now: datetime, message: str) -> tuple[Facts, tuple[Event, ...]]:
    """The release under analysis becomes stable; a staged one then takes the main Deployment.

    While the main Deployment rolls to it, the phase is Progressing and the candidate's own track
    keeps serving; once the main Deployment is available, that track is removed.
    """
    current = facts.current
    assert current is not None
    promoted = replace(
        facts,
        stable=current,
        streaks=Streaks(),
        watch=WatchState(),
        counted_until=now,  # the watch starts here: what came before was judged by the gate
        history=_remember(facts.history, current, "promoted", now, message),
    )
    if facts.staged is None or facts.staged.handing_over:
        return promoted, (Event(Reason.PROMOTED, f"{current.version} promoted to stable: {message}"),)
    handing_over = replace(
        promoted,
        staged=facts.staged.promoted(),
        serving_since=None,
        rollout_started_at=now,
    )
    note = f"{current.version} promoted to stable; the main Deployment now rolls to it: {message}"
    return handing_over, (Event(Reason.PROMOTED, note),)


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
    due = next_check_at(facts, inputs.analysis)
    if due is None or facts.degraded_reason is not None:
        return 300.0
    return max(0.1, (due - inputs.now).total_seconds())
