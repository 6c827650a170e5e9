"""One reconcile round of one ModelDeployment: read, decide (pure core), apply.

The order of writes makes a crash at any point safe: the status (the decision's memory)
is written first, with the resourceVersion the decision was made on; the Deployment
follows it. A restarted operator re-reads both and converges on the same outcome. A check
that changed nothing a reader needs is kept in memory and written with the next change or
the heartbeat (`pacing.status_write_due`); a restart then repeats that check, nothing more.

Rounds read from the watches (the ModelDeployment's event body, Kopf indexes of the owned
Deployments and Services), not with GETs. The Deployment is applied whenever the watched one
differs in a field the operator owns, so an edit of those fields is reverted as soon as its
event arrives. When the API server refuses it, a second status write records the refusal,
and the same Deployment is sent again at most once a minute (`_Refusals`). With batching on,
built-in checks fall on their interval's ticks and share one query per Prometheus (`Batcher`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from vigil_operator import constants as c
from vigil_operator import feedback, kube, metrics, pacing, prometheus
from vigil_operator.analysis import Measurement, Verdict
from vigil_operator.batcher import Batcher
from vigil_operator.batching import CheckRequest, batchable, tick_floor, wake_delay
from vigil_operator.builders import (
    Owner,
    candidate_deployment_for,
    candidate_name,
    candidate_service_for,
    deployment_for,
    drift,
    feedback_secret_name,
    needs_apply,
    observe,
    service_for,
    service_url,
)
from vigil_operator.config import Config
from vigil_operator.decisions import (
    Action,
    CheckRecord,
    Decision,
    Event,
    Facts,
    Inputs,
    QueryPlan,
    Reason,
    check_due,
    decide,
    next_check_at,
    record_apply,
)
from vigil_operator.queries import Target, builtin_accuracy_query, custom_query, paired_comparison_query
from vigil_operator.releases import AnalysisSpec, InvalidSpec, ModelDeploymentSpec, parse_spec
from vigil_operator.status import facts_from_status, status_of, to_timestamp
from vigil_operator.text import bounded

INVALID_SPEC_RETRY_SECONDS = 60.0
CONFLICT_RETRY_SECONDS = 0.2
T = TypeVar("T")
DRIFT_CHANGES_SHOWN = 5  # an event message stays readable; the rest is counted


async def prometheus_access(
    analysis: AnalysisSpec, namespace: str, policy: prometheus.AccessPolicy | None = None
) -> prometheus.PrometheusAccess:
    """URL and, when a Secret is named, its credentials (only if the Secret names that URL).

    The operator's policy is checked first: a URL outside the allow-list gets no request and its
    Secret is not even read; credentials never go over plain http unless the policy allows it.
    """
    policy = policy or prometheus.AccessPolicy()
    prometheus.check_url(analysis.prometheus_url, policy)
    if not analysis.credentials_secret:
        access = prometheus.PrometheusAccess(
            url=analysis.prometheus_url,
            timeout=analysis.query_timeout,
            max_response_bytes=policy.max_response_bytes,
        )
    else:
        data = await kube.read_secret(namespace, analysis.credentials_secret)
        access = prometheus.access_with_secret(
            analysis.prometheus_url,
            analysis.query_timeout,
            analysis.credentials_secret,
            prometheus.decode_secret(analysis.credentials_secret, data),
            policy.max_response_bytes,
        )
    prometheus.check_credentials_transport(access, policy)
    return access


async def run_check(
    spec: ModelDeploymentSpec,
    target: Target,
    plan: QueryPlan,
    at: datetime | None = None,
    policy: prometheus.AccessPolicy | None = None,
    batcher: Batcher | None = None,
) -> tuple[Measurement, str]:
    """Render the query and measure through Prometheus `at` the check's time (the core judges).

    Never raises for missing data. Pass the `now` the check is recorded with: the next check's
    range starts there, and only then do back-to-back built-in counts meet exactly. A shadow's
    plan (`paired_with`) also reads the paired counts; the recorded query then names both.
    With a `batcher` (and `at`), the built-in query is answered by its tick's batched query; the
    recorded query stays this object's own, which returns the same counts.
    """
    analysis = spec.analysis
    query = (
        custom_query(analysis.query, target, plan) if analysis.query else builtin_accuracy_query(target, plan)
    )
    try:
        access = await prometheus_access(analysis, target.namespace, policy)
    except kube.ApiException as error:
        measurement = Measurement(
            error=bounded(f"cannot read Secret {analysis.credentials_secret!r}: {error.reason}")
        )
    except prometheus.PrometheusError as error:
        measurement = Measurement(error=bounded(str(error)))
    else:
        answer = None
        if batcher is not None and at is not None and analysis.builtin and batchable(target):
            request, batch_access = CheckRequest(target, plan.range_seconds), access

            async def answer() -> dict[str, Any]:
                return await batcher.answer(batch_access, request, at, analysis.interval)

        measurement = await prometheus.measure(
            access, query, builtin=analysis.builtin, at=at, target=target, answer=answer
        )
        if plan.paired_with is not None:
            paired_query = paired_comparison_query(target, plan.paired_with, plan)
            measurement = await prometheus.with_paired_counts(access, measurement, paired_query, at)
            query = f"{query} ; paired: {paired_query}"
    return measurement, query


async def ensure_feedback_secret(
    body: dict[str, Any], owner: Owner, logger: logging.Logger, memory: Memory, config: Config, now: datetime
) -> None:
    """Create the feedback token Secret, or write a new token when a rotation is asked for.

    Before the Deployment, so its pods find the Secret they mount. A refusal (RBAC, a policy) is
    logged and the round goes on: the pods then wait for the Secret, visibly, instead of every
    other part of the round stalling too. Read by name (never watched: Secrets stay unlisted),
    so only when a rotation is new or `secret_recheck_seconds` passed, not every round.
    """
    name = feedback_secret_name(owner.name)
    rotation = feedback.rotation_requested(body)
    if not pacing.secret_check_due(memory.secret_checked, rotation, now, config.secret_recheck_seconds):
        return
    try:
        existing = await kube.read_secret_metadata(owner.namespace, name)
        if not feedback.needs_new_token(existing, rotation):
            memory.secret_checked = (rotation, now)
            return
        await kube.apply_secret(feedback.feedback_secret_for(owner, feedback.new_token(), rotation))
    except kube.ApiException as error:
        refused = kube.refusal(error)
        if refused is None:
            raise
        logger.error("cannot write the feedback token Secret %s/%s: %s", owner.namespace, name, refused)
        return
    memory.secret_checked = (rotation, now)
    what = "created" if existing is None else "rotated" if rotation is not None else "rewritten"
    logger.info("feedback token Secret %s/%s %s", owner.namespace, name, what)


def requested_action(body: dict[str, Any]) -> tuple[Action | None, str | None]:
    """The manual action annotation, parsed; an unknown value is reported, not acted on."""
    raw = (body.get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_ACTION)
    if raw is None:
        return None, None
    try:
        return Action(raw.strip().lower()), raw
    except ValueError:
        return None, raw


OWN_VERSIONS_KEPT = 8  # own writes whose watch events may still be on their way


@dataclass
class Memory:
    """What a supervisor keeps of its object between rounds, so a round needs no GET.

    Lost on a restart, which costs one GET and an early check, nothing more: the status stays
    the truth. `facts` may be ahead of the stored status by checks that changed nothing a reader
    needs (`pacing.status_write_due`); they are used only while the status is still `status_seen`.
    """

    body: dict[str, Any] | None = None  # the ModelDeployment as last seen: a watch event or own write
    gone: bool = False  # a watch event said it was deleted
    facts: Facts | None = None  # as decided by the last round
    status_seen: dict[str, Any] | None = None  # the stored status `facts` go on from
    secret_checked: tuple[str | None, datetime] | None = None  # (rotation handled, when read)
    own_versions: deque[str] = field(default_factory=lambda: deque(maxlen=OWN_VERSIONS_KEPT))
    # Set when an event supersedes the body a round started from (`pacing.supersedes`): the
    # round drops the check it is waiting for and starts again on the new body.
    superseded: asyncio.Event = field(default_factory=asyncio.Event)

    def saw(self, body: dict[str, Any] | None, *, deleted: bool = False) -> None:
        if deleted or pacing.supersedes(self.body, body):
            self.superseded.set()
        self.body = kube.cached_view(body) if body is not None else None
        self.gone = deleted

    def wrote(self, body: dict[str, Any]) -> None:
        """The object as the operator's own write returned it; its watch event wakes nothing."""
        self.saw(body)
        self.own_versions.append(str(body["metadata"]["resourceVersion"]))

    def forget(self) -> None:
        """After a failed round: the next round reads the object afresh, facts included."""
        self.body, self.facts, self.status_seen = None, None, None

    def stale(self) -> None:
        """After a conflict (409): the next round reads the object afresh. `facts` stay: they are
        used only if the fresh status is still `status_seen` (`facts_to_go_on`), and losing them
        would repeat a check the status does not show yet (with batching: a query of its own)."""
        self.body = None

    def facts_to_go_on(self, status: dict[str, Any]) -> Facts:
        """The last round's facts while the stored status is the one they went on from; otherwise
        (a restart, someone else's status write) the stored status's."""
        if self.facts is not None and self.status_seen == status:
            return self.facts
        return facts_from_status(status)


