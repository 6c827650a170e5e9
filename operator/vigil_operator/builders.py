"""Kubernetes objects the operator owns, as plain dicts from pure functions.

`tests/unit/test_builders.py` compares them with golden YAML files a reader can review.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from vigil_operator import constants as c
from vigil_operator.decisions import ObservedDeployment
from vigil_operator.releases import ModelDeploymentSpec, Release


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns the objects (for names and the owner reference)."""

    name: str
    namespace: str
    uid: str


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def selector_labels(owner: Owner) -> dict[str, str]:
    """Labels that select one ModelDeployment's pods; they never change (selectors are immutable)."""
    return {c.LABEL_MODEL: owner.name}


def common_labels(owner: Owner) -> dict[str, str]:
    return {
        c.LABEL_NAME: "vigil-model-server",
        c.LABEL_INSTANCE: owner.name,
        c.LABEL_COMPONENT: "model-server",
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        **selector_labels(owner),
    }


def spec_hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def deployment_for(owner: Owner, spec: ModelDeploymentSpec, release: Release) -> dict[str, Any]:
    """The Deployment that runs `release` (not necessarily spec's: a rollback runs the stable one)."""
    env = [
        {"name": "MODEL_URI", "value": release.uri},
        {"name": "MODEL_NAME", "value": owner.name},
        {"name": "MODEL_VERSION", "value": release.version},
        {"name": "PORT", "value": str(c.SERVER_PORT)},
    ]
    if release.sha256:
        env.append({"name": "MODEL_SHA256", "value": release.sha256})
    container: dict[str, Any] = {
        "name": "model-server",
        "image": release.image,
        "env": env,
        "ports": [{"name": c.SERVER_PORT_NAME, "containerPort": c.SERVER_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": c.SERVER_PORT_NAME},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        # Endpoints are removed while the pod terminates; keep serving until they are gone,
        # then the server's own SIGTERM handling finishes in-flight requests.
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": c.SERVER_PORT_NAME},
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if spec.resources:
        container["resources"] = spec.resources
    template = {
        "metadata": {
            "labels": {**spec.pod_labels, **common_labels(owner), c.LABEL_VERSION: release.version},
            "annotations": {
                **spec.pod_annotations,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(c.SERVER_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }
    deployment_spec = {
        "replicas": spec.replicas,
        "selector": {"matchLabels": selector_labels(owner)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "progressDeadlineSeconds": spec.progress_deadline_seconds,
        "revisionHistoryLimit": 3,
        "template": template,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": {**common_labels(owner), c.LABEL_VERSION: release.version},
            "annotations": {c.ANNOTATION_SPEC_HASH: spec_hash(deployment_spec)},
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": deployment_spec,
    }


def service_for(owner: Owner) -> dict[str, Any]:
    """The Service in front of whichever release serves."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": common_labels(owner),
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "selector": selector_labels(owner),
            "ports": [
                {"name": c.SERVER_PORT_NAME, "port": 80, "targetPort": c.SERVER_PORT_NAME, "protocol": "TCP"}
            ],
        },
    }


def release_of(deployment: dict[str, Any]) -> Release | None:
    """The release a Deployment's pod template runs (the inverse of `deployment_for`)."""
    try:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
    except (KeyError, IndexError, TypeError):
        return None
    env = {item.get("name"): item.get("value") for item in container.get("env") or []}
    if not env.get("MODEL_VERSION") or not env.get("MODEL_URI"):
        return None
    return Release(
        version=env["MODEL_VERSION"],
        uri=env["MODEL_URI"],
        image=container.get("image", ""),
        sha256=env.get("MODEL_SHA256") or None,
    )


def observe(deployment: dict[str, Any], rollout_started_at: datetime | None = None) -> ObservedDeployment:
    """What a Deployment says about its rollout, the way `kubectl rollout status` reads it.

    The controller keeps a ProgressDeadlineExceeded condition until it sees progress, so a
    condition stamped before the current rollout started (the one that caused a rollback,
    say) does not count against the release rolled out since.
    """
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    up_to_date = status.get("observedGeneration", 0) >= deployment.get("metadata", {}).get("generation", 0)
    updated = status.get("updatedReplicas", 0) or 0
    available = (
        up_to_date
        and updated >= wanted
        and (status.get("replicas", 0) or 0) <= updated
        and (status.get("availableReplicas", 0) or 0) >= updated
    )
    deadline_exceeded = up_to_date and any(
        condition.get("type") == "Progressing"
        and condition.get("reason") == "ProgressDeadlineExceeded"
        and _stamped_after(condition, rollout_started_at)
        for condition in status.get("conditions") or []
    )
    return ObservedDeployment(
        release=release_of(deployment), available=available, deadline_exceeded=deadline_exceeded
    )


def _stamped_after(condition: dict[str, Any], moment: datetime | None) -> bool:
    if moment is None:
        return True
    stamps = [condition.get("lastUpdateTime"), condition.get("lastTransitionTime")]
    times = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in stamps if t]
    # Condition times have whole seconds; the rollout start has milliseconds.
    return bool(times) and max(times) >= moment.replace(microsecond=0) + timedelta(seconds=1)
