"""`vigil-operator`: runs the operator (Kopf), alone or as one candidate of a leader election.

With `--leader-elect`, Kopf runs only while this process holds the Lease. Losing it ends the
process at once (`os._exit`): every supervisor, handler and watch stops in the same instant,
and the pod restarts as a fresh candidate. Restarting Kopf inside the same process would have
to trust that every task it and the handlers spawned is gone and every cache forgotten;
controller-runtime makes the same choice (it exits when leadership is lost).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from typing import Any

import aiohttp.web
import kopf
import prometheus_client

from vigil_operator import kube, metrics
from vigil_operator.config import (
    Config,
    env_flag,
    non_negative_float,
    positive_float,
    positive_int,
    resources_json,
)
from vigil_operator.election import Elector, own_identity
from vigil_operator.leader import Timing
from vigil_operator.prometheus import AccessPolicy

logger = logging.getLogger("vigil")
DEFAULT_LEASE_NAME = "vigil-operator"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Config.from_env()
    parser = argparse.ArgumentParser(
        prog="vigil-operator",
        description="Roll out scikit-learn models and roll back when accuracy falls (Kopf operator).",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable); env VIGIL_NAMESPACES",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    parser.add_argument(
        "--prometheus-url",
        default=defaults.default_prometheus_url,
        help="Prometheus for objects that name none (env VIGIL_PROMETHEUS_URL; default %(default)s)",
    )
    parser.add_argument(
        "--default-image",
        default=defaults.default_image,
        help="model server image for objects that name none (env VIGIL_DEFAULT_IMAGE; default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=defaults.metrics_port,
        help="port of the operator's own /metrics, 0: off (env VIGIL_METRICS_PORT; default %(default)s)",
    )
    parser.add_argument(
        "--liveness-port",
        type=int,
        default=defaults.liveness_port,
        help="port of /healthz, 0: off (env VIGIL_LIVENESS_PORT; default %(default)s)",
    )
    election = parser.add_argument_group(
        "leader election", "several replicas: one holds a coordination.k8s.io Lease and acts, the others wait"
    )
    election.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=env_flag(os.environ.get("VIGIL_LEADER_ELECT", "")),
        help="act only while holding the Lease (env VIGIL_LEADER_ELECT; default off: act at once)",
    )
    election.add_argument(
        "--leader-elect-resource-name",
        default=DEFAULT_LEASE_NAME,
        metavar="NAME",
        help="the Lease's name (default %(default)s)",
    )
    election.add_argument(
        "--leader-elect-resource-namespace",
        default=os.environ.get("POD_NAMESPACE") or None,
        metavar="NAMESPACE",
        help="the Lease's namespace: the operator's own (default env POD_NAMESPACE)",
    )
    timing = Timing()
    for flag, default, meaning in (
        ("lease-duration", timing.lease_duration, "how long a standby waits after the last renewal it saw"),
        (
            "renew-deadline",
            timing.renew_deadline,
            "the leader stops acting when it could not renew for this long",
        ),
        ("retry-period", timing.retry_period, "between two looks at the Lease"),
    ):
        election.add_argument(
            f"--leader-elect-{flag}",
            type=_seconds,
            default=default,
            metavar="SECONDS",
            help=f"{meaning} (default %(default)ss)",
        )
    parser.add_argument(
        "--scrape-annotations",
        action=argparse.BooleanOptionalAction,
        default=defaults.scrape_annotations,
        help="put prometheus.io/* scrape annotations on model server pods, for a Prometheus that "
        "discovers pods by annotation; keep one scrape path (env VIGIL_SCRAPE_ANNOTATIONS; default off)",
    )
    parser.add_argument(
        "--prometheus-allowed-url",
        action="append",
        default=None,
        metavar="URL",
        help="only query Prometheus at or below this URL (repeatable); a ModelDeployment naming another "
        "gets an error verdict and no request is sent (env VIGIL_PROMETHEUS_ALLOWED_URLS; default: any)",
    )
    parser.add_argument(
        "--prometheus-max-response-bytes",
        type=_positive_int,
        default=defaults.prometheus_policy.max_response_bytes,
        help="read at most this much of a Prometheus answer; more is an error verdict "
        "(env VIGIL_PROMETHEUS_MAX_RESPONSE_BYTES; default %(default)s)",
    )
    parser.add_argument(
        "--prometheus-credentials-over-http",
        action=argparse.BooleanOptionalAction,
        default=defaults.prometheus_policy.credentials_over_http,
        help="send a credentialsSecret's credentials to an http:// (not https) Prometheus; for labs only "
        "(env VIGIL_PROMETHEUS_CREDENTIALS_OVER_HTTP; default off)",
    )
    parser.add_argument(
        "--batch-window-seconds",
        type=_non_negative_float,
        default=defaults.batch_window,
        help="gather the built-in checks due on the same tick that share a Prometheus this long, "
        "then send one query for all; 0: one query per check "
        "(env VIGIL_BATCH_WINDOW_SECONDS; default %(default)s)",
    )
    parser.add_argument(
        "--prometheus-concurrency",
        type=_positive_int,
        default=defaults.prometheus_concurrency,
        help="batched queries in flight at once to all Prometheus servers together; each server "
        "gets at most 2 (env VIGIL_PROMETHEUS_CONCURRENCY; default %(default)s)",
    )
    parser.add_argument(
        "--model-server-resources",
        type=_resources,
        default=defaults.model_server_resources,
        metavar="JSON",
        help="resources of model server containers whose spec sets none, as JSON; {} for none "
        "(env VIGIL_MODEL_SERVER_RESOURCES; default %(default)s)",
    )
    parser.add_argument(
        "--api-timeout",
        type=_seconds,
        default=defaults.api_timeout_seconds,
        metavar="SECONDS",
        help="give up a Kubernetes API call after this; the round is retried with backoff "
        "(env VIGIL_API_TIMEOUT; default %(default)s)",
    )
    parser.add_argument(
        "--status-heartbeat",
        type=_seconds,
        default=defaults.status_heartbeat_seconds,
        metavar="SECONDS",
        help="write a check that changed nothing a reader needs to status at most this often "
        "(env VIGIL_STATUS_HEARTBEAT; default %(default)s)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if args.prometheus_allowed_url is None:
        args.prometheus_allowed_url = list(defaults.prometheus_policy.allowed_urls)
    try:
        args.leader_elect_timing = Timing(
            args.leader_elect_lease_duration, args.leader_elect_renew_deadline, args.leader_elect_retry_period
        )
    except ValueError as error:
        parser.error(str(error))
    if args.leader_elect and not args.leader_elect_resource_namespace:
        parser.error("--leader-elect needs --leader-elect-resource-namespace (or env POD_NAMESPACE)")
    return args


def _seconds(text: str) -> float:
    """A duration in seconds, with or without a trailing `s` (15, 15s, 1.5s)."""
    try:
        return positive_float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    try:
        return positive_int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _non_negative_float(text: str) -> float:
    try:
        return non_negative_float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _resources(text: str) -> dict[str, Any]:
    try:
        return resources_json(text)
    except (ValueError, json.JSONDecodeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    defaults = Config.from_env()
    namespaces = tuple(args.namespace) or defaults.namespaces
    if args.all_namespaces:
        namespaces = ()
    config = Config(
        default_image=args.default_image,
        default_prometheus_url=args.prometheus_url,
        namespaces=namespaces,
        metrics_port=args.metrics_port,
        liveness_port=args.liveness_port,
        scrape_annotations=args.scrape_annotations,
        prometheus_policy=AccessPolicy(
            allowed_urls=tuple(args.prometheus_allowed_url),
            max_response_bytes=args.prometheus_max_response_bytes,
            credentials_over_http=args.prometheus_credentials_over_http,
        ),
        model_server_resources=args.model_server_resources,
        batch_window=args.batch_window_seconds,
        prometheus_concurrency=args.prometheus_concurrency,
        api_timeout_seconds=args.api_timeout,
        api_max_in_flight=defaults.api_max_in_flight,
        retry_base_seconds=defaults.retry_base_seconds,
        retry_cap_seconds=defaults.retry_cap_seconds,
        status_heartbeat_seconds=args.status_heartbeat,
        secret_recheck_seconds=defaults.secret_recheck_seconds,
    )
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("vigil").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from vigil_operator import handlers  # noqa: F401 - registers the Kopf handlers

    sys.exit(asyncio.run(run(config, args)))


async def run(config: Config, args: argparse.Namespace) -> int:
    """Serve /healthz and /metrics from the start (a standby is alive too), then run Kopf:
    at once, or once the Lease is ours. Returns the exit code."""
    if config.metrics_port:
        prometheus_client.start_http_server(config.metrics_port)
    health = await serve_health(config.liveness_port)
    try:
        if not args.leader_elect:
            metrics.LEADER.set(1)
            await kopf_operator(config)
            return 0
        return await run_elected(config, args)
    finally:
        if health is not None:
            await health.cleanup()


async def run_elected(config: Config, args: argparse.Namespace) -> int:
    api = await kube.new_client()
    elector = Elector(
        api,
        args.leader_elect_resource_namespace,
        args.leader_elect_resource_name,
        own_identity(),
        args.leader_elect_timing,
    )
    logger.info(
        "standing by as %s until the Lease %s/%s is ours", elector.identity, elector.namespace, elector.name
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    acquiring = asyncio.create_task(elector.acquire(), name="vigil:acquire")
    stopping = asyncio.create_task(stop.wait(), name="vigil:stop")
    await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not acquiring.done():  # asked to stop while standing by: nothing to hand over
        acquiring.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acquiring
        await api.close()
        return 0
    stopping.cancel()
    acquiring.result()  # an unexpected error ends the process here, never leads without the Lease
    # Created before Kopf starts, so Kopf's shutdown (which cancels every task made after it
    # started) leaves the renewals alone. On SIGTERM (also one that came just now: `stop` is
    # its flag) Kopf stops its watches, our cleanup handler lets rounds in flight finish, and
    # Kopf returns.
    renewing = asyncio.create_task(elector.keep_leading(), name="vigil:renew")
    operator = asyncio.create_task(kopf_operator(config, stop), name="vigil:kopf")
    await asyncio.wait({renewing, operator}, return_when=asyncio.FIRST_COMPLETED)
    if renewing.done():
        # The other replicas may take the Lease once it expires: stop acting now, all at once.
        logger.critical("leadership lost: exiting so that nothing of this replica acts any more")
        logging.shutdown()
        os._exit(1)
    renewing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await renewing
    logger.info("stopped acting at %.3f; releasing the Lease", time.time())
    await elector.release()  # after Kopf and every supervisor stopped, never before
    await api.close()
    return 0 if operator.exception() is None else 1


async def kopf_operator(config: Config, stop: asyncio.Event | None = None) -> None:
    """Kopf with its own peering off: leader election (or a single replica) is the guard."""
    await kopf.operator(
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        standalone=True,
        stop_flag=stop,
        memo=kopf.Memo(config=config),
    )


async def serve_health(port: int) -> aiohttp.web.AppRunner | None:
    """/healthz for the liveness probe: the process and its event loop answer. A standby
    answers too (it is alive, only waiting); `leading` tells which replica acts."""
    if not port:
        return None

    async def healthz(_: aiohttp.web.Request) -> aiohttp.web.Response:
        leading = next(iter(metrics.LEADER.collect())).samples[0].value == 1
        return aiohttp.web.json_response({"leading": leading})

    app = aiohttp.web.Application()
    app.add_routes([aiohttp.web.get("/healthz", healthz)])
    runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "0.0.0.0", port).start()  # the kubelet probes the pod IP
    return runner


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