async def reconcile_once(
    namespace: str,
    name: str,
    config: Config,
    logger: logging.Logger,
    memory: Memory | None = None,
    cache: kube.WatchCache | None = None,
    batcher: Batcher | None = None,
) -> float | None:
    """One round; returns the seconds until the next one, or None once the object is gone.

    Reads come from `memory` (the watch event's body) and `cache` (the owned objects' watches);
    only a cold start, a conflict or a due Secret check sends a GET.

    With a `batcher`, built-in checks fall on their interval's ticks (`batching.tick_floor`): the
    round that finds one due measures it in the tick's batch and is decided at the tick's time.
    """
    memory = memory if memory is not None else Memory()
    cache = cache or kube.WatchCache()
    if memory.gone:
        return None
    if memory.body is None:
        memory.saw(await kube.read_model_deployment(namespace, name))
    memory.superseded.clear()
    body = memory.body
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    now = datetime.now(UTC)
    meta = body["metadata"]
    owner = Owner(name=name, namespace=namespace, uid=meta["uid"])
    try:
        spec = parse_spec(
            body.get("spec") or {},
            default_image=config.default_image,
            default_prometheus_url=config.default_prometheus_url,
        )
    except InvalidSpec as error:
        reported = await _report_invalid_spec(body, str(error), now)
        if reported is not None:
            memory.wrote(reported)
        return INVALID_SPEC_RETRY_SECONDS

    facts = memory.facts_to_go_on(body.get("status") or {})
    action, raw_action = requested_action(body)
    deployment = await cache.deployment(namespace, name)
    observed = observe(deployment, facts.rollout_started_at) if deployment else None
    # Look whatever the strategy: a candidate left from an earlier rollout must be found to be removed.
    candidate = await cache.deployment(namespace, candidate_name(owner))
    observed_candidate = observe(candidate, facts.rollout_started_at) if candidate else None

    measurement, query = None, ""
    plan = None if pacing.spec_unapplied(body) else check_due(facts, spec.analysis, now)
    on_ticks = batcher is not None and spec.analysis.builtin
    if plan is not None and facts.current is not None:
        target = Target(name=name, namespace=namespace, version=facts.current.version)
        if on_ticks:
            # On the interval's ticks every object of a Prometheus reads the same range at the same
            # time: one query for all. A check due between two ticks waits for the next.
            tick = tick_floor(now, spec.analysis.interval)
            plan = check_due(facts, spec.analysis, tick)
            if plan is not None:
                now = tick  # the check is the tick's, and so is this round's decision
        if plan is not None:
            # Read `evaluationDelay` in the past so late scrapes are in; every check shifts alike,
            # so back-to-back ranges still meet.
            at = now - timedelta(seconds=spec.analysis.evaluation_delay)
            checked = await _unless_superseded(
                run_check(spec, target, plan, at=at, policy=config.prometheus_policy, batcher=batcher),
                memory,
            )
            if checked is None:
                logger.debug("%s/%s changed while its check waited; deciding again", namespace, name)
                return 0.0
            measurement, query = checked

    decision = decide(
        Inputs(
            desired=spec.release,
            analysis=spec.analysis,
            facts=facts,
            observed=observed,
            now=now,
            measurement=measurement,
            plan=plan,
            query=query,
            action=action,
            progress_deadline_seconds=spec.progress_deadline_seconds,
            strategy=spec.strategy,
            observed_candidate=observed_candidate,
            replicas=spec.replicas,
        )
    )
    if not await _store(memory, spec, decision.facts, now, config):
        return CONFLICT_RETRY_SECONDS  # the object changed under us: decide again on fresh data
    await _post_events(body, decision.events, now, logger)
    # A measurement decide() dropped (an action changed the plan) left the old record in place.
    check = decision.facts.last_check if decision.facts.last_check != facts.last_check else None
    _count(namespace, name, decision, check, facts.current.version if facts.current else "")
    if raw_action is not None:  # handled: the status written above recorded what it did
        if action is None:
            message = f"unknown action {raw_action!r}; use retry, rollback or promote"
            await kube.post_event(body, Reason.ACTION_IGNORED, message, warning=True, now=to_timestamp(now))
        # Cleared before anything else can fail, so an action is never applied twice; the
        # second status write below goes on from the object as cleared.
        memory.wrote(await kube.clear_action(namespace, name))

    await ensure_feedback_secret(body, owner, logger, memory, config, now)
    refused, refused_specs = await _apply_tracks(
        body, owner, spec, decision, config, now, logger, cache, candidate is not None
    )
    applied_facts, events = record_apply(decision.facts, refused, refused_specs)
    metrics.record_state(
        namespace, name, metrics.object_state(applied_facts, spec.analysis, spec.release, spec.replicas)
    )
    if applied_facts != decision.facts:
        if not await _store(memory, spec, applied_facts, now, config):
            return CONFLICT_RETRY_SECONDS
        await _post_events(body, events, now, logger)
    if await cache.service(namespace, name) is None:
        await kube.apply_service(service_for(owner))
    if on_ticks:  # wake for the next check at its tick, whenever this round ended
        wake_at = now + timedelta(seconds=decision.requeue_after)
        next_check = next_check_at(applied_facts, spec.analysis)
        return wake_delay(datetime.now(UTC), wake_at, next_check, spec.analysis.interval)
    return decision.requeue_after


