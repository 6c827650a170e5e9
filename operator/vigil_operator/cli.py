"""`kubectl vigil`: a ModelDeployment's rollout story on the command line (a kubectl plugin).

    kubectl vigil get [NAME] [-n NS | -A] [-o json]   the table, with strategy step and last check
    kubectl vigil describe NAME [-n NS] [-o json]     history, checks, events, what happens next
    kubectl vigil watch NAME [-n NS]                  describe, redrawn on every change (Ctrl-C ends)
    kubectl vigil promote|rollback|retry NAME [-n NS] [--no-wait] [--timeout S]

The actions set the `vigil.dev/action` annotation the operator handles (GitOps-safe: it is
metadata, not spec, and its field manager is one Flux's apply leaves alone; see constants.py),
then wait for the operator to handle it and print what it did. What is shown comes from the pure
`cli_view`; this module only reads and writes the cluster, through the user's kubeconfig.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config import ConfigException

from vigil_operator import constants as c
from vigil_operator.cli_view import action_report, describe, render_describe, render_table, table_row
from vigil_operator.decisions import Action
from vigil_operator.pacing import retry_delay

MERGE = "application/merge-patch+json"
REFRESH_SECONDS = 1.0  # a terminal's `watch` redraws this often too, so "12s ago" stays true
DEFAULT_TIMEOUT = 60.0
# `watch` outlives connections: the API server ends watches by design (after 30-60 minutes) and
# when it restarts; the watch lists again after 1 s, doubling up to 30 s while it cannot connect.
RECONNECT_BASE_SECONDS, RECONNECT_CAP_SECONDS = 1.0, 30.0


@dataclass(frozen=True)
class Cluster:
    """The API clients of one run, and the namespace it works in."""

    api: client.ApiClient
    namespace: str

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def plain(self, obj: Any) -> dict[str, Any]:
        """An API answer as the dict kubectl would show (models serialised, dicts as they are)."""
        return obj if isinstance(obj, dict) else dict(self.api.sanitize_for_serialization(obj))

    async def mdep(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self.custom.get_namespaced_custom_object(
            c.GROUP, c.VERSION, self.namespace, c.PLURAL, name
        )
        return found

    async def events(self, name: str) -> list[dict[str, Any]]:
        listed = await self.core.list_namespaced_event(self.namespace, field_selector=_events_of(name))
        return list(self.plain(listed)["items"])


def _events_of(name: str) -> str:
    return f"involvedObject.name={name},involvedObject.kind={c.KIND}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    common.add_argument("--context", help="the kubeconfig context to use")
    common.add_argument("--kubeconfig", help="the kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("-o", "--output", choices=["text", "json"], default="text", help="text or json")
    events = argparse.ArgumentParser(add_help=False)
    events.add_argument("--events", type=int, default=10, help="how many events to show (default 10)")

    parser = argparse.ArgumentParser(prog="kubectl vigil", description=(__doc__ or "").splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    get = commands.add_parser("get", parents=[common, output], help="the table, like kubectl get mdep")
    get.add_argument("name", nargs="?", help="one ModelDeployment (default: all in the namespace)")
    get.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    what = "history, checks, events and what happens next"
    show = commands.add_parser("describe", parents=[common, output, events], help=what)
    show.add_argument("name", help="the ModelDeployment")
    live = commands.add_parser("watch", parents=[common, events], help="describe, live; Ctrl-C ends")
    live.add_argument("name", help="the ModelDeployment")
    for action in Action:
        act = commands.add_parser(action.value, parents=[common], help=f"ask the operator to {action.value}")
        act.add_argument("name", help="the ModelDeployment")
        act.add_argument(
            "--wait",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="wait for the operator and print what it did (default: wait)",
        )
        act.add_argument(
            "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait (default 60)"
        )
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> int:
    await config.load_kube_config(config_file=args.kubeconfig, context=args.context)
    namespace = args.namespace or _context_namespace(args) or "default"
    async with client.ApiClient() as api:
        cluster = Cluster(api, namespace)
        match args.command:
            case "get":
                return await _get(cluster, args)
            case "describe":
                return await _describe(cluster, args)
            case "watch":
                return await _watch(cluster, args)
            case _:
                return await _act(cluster, Action(args.command), args)


async def _get(cluster: Cluster, args: argparse.Namespace) -> int:
    if args.name:
        rows = [table_row(await cluster.mdep(args.name))]
    elif args.all_namespaces:
        listed = await cluster.custom.list_cluster_custom_object(c.GROUP, c.VERSION, c.PLURAL)
        rows = [table_row(item) for item in listed["items"]]
    else:
        listed = await cluster.custom.list_namespaced_custom_object(
            c.GROUP, c.VERSION, cluster.namespace, c.PLURAL
        )
        rows = [table_row(item) for item in listed["items"]]
    if args.output == "json":
        _print_json(rows[0] if args.name else {"items": rows})
    else:
        print(render_table(rows, datetime.now(UTC), namespaces=args.all_namespaces and not args.name))
    return 0


async def _describe(cluster: Cluster, args: argparse.Namespace) -> int:
    mdep, events = await cluster.mdep(args.name), await cluster.events(args.name)
    now = datetime.now(UTC)
    view = describe(mdep, events, now)
    if args.output == "json":
        _print_json(view)
    else:
        print(render_describe(view, now, limit=args.events))
    return 0


async def _watch(cluster: Cluster, args: argparse.Namespace) -> int:
    """`describe`, redrawn whenever the object or its events change (watches, not polling).

    On a terminal the screen is cleared for each frame and redrawn every second for the ages;
    otherwise (a pipe, a log) each changed frame follows the last under a `---` line. Ctrl-C (SIGINT)
    ends it with status 0, also when it was started with SIGINT ignored (a shell's `&`, a CI job).
    """
    objects: dict[str, dict[str, Any]] = {}
    events: dict[str, dict[str, Any]] = {}
    lost: dict[str, str] = {}  # why a follower cannot reach the API server, until it can again
    changed = asyncio.Event()
    custom, core = cluster.custom, cluster.core
    followers = [
        asyncio.create_task(
            _follow(
                cluster,
                custom.list_namespaced_custom_object,
                (c.GROUP, c.VERSION, cluster.namespace, c.PLURAL),
                f"metadata.name={args.name}",
                objects,
                changed,
                lost,
            )
        ),
        asyncio.create_task(
            _follow(
                cluster,
                core.list_namespaced_event,
                (cluster.namespace,),
                _events_of(args.name),
                events,
                changed,
                lost,
            )
        ),
    ]
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    terminal = sys.stdout.isatty()
    shown = ""
    try:
        while not interrupted.is_set():
            waiter = asyncio.create_task(changed.wait())
            stopper = asyncio.create_task(interrupted.wait())
            await asyncio.wait(
                [waiter, stopper, *followers],
                timeout=REFRESH_SECONDS if terminal else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
            stopper.cancel()
            if interrupted.is_set():
                break
            for follower in followers:
                if follower.done():
                    follower.result()  # a watch that failed for good ends the command with its error
            changed.clear()
            now = datetime.now(UTC)
            mdep = next(iter(objects.values()), None)
            text = (
                f"modeldeployment {cluster.namespace}/{args.name} not found; waiting for it"
                if mdep is None
                else render_describe(describe(mdep, list(events.values()), now), now, limit=args.events)
            )
            text += "".join(f"\nWatch:       {problem}" for problem in dict.fromkeys(lost.values()))
            if text == shown:
                continue
            if terminal:
                print("\033[2J\033[H" + text, flush=True)
            else:
                print(("" if not shown else f"--- {now.strftime('%H:%M:%SZ')}\n") + text, flush=True)
            shown = text
        return 0
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)


async def _follow(
    cluster: Cluster,
    list_call: Callable[..., Any],
    args: tuple[str, ...],
    field_selector: str,
    store: dict[str, dict[str, Any]],
    changed: asyncio.Event,
    lost: dict[str, str],
) -> None:
    """Keep `store` (uid: object) equal to what `list_call` lists: list, then watch from there.

    The watch reconnects by itself; when its resourceVersion is too old (410 Gone), list again.
    A lost connection, or an API server that answers 429 or 5xx, is retried with backoff, and
    `lost` says so until a list succeeds again; any other error ends the command.
    """
    failures = 0
    while True:
        try:
            listed = cluster.plain(await list_call(*args, field_selector=field_selector))
            failures = 0
            lost.pop(field_selector, None)
            store.clear()
            store.update({item["metadata"]["uid"]: item for item in listed["items"]})
            changed.set()
            version = listed["metadata"]["resourceVersion"]
            async with watch.Watch().stream(
                list_call, *args, field_selector=field_selector, resource_version=version
            ) as stream:
                async for event in stream:
                    obj = event["raw_object"]
                    if event["type"] == "DELETED":
                        store.pop(obj["metadata"]["uid"], None)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        store[obj["metadata"]["uid"]] = obj
                    changed.set()
        except ApiException as error:
            if error.status == 410:
                continue
            if error.status != 429 and (error.status or 0) < 500:
                raise
            cause = f"{error.status} {error.reason}"
        except (aiohttp.ClientError, TimeoutError) as error:
            cause = textwrap.shorten(str(error), 120) or type(error).__name__
        failures += 1
        delay = retry_delay(failures, RECONNECT_BASE_SECONDS, RECONNECT_CAP_SECONDS)
        lost[field_selector] = f"the API server is out of reach ({cause}); listing again in {delay:.0f}s"
        changed.set()
        await asyncio.sleep(delay)


async def _act(cluster: Cluster, action: Action, args: argparse.Namespace) -> int:
    """Set the action annotation; unless --no-wait, wait for the operator and report what it did."""
    before = {event["metadata"]["uid"] for event in await cluster.events(args.name)}
    body = {"metadata": {"annotations": {c.ANNOTATION_ACTION: action.value}}}
    started = time.monotonic()
    # The stubs leave out `_content_type`, which the client accepts.
    patched = await cluster.custom.patch_namespaced_custom_object(  # type: ignore[call-arg]
        c.GROUP, c.VERSION, cluster.namespace, c.PLURAL, args.name, body,
        field_manager=c.CLI_FIELD_MANAGER, _content_type=MERGE,
    )  # fmt: skip
    print(f"{action.value} requested for modeldeployment {cluster.namespace}/{args.name}", flush=True)
    if not args.wait:
        return 0
    try:
        handled = await asyncio.wait_for(
            _handled(cluster, args.name, patched["metadata"]["resourceVersion"]), args.timeout
        )
    except TimeoutError:
        print(
            f"error: the operator did not handle {action.value} within {args.timeout:g}s: is it running and "
            f"watching namespace {cluster.namespace}? The annotation stays until it does.",
            file=sys.stderr,
        )
        return 1
    waited = time.monotonic() - started
    new = [event for event in await cluster.events(args.name) if event["metadata"]["uid"] not in before]
    report = action_report(action, handled, new, waited)
    print(report.text)
    return 0 if report.done else 1


async def _handled(cluster: Cluster, name: str, resource_version: str) -> dict[str, Any]:
    """The object once the operator removed the action annotation: it handles an action, posts its
    events, then removes the annotation (reconcile.py), so the events are there by then."""
    while True:
        async with watch.Watch().stream(
            cluster.custom.list_namespaced_custom_object,
            c.GROUP,
            c.VERSION,
            cluster.namespace,
            c.PLURAL,
            field_selector=f"metadata.name={name}",
            resource_version=resource_version,
        ) as stream:
            async for event in stream:
                obj: dict[str, Any] = event["raw_object"]
                if event["type"] == "DELETED":
                    raise ApiException(status=404, reason="Not Found (deleted while waiting)")
                annotations = obj["metadata"].get("annotations") or {}
                if c.ANNOTATION_ACTION not in annotations:
                    return obj
                resource_version = obj["metadata"]["resourceVersion"]


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _context_namespace(args: argparse.Namespace) -> str | None:
    contexts, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
    chosen = (
        next((item for item in contexts if item["name"] == args.context), active) if args.context else active
    )
    namespace = (chosen or {}).get("context", {}).get("namespace")
    return str(namespace) if namespace else None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except ApiException as error:
        what = f"modeldeployment {args.name}" if getattr(args, "name", None) else "modeldeployments"
        print(f"error: {error.status} {error.reason}: {what}", file=sys.stderr)
        return 1
    except ConfigException as error:
        print(f"error: kubeconfig: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0 if args.command == "watch" else 130


if __name__ == "__main__":
    sys.exit(main())
