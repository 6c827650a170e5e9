"""Operator settings, read once at start-up from flags or the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_IMAGE = "ghcr.io/vigil-dev/vigil-model-server:0.1.0"
DEFAULT_PROMETHEUS_URL = "http://prometheus.monitoring:9090"


@dataclass(frozen=True)
class Config:
    default_image: str = DEFAULT_IMAGE
    default_prometheus_url: str = DEFAULT_PROMETHEUS_URL
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    metrics_port: int = 8000  # 0 turns the operator's own /metrics off
    liveness_port: int = 8081
    peering: str | None = None  # None: standalone (one replica); a name: Kopf peering for HA
    # `prometheus.io/*` annotations on model server pods, for a Prometheus that discovers pods
    # by annotation. Off: the chart's PodMonitor (or the sample scrape job) is the one path; two
    # paths store every count twice (the built-in query counts each pod once even then).
    scrape_annotations: bool = False

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
            peering=env.get("VIGIL_PEERING") or None,
            scrape_annotations=env_flag(env.get("VIGIL_SCRAPE_ANNOTATIONS", "")),
        )


def env_flag(text: str) -> bool:
    """A boolean environment variable: true, yes, on or 1 (any case) turn it on."""
    return text.strip().lower() in {"1", "true", "yes", "on"}