async def _unless_superseded(check: Awaitable[T], memory: Memory) -> T | None:
    """The check's answer, or None (the check cancelled) once an event supersedes the round's
    body: a spec change or an action then waits for nothing (a batch window, a slow Prometheus).
    A check is read-only, so dropping it leaves nothing half done; the next round makes it again."""
    checking = asyncio.ensure_future(check)
    superseded = asyncio.ensure_future(memory.superseded.wait())
    try:
        await asyncio.wait((checking, superseded), return_when=asyncio.FIRST_COMPLETED)
    finally:
        superseded.cancel()
        if not checking.done():
            checking.cancel()
            await asyncio.gather(checking, return_exceptions=True)
    return checking.result() if not checking.cancelled() else None


async def _store(
    memory: Memory, spec: ModelDeploymentSpec, facts: Facts, now: datetime, config: Config
) -> bool:
    """Write the status of `facts` when `pacing.status_write_due` says so, and remember `facts`
    either way; False when the object changed since it was read (409: read it afresh)."""
    assert memory.body is not None
    written = await _write_status(memory.body, spec, facts, now, config.status_heartbeat_seconds)
    if written is None:
        memory.stale()
        return False
    if written is not memory.body:
        memory.wrote(written)
    memory.facts, memory.status_seen = facts, (memory.body or {}).get("status") or {}
    return True


