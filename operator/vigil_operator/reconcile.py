"""One reconcile round of one ModelDeployment: read, decide (pure core), apply.

The order of writes makes a crash at any point safe: the status (the decision's memory)
is written first, with the resourceVersion the decision was made on; the Deployment
follows it. A restarted operator re-reads both and converges on the same outcome.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from vigil_operator import constants as c
from vigil_operator import kube, metrics, prometheus
from vigil_operator.analysis import CheckOutcome, Criteria, Measurement, Verdict, judge
from vigil_operator.builders import Owner, deployment_for, observe, release_of, service_for
from vigil_operator.config import Config
from vigil_operator.decisions import Action, Decision, Inputs, QueryPlan, Reason, check_due, decide
from vigil_operator.queries import Target, builtin_accuracy_query, custom_query
from vigil_operator.releases import AnalysisSpec, InvalidSpec, ModelDeploymentSpec, parse_spec
from vigil_operator.status import facts_from_status, status_of, to_timestamp

INVALID_SPEC_RETRY_SECONDS = 60.0
CONFLICT_RETRY_SECONDS = 0.2


async def prometheus_access(analysis: AnalysisSpec, namespace: str) -> prometheus.PrometheusAccess:
    """URL and, when a Secret is named, its credentials (only if the Secret names that URL)."""
    if not analysis.credentials_secret:
        return prometheus.PrometheusAccess(url=analysis.prometheus_url, timeout=analysis.query_timeout)
    secret = await kube.read_secret(namespace, analysis.credentials_secret)
    return prometheus.access_with_secret(
        analysis.prometheus_url, analysis.query_timeout, analysis.credentials_secret, secret
    )


async def run_check(spec: ModelDeploymentSpec, target: Target, plan: QueryPlan) -> tuple[CheckOutcome, str]:
    """Render the query, measure through Prometheus, judge. Never raises for missing data."""
    analysis = spec.analysis
    query = (
        custom_query(analysis.query, target, plan) if analysis.query else builtin_accuracy_query(target, plan)
    )
    try:
        access = await prometheus_access(analysis, target.namespace)
    except kube.ApiException as error:
        measurement = Measurement(error=f"cannot read Secret {analysis.credentials_secret!r}: {error.reason}")
    except prometheus.PrometheusError as error:
        measurement = Measurement(error=str(error))
    else:
        measurement = await prometheus.measure(access, query, builtin=analysis.builtin)
    criteria = Criteria(
        threshold=analysis.threshold,
        min_samples=analysis.min_samples,
        confidence=analysis.confidence,
        builtin=analysis.builtin,
    )
    return judge(measurement, criteria), query


def requested_action(body: dict[str, Any]) -> tuple[Action | None, str | None]:
    """The manual action annotation, parsed; an unknown value is reported, not acted on."""
    raw = (body.get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_ACTION)
    if raw is None:
        return None, None
    try:
        return Action(raw.strip().lower()), raw
    except ValueError:
        return None, raw


async def reconcile_once(namespace: str, name: str, config: Config, logger: logging.Logger) -> float | None:
    """One round; returns the seconds until the next one, or None once the object is gone."""
    body = await kube.read_model_deployment(namespace, name)
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
        await _report_invalid_spec(body, str(error), now)
        return INVALID_SPEC_RETRY_SECONDS

    facts = facts_from_status(body.get("status"))
    action, raw_action = requested_action(body)
    deployment = await kube.read_deployment(namespace, name)
    observed = observe(deployment, facts.rollout_started_at) if deployment else None

    check, query = None, ""
    plan = check_due(facts, spec.analysis, now)
    if plan is not None and facts.current is not None:
        target = Target(name=name, namespace=namespace, version=facts.current.version)
        check, query = await run_check(spec, target, plan)

    decision = decide(
        Inputs(
            desired=spec.release,
            analysis=spec.analysis,
            facts=facts,
            observed=observed,
            now=now,
            check=check,
            query=query,
            action=action,
        )
    )
    previous = body.get("status") or {}
    status = status_of(
        decision.facts,
        spec.analysis,
        spec.release,
        meta.get("generation", 0),
        now,
        previous.get("conditions"),
    )
    if _as_stored(status) != previous:  # skip no-op writes
        try:
            await kube.write_status(namespace, name, status, meta["resourceVersion"])
        except kube.ApiException as error:
            if kube.is_conflict(error):  # the object changed under us: decide again on fresh data
                return CONFLICT_RETRY_SECONDS
            raise
    for event in decision.events:
        logger.log(logging.WARNING if event.warning else logging.INFO, "%s: %s", event.reason, event.message)
        await kube.post_event(body, event.reason, event.message, warning=event.warning, now=to_timestamp(now))
    _count(namespace, name, decision, check, facts.current.version if facts.current else "")

    wanted = deployment_for(owner, spec, decision.target)
    if deployment is None or _spec_hash(deployment) != _spec_hash(wanted) or release_of(deployment) is None:
        await kube.apply_deployment(wanted)
    if await kube.read_service(namespace, name) is None:
        await kube.apply_service(service_for(owner))
    if raw_action is not None:
        if action is None:
            message = f"unknown action {raw_action!r}; use retry, rollback or promote"
            await kube.post_event(body, Reason.ACTION_IGNORED, message, warning=True, now=to_timestamp(now))
        await kube.clear_action(namespace, name)
    return decision.requeue_after


def _as_stored(value: Any) -> Any:
    """What the API server keeps of a merge-patched status: null fields are dropped."""
    if isinstance(value, dict):
        return {key: _as_stored(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_as_stored(item) for item in value]
    return value


def _spec_hash(deployment: dict[str, Any]) -> str | None:
    return (deployment.get("metadata", {}).get("annotations") or {}).get(c.ANNOTATION_SPEC_HASH)


def _count(
    namespace: str, name: str, decision: Decision, check: CheckOutcome | None, checked_version: str
) -> None:
    if check is not None:
        metrics.CHECKS.labels(namespace, name, check.verdict.value).inc()
        if check.verdict is not Verdict.ERROR and check.value is not None:
            # The version that was measured, not the one serving after the decision (a rollback).
            metrics.LAST_ACCURACY.labels(namespace, name, checked_version).set(check.value)
    for event in decision.events:
        if event.reason == Reason.ROLLED_BACK:
            metrics.ROLLBACKS.labels(namespace, name, decision.facts.rollback_reason or "").inc()
        elif event.reason == Reason.PROMOTED:
            metrics.PROMOTIONS.labels(namespace, name).inc()


async def _report_invalid_spec(body: dict[str, Any], message: str, now: datetime) -> None:
    """A spec the CRD schema let through but the operator cannot act on: say so, change nothing."""
    meta = body["metadata"]
    status = dict(body.get("status") or {})
    if status.get("message") == message:
        return
    status.update(
        observedGeneration=meta.get("generation", 0),
        message=message,
        conditions=[
            {
                "type": "Ready",
                "status": "False",
                "reason": "InvalidSpec",
                "message": message,
                "observedGeneration": meta.get("generation", 0),
                "lastTransitionTime": to_timestamp(now),
            }
        ],
    )
    await kube.write_status(meta["namespace"], meta["name"], status, meta["resourceVersion"])
    await kube.post_event(body, "InvalidSpec", message, warning=True, now=to_timestamp(now))
