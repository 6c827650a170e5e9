"""What `kubectl vigil` shows, from a ModelDeployment and its events. Pure: no I/O, `now` is given.

Each view is a plain dict first (what `--output json` prints) and text second (rendered from
that dict), so the two never disagree. The status is read with the operator's own
`facts_from_status` and `parse_spec`, so "what happens next" follows the rules `decide()` applies.

Status keeps only the last check; the checks before it are told by the events the operator posts
for them (a failed check, a run without data, a stage passed, a promotion by passing checks).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil_operator.decisions import Action, Facts, Phase, Reason, phase_of, watching
from vigil_operator.releases import AnalysisSpec, InvalidSpec, parse_spec
from vigil_operator.status import facts_from_status, to_timestamp

CONDITIONS = ("Ready", "Reconciling", "Stalled", "Degraded", "RolledBack")
NONE = "<none>"  # what kubectl prints for a column without a value
TABLE_COLUMNS = (
    "NAME",
    "VERSION",
    "STABLE",
    "PHASE",
    "STAGE",
    "SHARE",
    "ACCURACY",
    "STEP",
    "LAST CHECK",
    "AGE",
)

# Events that report one check each: their reason gives the verdict.
_CHECK_EVENTS = {
    Reason.ANALYSIS_FAILED: "fail",
    Reason.METRICS_UNAVAILABLE: "error",
    Reason.CANARY_STEP_PASSED: "pass",
    Reason.SHADOW_PASSED: "pass",
    Reason.PROMOTED: "pass",  # only when checks promoted it, not a `kubectl vigil promote`
}
_MEASURED = re.compile(r"\b(?:accuracy|value|difference) (-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")
_QUERY_SUFFIX = "; query: "


# --- get ---------------------------------------------------------------------------------------


def table_row(mdep: dict[str, Any]) -> dict[str, Any]:
    """One ModelDeployment as `kubectl get mdep` shows it, plus its strategy step and last check."""
    meta, spec, status = _parts(mdep)
    strategy = status.get("strategy") or {}
    check = status.get("lastCheck") or {}
    return {
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "version": spec.get("version"),
        "current": status.get("currentVersion"),
        "stable": status.get("stableVersion"),
        "phase": status.get("phase"),
        "stage": strategy.get("stage"),
        "share": strategy.get("candidatePercent"),
        "accuracy": check.get("value"),
        "step": strategy.get("step"),
        "steps": strategy.get("steps"),
        "lastCheck": {"verdict": check.get("verdict"), "time": check.get("time")} if check else None,
        "created": meta.get("creationTimestamp"),
    }


def render_table(rows: Sequence[dict[str, Any]], now: datetime, *, namespaces: bool = False) -> str:
    """The rows as kubectl prints a table: left-aligned columns three spaces apart."""
    if not rows:
        return "No resources found."
    header = ("NAMESPACE", *TABLE_COLUMNS) if namespaces else TABLE_COLUMNS
    cells = [header]
    for row in rows:
        check = row.get("lastCheck") or {}
        values = (
            row["name"],
            _cell(row.get("version")),
            _cell(row.get("stable")),
            _cell(row.get("phase")),
            _cell(row.get("stage")),
            _cell(row.get("share")),
            _cell(row.get("accuracy")),
            f"{row['step']}/{row['steps']}" if row.get("step") and row.get("steps") else NONE,
            f"{check.get('verdict') or '?'} {_ago(check.get('time'), now)}" if check else NONE,
            _age(row.get("created"), now),
        )
        cells.append((row["namespace"], *values) if namespaces else values)
    widths = [max(len(line[index]) for line in cells) for index in range(len(header))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


# --- describe ----------------------------------------------------------------------------------


def describe(mdep: dict[str, Any], events: Sequence[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """Everything `describe` shows, as data: versions, conditions, checks, history, events, next step."""
    meta, spec, status = _parts(mdep)
    analysis = _analysis(spec)
    ordered = sorted(events, key=_event_order)
    return {
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "phase": status.get("phase") or "Pending",
        "message": status.get("message") or "",
        "versions": {
            "spec": spec.get("version"),
            "serving": status.get("currentVersion"),
            "stable": status.get("stableVersion"),
            "failed": status.get("failedVersion"),
        },
        "conditions": [
            {key: item.get(key) for key in ("type", "status", "reason", "message")}
            for item in status.get("conditions") or []
            if isinstance(item, dict)
        ],
        "strategy": status.get("strategy") or None,
        "analysis": _analysis_summary(analysis),
        "lastCheck": status.get("lastCheck") or None,
        "checks": recent_checks(status.get("lastCheck") or None, ordered),
        "streaks": status.get("streaks") or None,
        "watch": status.get("watch") or None,
        "history": list(status.get("history") or []),
        "events": [
            {
                "time": _event_time(event) or None,
                "type": event.get("type", ""),
                "reason": event.get("reason", ""),
                "message": event.get("message", ""),
            }
            for event in ordered
        ],
        "next": next_step(mdep, now),
    }


def recent_checks(last: dict[str, Any] | None, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The checks still on record, oldest first: those told by events, then the last one from status.

    An event of the last check itself is left out: status tells it with more (samples, bounds).
    """
    last_time = _parse_time((last or {}).get("time"))
    checks = []
    for event in events:
        verdict = _CHECK_EVENTS.get(event.get("reason", ""))
        message = str(event.get("message", ""))
        if verdict is None or (event.get("reason") == Reason.PROMOTED and "checks passed" not in message):
            continue
        at = _parse_time(_event_time(event))
        if at is not None and last_time is not None and abs((at - last_time).total_seconds()) < 1.5:
            continue
        detail = _without_query(message)
        measured = _MEASURED.search(detail)
        checks.append(
            {
                "time": _event_time(event) or None,
                "verdict": verdict,
                "value": float(measured.group(1)) if measured else None,
                "samples": None,
                "reason": detail,
                "source": f"event {event.get('reason')}",
            }
        )
    if last and last.get("time"):
        checks.append(
            {
                "time": last.get("time"),
                "verdict": last.get("verdict"),
                "value": last.get("value"),
                "samples": last.get("samples"),
                "reason": last.get("reason", ""),
                "source": "status.lastCheck",
            }
        )
    return checks