async def _apply_tracks(
    body: dict[str, Any],
    owner: Owner,
    spec: ModelDeploymentSpec,
    decision: Decision,
    config: Config,
    now: datetime,
    logger: logging.Logger,
    cache: kube.WatchCache,
    candidate_exists: bool,
) -> tuple[str | None, tuple[str, ...]]:
    """Make the Deployments (and a shadow's Service) run what the decision's tracks say.

    The candidate's Service comes first (the stable servers mirror to its ClusterIP, known once it
    exists), then the candidate's Deployment, then the main one; what is no longer wanted goes
    last, after the main Deployment took its replicas back. Returns the API server's message
    when it refuses a Deployment, and the spec hashes of the refused ones.
    """
    tracks, namespace = decision.tracks, owner.namespace
    options: dict[str, Any] = {
        "retries": decision.facts.retries,
        "scrape_annotations": config.scrape_annotations,
        "default_resources": config.model_server_resources,
    }
    service = candidate_service_for(owner)
    mirror_url = service_url(await kube.apply_service(service)) if tracks.mirrored else None
    refusals = _Refusals(decision.facts, namespace, owner.name)
    if tracks.candidate is not None and not tracks.handing_over:
        wanted_candidate = candidate_deployment_for(
            owner,
            spec,
            tracks.candidate,
            stable_version=tracks.main.version,
            replicas=tracks.candidate_replicas,
            in_service=tracks.candidate_in_service,
            **options,
        )
        live_candidate = (
            await cache.deployment(namespace, candidate_name(owner)) if candidate_exists else None
        )
        await refusals.apply(body, live_candidate, wanted_candidate, now, logger)
    wanted = deployment_for(
        owner,
        spec,
        decision.target,
        replicas=tracks.main_replicas,
        mirror_url=mirror_url,
        **options,
    )
    # Look again just before the apply: an edit made while this round queried Prometheus would
    # otherwise be reverted without its DriftCorrected event (the first look predates it).
    live = await cache.deployment(namespace, owner.name)
    await refusals.apply(body, live, wanted, now, logger)
    if (
        tracks.candidate is None
        and candidate_exists
        and await kube.delete_deployment(namespace, candidate_name(owner))
    ):
        logger.info("candidate Deployment %s/%s deleted", namespace, candidate_name(owner))
    name = service["metadata"]["name"]
    if not tracks.mirrored and await cache.service(namespace, name) is not None:
        await kube.delete_service(namespace, name)
        logger.info("candidate Service %s/%s deleted", namespace, name)
    return refusals.message, tuple(refusals.specs)


