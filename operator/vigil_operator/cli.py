"""`kubectl vigil`: a ModelDeployment's rollout story on the command line (a kubectl plugin).

    kubectl vigil get NAME [-n NS] [--watch] [--events N]
    kubectl vigil promote|rollback|retry NAME [-n NS]

`get` shows the phase, the versions, the conditions, the last check with its query, the drift
watch, the history and the latest events; `--watch` redraws it when the object or its events
change. The actions set the `vigil.dev/action` annotation the operator handles (GitOps-safe: it is
metadata, not spec, and its field manager is one Flux's apply leaves alone; see constants.py).
`render` is pure; the rest reads the cluster through the user's kubeconfig.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from vigil_operator import constants as c
from vigil_operator.decisions import Action

CONDITIONS = ("Ready", "Reconciling", "Stalled", "Degraded", "RolledBack")
WATCH_POLL_SECONDS = 2.0


def render(mdep: dict[str, Any], events: Sequence[dict[str, Any]], now: datetime, *, limit: int = 10) -> str:
    """The story of one ModelDeployment as text: what serves, why, and what happened."""
    meta, spec, status = mdep["metadata"], mdep.get("spec") or {}, mdep.get("status") or {}
    lines = [
        f"Name:        {meta['name']}",
        f"Namespace:   {meta.get('namespace', '')}",
        f"Phase:       {status.get('phase', 'Pending')}  {status.get('message', '')}".rstrip(),
        "Versions:    "
        + "  ".join(
            f"{label} {value}"
            for label, value in (
                ("spec", spec.get("version")),
                ("serving", status.get("currentVersion")),
                ("stable", status.get("stableVersion")),
                ("failed", status.get("failedVersion")),
            )
            if value
        ),
        "Conditions:  " + "  ".join(_condition(status, kind) for kind in CONDITIONS),
    ]
    strategy = status.get("strategy") or {}
    if strategy:
        share, replicas = strategy.get("candidatePercent"), strategy.get("candidateReplicas", 0)
        lines.append(
            f"Strategy:    {strategy.get('type', '?')}, step {strategy.get('step', '?')} of "
            f"{strategy.get('steps', '?')}: {strategy.get('stage', '?')}, the candidate answers "
            + ("an unknown share (HPA)" if share is None else f"{share}%")
            + f" of user requests ({replicas} replica{'' if replicas == 1 else 's'} of its own)"
        )
    check = status.get("lastCheck") or {}
    if check:
        lines += [
            "",
            f"Last check ({_ago(check.get('time'), now)}): {check.get('verdict', '?')}  "
            f"{check.get('reason', '')}",
            f"  query: {check.get('query', '')}",
        ]
    watch = status.get("watch") or {}
    if status.get("phase") in ("Promoted", "RolledBack") and watch.get("samples"):
        lines.append(
            f"Drift watch: evidence {watch.get('statistic', 0):.2f} over {watch['samples']:.0f} labelled "
            f"predictions in {_duration(watch.get('seconds', 0))}"
        )
    history = status.get("history") or []
    if history:
        lines += ["", "History (newest first):"]
        lines += [
            f"  {item.get('version', ''):<12} {item.get('outcome', ''):<10} {_ago(item.get('at'), now):>8}  "
            f"{item.get('reason', '')}".rstrip()
            for item in history
        ]
    recent = sorted(events, key=_event_time)[-limit:]
    if recent:
        lines += ["", f"Events (last {len(recent)}):"]
        lines += [
            f"  {_ago(_event_time(event), now):>8}  {event.get('type', ''):<7}  "
            f"{event.get('reason', ''):<22} {event.get('message', '')}"
            for event in recent
        ]
    return "\n".join(lines)


def _condition(status: dict[str, Any], kind: str) -> str:
    found = next((item for item in status.get("conditions") or [] if item.get("type") == kind), None)
    if found is None:
        return f"{kind}=?"
    reason = f" ({found['reason']})" if found.get("status") == "True" and found.get("reason") else ""
    return f"{kind}={found.get('status')}{reason}"


def _event_time(event: dict[str, Any]) -> str:
    return event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or ""


def _ago(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "?"
    seconds = (now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()
    return f"{_duration(max(0.0, seconds))} ago"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kubectl vigil", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["get", *(action.value for action in Action)])
    parser.add_argument("name", help="the ModelDeployment")
    parser.add_argument("-n", "--namespace", help="its namespace (default: the context's)")
    parser.add_argument("--context", help="the kubeconfig context to use")
    parser.add_argument("--kubeconfig", help="the kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    parser.add_argument("-w", "--watch", action="store_true", help="get: redraw on every change")
    parser.add_argument("--events", type=int, default=10, help="get: how many events to show (default 10)")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> int:
    await config.load_kube_config(config_file=args.kubeconfig, context=args.context)
    namespace = args.namespace or _context_namespace(args) or "default"
    async with client.ApiClient() as api:
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        if args.command != "get":
            body = {"metadata": {"annotations": {c.ANNOTATION_ACTION: args.command}}}
            # The stubs leave out `_content_type`, which the client accepts.
            await custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
                c.GROUP, c.VERSION, namespace, c.PLURAL, args.name, body,
                field_manager=c.CLI_FIELD_MANAGER, _content_type="application/merge-patch+json",
            )  # fmt: skip
            print(f"{args.command} requested for modeldeployment {namespace}/{args.name}")
            return 0
        shown = ""
        while True:
            mdep = await custom.get_namespaced_custom_object(
                c.GROUP, c.VERSION, namespace, c.PLURAL, args.name
            )
            found = await core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={args.name},involvedObject.kind={c.KIND}"
            )
            events = api.sanitize_for_serialization(found)["items"]
            text = render(mdep, events, datetime.now(UTC), limit=args.events)
            if text != shown:
                print(("\033[2J\033[H" if args.watch and sys.stdout.isatty() else "") + text, flush=True)
                shown = text
            if not args.watch:
                return 0
            await asyncio.sleep(WATCH_POLL_SECONDS)


def _context_namespace(args: argparse.Namespace) -> str | None:
    contexts, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
    chosen = (
        next((item for item in contexts if item["name"] == args.context), active) if args.context else active
    )
    return (chosen or {}).get("context", {}).get("namespace")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except ApiException as error:
        print(f"error: {error.status} {error.reason}: modeldeployment {args.name}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
