"""Operator settings, read once at start-up from flags or the environment."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from vigil_operator.prometheus import DEFAULT_MAX_RESPONSE_BYTES, AccessPolicy

DEFAULT_IMAGE = "ghcr.io/vigil-dev/vigil-model-server:0.1.0"
DEFAULT_PROMETHEUS_URL = "http://prometheus.monitoring:9090"
# Model server pods whose spec sets no `resources`: Burstable, not BestEffort (the first evicted).
# A Python server with scikit-learn and a small model uses about 150 MiB; the request reserves
# that with headroom, the limit keeps one pod from taking a node's memory. No CPU limit: CFS
# throttling would stall the health probes of a busy server (docs/operations.md).
DEFAULT_MODEL_SERVER_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


@dataclass(frozen=True)
class Config:
    default_image: str = DEFAULT_IMAGE
    default_prometheus_url: str = DEFAULT_PROMETHEUS_URL
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    metrics_port: int = 8000  # 0 turns the operator's own /metrics off
    liveness_port: int = 8081
    # `prometheus.io/*` annotations on model server pods, for a Prometheus that discovers pods
    # by annotation. Off: the chart's PodMonitor (or the sample scrape job) is the one path; two
    # paths store every count twice (the built-in query counts each pod once even then).
    scrape_annotations: bool = False
    # Where checks may go and how much of an answer is read, whatever a ModelDeployment asks.
    prometheus_policy: AccessPolicy = field(default_factory=AccessPolicy)
    # Resources of model server containers whose spec sets none; {} leaves them unset.
    model_server_resources: dict[str, Any] = field(
        default_factory=lambda: dict(DEFAULT_MODEL_SERVER_RESOURCES)
    )
    # Built-in checks due on the same tick that share a Prometheus go out as one query, gathered
    # for up to this long (docs/operations.md, "Batched analysis"); 0 turns batching off.
    batch_window: float = 1.0
    # Batched queries in flight at once, to all Prometheus servers together.
    prometheus_concurrency: int = 16
    # Every Kubernetes API call (ours and Kopf's) gives up after this; the round is retried.
    api_timeout_seconds: float = 30.0
    # Kubernetes API calls of the operator's own under way at once; the rest wait their turn.
    api_max_in_flight: int = 32
    # A failed round is retried after base x 2^(n-1) seconds (n failures in a row), up to the cap,
    # with jitter (pacing.retry_delay).
    retry_base_seconds: float = 1.0
    retry_cap_seconds: float = 300.0
    # A check that changed nothing a reader needs is written to status at most this often.
    status_heartbeat_seconds: float = 300.0
    # The feedback token Secret is read again (is it still there?) at most this often.
    secret_recheck_seconds: float = 600.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        namespaces = tuple(ns for ns in env.get("VIGIL_NAMESPACES", "").replace(",", " ").split() if ns)
        return cls(
            default_image=env.get("VIGIL_DEFAULT_IMAGE") or DEFAULT_IMAGE,
            default_prometheus_url=env.get("VIGIL_PROMETHEUS_URL") or DEFAULT_PROMETHEUS_URL,
            namespaces=namespaces,
            metrics_port=int(env.get("VIGIL_METRICS_PORT", "8000")),
            liveness_port=int(env.get("VIGIL_LIVENESS_PORT", "8081")),
            scrape_annotations=env_flag(env.get("VIGIL_SCRAPE_ANNOTATIONS", "")),
            prometheus_policy=AccessPolicy(
                allowed_urls=url_list(env.get("VIGIL_PROMETHEUS_ALLOWED_URLS", "")),
                max_response_bytes=positive_int(
                    env.get("VIGIL_PROMETHEUS_MAX_RESPONSE_BYTES") or str(DEFAULT_MAX_RESPONSE_BYTES)
                ),
                credentials_over_http=env_flag(env.get("VIGIL_PROMETHEUS_CREDENTIALS_OVER_HTTP", "")),
            ),
            batch_window=non_negative_float(env.get("VIGIL_BATCH_WINDOW_SECONDS") or "1"),
            prometheus_concurrency=positive_int(env.get("VIGIL_PROMETHEUS_CONCURRENCY") or "16"),
            model_server_resources=resources_json(env["VIGIL_MODEL_SERVER_RESOURCES"])
            if env.get("VIGIL_MODEL_SERVER_RESOURCES")
            else dict(DEFAULT_MODEL_SERVER_RESOURCES),
            api_timeout_seconds=positive_float(env.get("VIGIL_API_TIMEOUT") or "30"),
            api_max_in_flight=positive_int(env.get("VIGIL_API_MAX_IN_FLIGHT") or "32"),
            retry_base_seconds=positive_float(env.get("VIGIL_RETRY_BASE") or "1"),
            retry_cap_seconds=positive_float(env.get("VIGIL_RETRY_CAP") or "300"),
            status_heartbeat_seconds=positive_float(env.get("VIGIL_STATUS_HEARTBEAT") or "300"),
            secret_recheck_seconds=positive_float(env.get("VIGIL_SECRET_RECHECK") or "600"),
        )


def env_flag(text: str) -> bool:
    """A boolean environment variable: true, yes, on or 1 (any case) turn it on."""
    return text.strip().lower() in {"1", "true", "yes", "on"}


def url_list(text: str) -> tuple[str, ...]:
    """URLs separated by commas or whitespace."""
    return tuple(url for url in text.replace(",", " ").split() if url)


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"must be a number of seconds >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """Seconds: a positive number (a trailing `s` is allowed)."""
    try:
        value = float(text.strip().removesuffix("s"))
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"must be a positive number of seconds, got {text!r}")
    return value


def resources_json(text: str) -> dict[str, Any]:
    """A container's `resources` as JSON, e.g. {"requests": {"memory": "256Mi"}}; {} for none."""
    value = json.loads(text)
    if not isinstance(value, dict) or not set(value) <= {"requests", "limits"}:
        raise ValueError(f'resources must be a JSON object with "requests" and/or "limits", got {text!r}')
    if not all(isinstance(part, dict) for part in value.values()):
        raise ValueError(f"requests and limits must be objects, got {text!r}")
    return value