# A Deployment the API server refused is sent again only this long after this process last saw it
# refused: the refusal may come from an admission webhook or a policy that goes away, and a rollback
# must then still happen, while a spec the API server always refuses costs one request a minute,
# not one a round. After a restart the operator sends it once at once.
RESEND_REFUSED_SECONDS = 60.0
# (namespace, name, spec hash) -> when this process last saw that Deployment refused (monotonic).
_refused_at: dict[tuple[str, str, str], float] = {}


class _Refusals:
    """The Deployments the API server refused in one round, and its message.

    A Deployment refused before (its spec hash is in `facts.refused_specs`) and within the last
    RESEND_REFUSED_SECONDS is not sent again: the API server would most likely refuse it again,
    and the condition already says why. What the operator would apply changes with the spec, a
    decision or a retry, and then it is sent at once.
    """

    def __init__(self, facts: Facts, namespace: str, name: str) -> None:
        self.owner = (namespace, name)
        now, never = time.monotonic(), -RESEND_REFUSED_SECONDS
        recent = {
            spec
            for spec in facts.refused_specs
            if now - _refused_at.get((namespace, name, spec), never) < RESEND_REFUSED_SECONDS
        }
        self.known = recent if facts.apply_error is not None else set()
        self.known_message = facts.apply_error
        self.message: str | None = None
        self.specs: list[str] = []

    async def apply(
        self,
        body: dict[str, Any],
        live: dict[str, Any] | None,
        wanted: dict[str, Any],
        now: datetime,
        logger: logging.Logger,
    ) -> None:
        spec = str(wanted["metadata"]["labels"][c.LABEL_SPEC_HASH])
        if spec in self.known:
            refused: str | None = self.known_message
        else:
            refused = await _apply_deployment(body, live, wanted, now, logger)
            if refused is not None:
                _remember_refusal((*self.owner, spec))
        if refused is not None:
            self.message = refused  # the main Deployment, applied last, speaks for both
            self.specs.append(spec)


