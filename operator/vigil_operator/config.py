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
        )
