"""`vigil-operator`: runs the operator (a thin wrapper around `kopf run`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import random

import kopf

from vigil_operator.config import Config, positive_float, positive_int, resources_json
from vigil_operator.prometheus import AccessPolicy


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
    parser.add_argument(
        "--peering",
        default=defaults.peering,
        help="Kopf peering name for several replicas (HA); without it the operator runs standalone",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="Kopf peering priority; the highest live replica works, the others wait. "
        "Default with --peering: random, so two replicas never tie (a tie pauses both)",
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
    return args


def _positive_int(text: str) -> int:
    try:
        return positive_int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _seconds(text: str) -> float:
    try:
        return positive_float(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _resources(text: str) -> dict:
    try:
        return resources_json(text)
    except (ValueError, json.JSONDecodeError) as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def peering_priority(requested: int | None) -> int:
    """The given priority, or a random one: Kopf pauses every peer when priorities tie."""
    return requested if requested is not None else random.SystemRandom().randint(1, 1_000_000)


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
        peering=args.peering,
        scrape_annotations=args.scrape_annotations,
        prometheus_policy=AccessPolicy(
            allowed_urls=tuple(args.prometheus_allowed_url),
            max_response_bytes=args.prometheus_max_response_bytes,
            credentials_over_http=args.prometheus_credentials_over_http,
        ),
        model_server_resources=args.model_server_resources,
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

    kopf.run(
        clusterwide=not namespaces,
        namespaces=list(namespaces),
        standalone=not config.peering,
        peering_name=config.peering,
        priority=peering_priority(args.priority) if config.peering else None,
        liveness_endpoint=f"http://0.0.0.0:{config.liveness_port}/healthz" if config.liveness_port else None,
        memo=kopf.Memo(config=config),
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