def _remember_refusal(key: tuple[str, str, str]) -> None:
    now = time.monotonic()
    for old in [k for k, at in _refused_at.items() if now - at >= RESEND_REFUSED_SECONDS]:
        del _refused_at[old]
    _refused_at[key] = now


async def _write_status(
    body: dict[str, Any], spec: ModelDeploymentSpec, facts: Facts, now: datetime, heartbeat_seconds: float
) -> dict[str, Any] | None:
    """Store the status of `facts` over `body`'s when due (`pacing.status_write_due`); the object
    as written, `body` itself when no write was due, or None when `body` is stale (409)."""
    meta = body["metadata"]
    previous = body.get("status") or {}
    generation = meta.get("generation", 0)
    status = status_of(
        facts, spec.analysis, spec.release, generation, now, previous.get("conditions"), spec.replicas
    )
    if not pacing.status_write_due(previous, _as_stored(status), now, heartbeat_seconds):
        return body
    try:
        return await kube.write_status(meta["namespace"], meta["name"], status, meta["resourceVersion"])
    except kube.ApiException as error:
        if kube.is_conflict(error):
            return None
        raise


async def _post_events(
    body: dict[str, Any], events: tuple[Event, ...], now: datetime, logger: logging.Logger
) -> None:
    for event in events:
        logger.log(
            logging.WARNING if event.warning else logging.INFO, "%s: %s", event.reason, bounded(event.message)
        )
        await kube.post_event(body, event.reason, event.message, warning=event.warning, now=to_timestamp(now))


async def _apply_deployment(
    body: dict[str, Any],
    live: dict[str, Any] | None,
    wanted: dict[str, Any],
    now: datetime,
    logger: logging.Logger,
) -> str | None:
    """Apply the owned fields when the watched Deployment differs from them, so an edit of them
    is reverted (with an event) as soon as its watch event arrives.

    Returns the API server's message when it refuses the Deployment (a bad label key, a policy
    webhook's deny); transient errors raise, and the supervisor retries.
    """
    if not needs_apply(live, wanted):  # a no-op apply is still a request per object per round
        return None
    try:
        applied = await kube.apply_deployment(wanted)
    except kube.ApiException as error:
        refused = kube.refusal(error)
        if refused is None:
            raise
        return refused
    seen = (live or {}).get("metadata", {}).get("resourceVersion")
    key = (str(body["metadata"]["namespace"]), str(wanted["metadata"]["name"]))
    moment = time.monotonic()
    changes = [] if corrected_already(_corrected_from, key, seen, moment) else drift(live, applied, wanted)
    if changes:
        remember_correction(_corrected_from, key, seen, moment)
        event = Event(
            Reason.DRIFT_CORRECTED, drift_message(wanted["metadata"]["name"], changes), warning=True
        )
        await _post_events(body, (event,), now, logger)
    return None


# The watch can deliver an edit after the round that reverted it: a round that starts in between
# sees the same stale copy, and its apply changes nothing. So the operator remembers the
# resourceVersion each correction started from, for as long as a watch can lag, and a copy with
# that resourceVersion is not reported as drift again. Equality only: resourceVersions are opaque.
STALE_COPY_SECONDS = 60.0
# (namespace, name) -> (resourceVersion of the copy a correction started from, monotonic time).
_corrected_from: dict[tuple[str, str], tuple[str, float]] = {}