def next_step(mdep: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What the operator does next, and when (`at`; None while it waits for a person or a Deployment)."""
    meta, spec, status = _parts(mdep)
    name = meta.get("name", "NAME")
    if not status.get("currentRelease"):
        return {"what": "waiting for the operator to pick it up (no status yet)", "at": None}
    try:
        facts = facts_from_status(status)
    except (KeyError, TypeError, ValueError):
        return {"what": "unknown: the status could not be read", "at": None}
    analysis = _analysis(spec)
    current = facts.current.version if facts.current else "nothing"
    stable = facts.stable.version if facts.stable else None
    retry = f"change spec.version, or run `kubectl vigil retry {name}`"
    phase = phase_of(facts)
    if phase is Phase.DEGRADED:
        return {"what": f"nothing until a person acts ({facts.degraded_reason}): {retry}", "at": None}
    if phase is Phase.PROGRESSING:
        return _next_in_rollout(facts, spec, current, stable)
    due = _next_check(facts, analysis)
    when = f"next check {_at(due, now)}"
    if facts.streaks.errors >= analysis.error_limit:
        outage = f"{facts.streaks.errors} checks in a row without usable data; {current} stays. "
        when = outage + when
    if phase is Phase.ANALYZING:
        promote = f"promote {current}"
        if facts.staged is not None and not facts.staged.last:
            promote = f"move {current} past {facts.staged.position()}"
        elif facts.staged is not None:
            promote = f"pass {facts.staged.position()} and promote {current}"
        passes = max(1, analysis.success_limit - facts.streaks.passes)
        failures = max(1, analysis.failure_limit - facts.streaks.failures)
        revert = (
            f"roll back to {stable}" if stable and stable != current else "degrade it (nothing to revert to)"
        )
        what = (
            f"{when}: {passes} more passing check{_s(passes)} {promote}; "
            f"{failures} more failing check{_s(failures)} {revert}"
        )
        return {"what": what, "at": to_timestamp(due)}
    if not watching(facts, analysis):
        what = f"nothing: {current} serves and analysis ended with its promotion (afterPromotion: false)"
        if phase is Phase.ROLLED_BACK:
            what = f"nothing: {current} serves; to try {facts.failed_version} again, {retry}"
        return {"what": what, "at": None}
    watch = f"{when}: watching {current}, a significant drop in accuracy rolls it back"
    if phase is Phase.ROLLED_BACK:
        watch += f"; {facts.failed_version} is not rolled out again until you {retry}"
    return {"what": watch, "at": to_timestamp(due)}


def _next_in_rollout(facts: Facts, spec: dict[str, Any], current: str, stable: str | None) -> dict[str, Any]:
    deadline_seconds = _number(spec.get("progressDeadlineSeconds"), 600.0)
    started = facts.rollout_started_at
    deadline = started + timedelta(seconds=deadline_seconds) if started else None
    if facts.staged is not None and facts.staged.handing_over:
        return {
            "what": f"the main Deployment rolls to {current}, promoted; then the candidate's goes",
            "at": None,
        }
    if stable and stable != current:
        outcome = f"it is rolled back to {stable}"
    else:
        outcome = "the ModelDeployment is Degraded (nothing to revert to)"
    if deadline is None:
        return {"what": f"waiting for {current} to become available", "at": None}
    what = f"waiting for {current} to become available; if it is not by {_clock(deadline)}, {outcome}"
    return {"what": what, "at": to_timestamp(deadline)}


def _next_check(facts: Facts, analysis: AnalysisSpec) -> datetime | None:
    last = facts.last_check.time if facts.last_check else facts.serving_since
    return None if last is None else last + timedelta(seconds=analysis.interval)


def render_describe(view: dict[str, Any], now: datetime, *, limit: int = 10) -> str:
    """The rollout story as text: what serves and why, the checks, what is next, what happened."""
    versions = view["versions"]
    lines = [
        f"Name:        {view['name']}",
        f"Namespace:   {view['namespace']}",
        f"Phase:       {view['phase']}  {view['message']}".rstrip(),
        "Versions:    " + "  ".join(f"{label} {value}" for label, value in versions.items() if value),
        "Conditions:  " + "  ".join(_condition(view["conditions"], kind) for kind in CONDITIONS),
    ]
    strategy = view.get("strategy") or {}
    if strategy:
        share, replicas = strategy.get("candidatePercent"), strategy.get("candidateReplicas", 0)
        lines.append(
            f"Strategy:    {strategy.get('type', '?')}, step {strategy.get('step', '?')} of "
            f"{strategy.get('steps', '?')}: {strategy.get('stage', '?')}, the candidate answers "
            + ("an unknown share (HPA)" if share is None else f"{share}%")
            + f" of user requests ({replicas} replica{_s(replicas)} of its own)"
        )
    analysis = view["analysis"]
    lines.append(
        f"Analysis:    every {_duration(analysis['intervalSeconds'])}, {analysis['metric']}, threshold "
        f"{analysis['threshold']:g}, {analysis['successLimit']} passes promote, "
        f"{analysis['failureLimit']} failures roll back"
    )
    lines += ["", f"Next:        {view['next']['what']}"]
    lines += _render_checks(view, now)
    watch = view.get("watch") or {}
    if view["phase"] in ("Promoted", "RolledBack") and watch.get("samples"):
        lines.append(
            f"Drift watch: evidence {watch.get('statistic', 0):.2f} over {watch['samples']:.0f} labelled "
            f"predictions in {_duration(watch.get('seconds', 0))}"
        )
    if view["history"]:
        lines += ["", "History (newest first):"]
        lines += [
            f"  {item.get('version', ''):<12} {item.get('outcome', ''):<10} {_ago(item.get('at'), now):>8}  "
            f"{_without_query(item.get('reason', ''))}".rstrip()
            for item in view["history"]
        ]
    recent = view["events"][-limit:] if limit > 0 else []
    if recent:
        lines += ["", f"Events (last {len(recent)}):"]
        lines += [
            f"  {_ago(event['time'], now):>8}  {event['type']:<7}  {event['reason']:<22} "
            f"{_without_query(event['message'])}"
            for event in recent
        ]
    return "\n".join(lines)


def _render_checks(view: dict[str, Any], now: datetime) -> list[str]:
    checks, last = view["checks"], view.get("lastCheck") or {}
    if not checks:
        return []
    every = _duration(view["analysis"]["intervalSeconds"])
    lines = ["", f"Checks (every {every}; oldest first, the last from status, earlier ones from events):"]
    lines.append(f"  {'WHEN':>8}  {'VERDICT':<12}  {'VALUE':<7}  {'SAMPLES':<7}  REASON")
    for check in checks:
        value, samples = check.get("value"), check.get("samples")
        lines.append(
            f"  {_ago(check.get('time'), now):>8}  {check.get('verdict') or '?':<12}  "
            f"{'-' if value is None else f'{value:.4g}':<7}  "
            f"{'-' if samples is None else f'{samples:g}':<7}  "
            f"{check.get('reason', '')}".rstrip()
        )
    if last.get("query"):
        lines.append(f"  query: {last['query']}")
    streaks, analysis = view.get("streaks") or {}, view["analysis"]
    if streaks:
        # successLimit counts only while a release is analysed; a promoted one's passes just go on.
        limit = f"/{analysis['successLimit']}" if view["phase"] == "Analyzing" else ""
        lines.append(
            f"  in a row: {streaks.get('passes', 0)}{limit} passed, "
            f"{streaks.get('failures', 0)}/{analysis['failureLimit']} failed, "
            f"{streaks.get('errors', 0)}/{analysis['errorLimit']} without data"
        )
    return lines


# --- promote, rollback, retry ------------------------------------------------------------------


@dataclass(frozen=True)
class ActionReport:
    text: str
    done: bool  # the operator did what was asked (False: it ignored the action, and said why)


def action_report(
    action: Action, mdep: dict[str, Any], new_events: Sequence[dict[str, Any]], waited: float
) -> ActionReport:
    """What the operator did with an action: the events it posted and the status it left."""
    status = _parts(mdep)[2]
    ordered = sorted(new_events, key=_event_order)
    lines = [f"the operator handled {action.value} in {waited:.2f}s:"]
    lines += [
        f"  {event.get('reason', ''):<22} {_without_query(event.get('message', ''))}" for event in ordered
    ]
    if not ordered:
        lines.append("  (no event: the status below is all it recorded)")
    lines.append(f"now: {status.get('phase') or 'Pending'}  {status.get('message') or ''}".rstrip())
    ignored = any(event.get("reason") == Reason.ACTION_IGNORED for event in ordered)
    return ActionReport("\n".join(lines), done=not ignored)


# --- helpers -----------------------------------------------------------------------------------


def _parts(mdep: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    return mdep.get("metadata") or {}, mdep.get("spec") or {}, mdep.get("status") or {}


def _analysis(spec: dict[str, Any]) -> AnalysisSpec:
    """The spec's analysis settings with the operator's defaults (the defaults alone if unreadable)."""
    try:
        return parse_spec(spec, default_image="-", default_prometheus_url="-").analysis
    except InvalidSpec:
        return AnalysisSpec(prometheus_url="-")


def _analysis_summary(analysis: AnalysisSpec) -> dict[str, Any]:
    return {
        "metric": "custom query" if analysis.query else "built-in accuracy",
        "intervalSeconds": analysis.interval,
        "threshold": analysis.threshold,
        "minSamples": analysis.min_samples,
        "successLimit": analysis.success_limit,
        "failureLimit": analysis.failure_limit,
        "errorLimit": analysis.error_limit,
        "afterPromotion": analysis.after_promotion,
    }


def _condition(conditions: Sequence[dict[str, Any]], kind: str) -> str:
    found = next((item for item in conditions if item.get("type") == kind), None)
    if found is None:
        return f"{kind}=?"
    reason = f" ({found['reason']})" if found.get("status") == "True" and found.get("reason") else ""
    return f"{kind}={found.get('status')}{reason}"


def _without_query(text: str) -> str:
    """A message without the query it ends with: the text view shows the query once, under Checks."""
    return str(text).split(_QUERY_SUFFIX, 1)[0]


def _cell(value: Any) -> str:
    if value is None or value == "":
        return NONE
    return f"{value:g}" if isinstance(value, float) else str(value)


def _number(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _event_order(event: dict[str, Any]) -> tuple[str, int]:
    """Oldest first; events of the same second in the order they were written (kubectl describe
    shows them in the API's name order, which for `generateName` events is random)."""
    version = str((event.get("metadata") or {}).get("resourceVersion", ""))
    return _event_time(event), int(version) if version.isdigit() else 0


def _event_time(event: dict[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or "")


def _parse_time(stamp: Any) -> datetime | None:
    if not stamp or not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ago(stamp: Any, now: datetime) -> str:
    moment = _parse_time(stamp)
    if moment is None:
        return "?"
    return f"{_duration(max(0.0, (now - moment).total_seconds()))} ago"


def _age(stamp: Any, now: datetime) -> str:
    moment = _parse_time(stamp)
    return NONE if moment is None else _duration(max(0.0, (now - moment).total_seconds()))


def _at(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "when the release serves"
    seconds = (moment - now).total_seconds()
    return f"at {_clock(moment)} ({'now' if seconds <= 0 else 'in ' + _duration(seconds)})"


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%H:%M:%SZ")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def _s(count: int) -> str:
    return "" if count == 1 else "s"