def corrected_already(
    memory: dict[tuple[str, str], tuple[str, float]], key: tuple[str, str], seen: str | None, moment: float
) -> bool:
    """Whether the copy with resourceVersion `seen` is one this process corrected recently."""
    if seen is None or key not in memory:
        return False
    version, at = memory[key]
    return version == seen and moment - at < STALE_COPY_SECONDS


def remember_correction(
    memory: dict[tuple[str, str], tuple[str, float]], key: tuple[str, str], seen: str | None, moment: float
) -> None:
    """Note that the copy `seen` of `key` was corrected at `moment`; forget what is past the lag."""
    for old in [k for k, (_, at) in memory.items() if moment - at >= STALE_COPY_SECONDS]:
        del memory[old]
    if seen is not None:
        memory[key] = (seen, moment)


def drift_message(deployment: str, changes: list[str]) -> str:
    """The DriftCorrected event's message: the first few reverted fields, the rest counted."""
    message = f"reverted edits of Deployment {deployment}: " + "; ".join(changes[:DRIFT_CHANGES_SHOWN])
    if len(changes) > DRIFT_CHANGES_SHOWN:
        message += f"; and {len(changes) - DRIFT_CHANGES_SHOWN} more"
    return message


def _as_stored(value: Any) -> Any:
    """What the API server keeps of a merge-patched status: null fields are dropped."""
    if isinstance(value, dict):
        return {key: _as_stored(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_as_stored(item) for item in value]
    return value


def _count(
    namespace: str, name: str, decision: Decision, check: CheckRecord | None, checked_version: str
) -> None:
    """The operator's metrics after a round; a version neither current nor stable is forgotten."""
    if check is not None:
        metrics.CHECKS.labels(namespace, name, check.verdict.value).inc()
        if check.verdict is not Verdict.ERROR and check.value is not None:
            # The version that was measured, not the one serving after the decision (a rollback).
            metrics.LAST_ACCURACY.labels(namespace, name, checked_version).set(check.value)
    # A rolled-back or superseded version's value would otherwise stay forever (and so would an
    # alert on it); the failing check's value stays in status.lastCheck and the events.
    serving = {release.version for release in (decision.facts.current, decision.facts.stable) if release}
    metrics.forget_versions(namespace, name, serving)
    for event in decision.events:
        if event.reason == Reason.ROLLED_BACK:
            metrics.ROLLBACKS.labels(namespace, name, decision.facts.rollback_reason or "").inc()
        elif event.reason == Reason.PROMOTED:
            metrics.PROMOTIONS.labels(namespace, name).inc()
        elif event.reason == Reason.SHADOW_REJECTED:
            metrics.SHADOW_REJECTIONS.labels(namespace, name).inc()


async def _report_invalid_spec(
    body: dict[str, Any], message: str, now: datetime, reason: str = "InvalidSpec"
) -> dict[str, Any] | None:
    """A spec the CRD schema let through but the operator cannot act on: say so, change nothing."""
    message = bounded(message)
    meta = body["metadata"]
    status = dict(body.get("status") or {})
    if status.get("message") == message:
        return None
    status.update(
        observedGeneration=meta.get("generation", 0),
        message=message,
        # Stalled too: kstatus (Flux's wait, kpt) reads only Reconciling and Stalled, and a spec
        # the operator cannot act on needs a person.
        conditions=[
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": message,
                "observedGeneration": meta.get("generation", 0),
                "lastTransitionTime": to_timestamp(now),
            }
            for kind, value in (("Ready", "False"), ("Stalled", "True"))
        ],
    )
    written = await kube.write_status(meta["namespace"], meta["name"], status, meta["resourceVersion"])
    await kube.post_event(body, reason, message, warning=True, now=to_timestamp(now))
    return written
