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
from vigil_operator.decisions import ObservedDeployment, release_id
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


def feedback_secret_name(model_deployment: str) -> str:
    """The Secret holding a ModelDeployment's feedback token."""
    return model_deployment + c.FEEDBACK_SECRET_SUFFIX


def spec_hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


# For a Prometheus that discovers pods by annotation (the common `kubernetes-pods` job).
SCRAPE_ANNOTATIONS = {
    "prometheus.io/scrape": "true",
    "prometheus.io/port": str(c.SERVER_PORT),
    "prometheus.io/path": "/metrics",
}


# Seconds a pod gets to stop: the preStop sleep, then the server's own drain of in-flight requests
# (25 s), with headroom; the default 30 s would cut the drain short.
PRE_STOP_SECONDS = 5
SERVER_DRAIN_SECONDS = 25
TERMINATION_GRACE_SECONDS = 45
# Where the feedback token Secret is mounted (read-only; group-readable through fsGroup).
FEEDBACK_VOLUME = "feedback-token"
FEEDBACK_TOKEN_MODE = 0o440
# The group that may read the mounted token: the model server image's user (65532). fsGroup makes
# it a supplementary group of every container process, so a custom image's UID can read it too.
POD_FS_GROUP = 65532


def deployment_for(
    owner: Owner,
    spec: ModelDeploymentSpec,
    release: Release,
    *,
    retries: int = 0,
    scrape_annotations: bool = False,
    default_resources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Deployment that runs `release` (not necessarily spec's: a rollback runs the stable one).

    Its pod template carries the release id (`vigil.dev/release`), which is how the operator
    recognises its rollout whatever admission webhooks change; `retries` is part of that id.
    `replicas` is left out when the spec leaves it unset, so the operator never owns it.
    `scrape_annotations` adds the `prometheus.io/*` annotations (the operator's
    `VIGIL_SCRAPE_ANNOTATIONS`); off by default, since a second scrape path beside the chart's
    PodMonitor stores every count twice. `default_resources` (the operator's
    `--model-server-resources`) applies when the spec sets no `resources`. The feedback token
    Secret is mounted but not referenced in the template otherwise, so rotating it restarts no pod.
    """
    env = [
        {"name": "MODEL_URI", "value": release.uri},
        {"name": "MODEL_NAME", "value": owner.name},
        {"name": "MODEL_VERSION", "value": release.version},
        {"name": "PORT", "value": str(c.SERVER_PORT)},
        {"name": "MODEL_FEEDBACK_TOKEN_FILE", "value": c.FEEDBACK_TOKEN_FILE},
    ]
    if release.sha256:
        env.append({"name": "MODEL_SHA256", "value": release.sha256})
    if spec.allow_unpinned_pickle:
        env.append({"name": "MODEL_ALLOW_UNPINNED_PICKLE", "value": "true"})
    container: dict[str, Any] = {
        "name": "model-server",
        "image": release.image,
        "env": env,
        "ports": [{"name": c.SERVER_PORT_NAME, "containerPort": c.SERVER_PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": c.SERVER_PORT_NAME},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
        # Endpoints are removed while the pod terminates; keep serving until they are gone,
        # then the server's own SIGTERM handling finishes in-flight requests.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        # More patient than readiness: a busy server should leave the endpoints, not be restarted.
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": c.SERVER_PORT_NAME},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": FEEDBACK_VOLUME, "mountPath": c.FEEDBACK_TOKEN_DIR, "readOnly": True},
        ],
    }
    resources = spec.resources or default_resources
    if resources:
        container["resources"] = resources
    template = {
        "metadata": {
            "labels": {**spec.pod_labels, **common_labels(owner), c.LABEL_VERSION: release.version},
            "annotations": {
                **spec.pod_annotations,
                **(SCRAPE_ANNOTATIONS if scrape_annotations else {}),
                c.ANNOTATION_RELEASE: release_id(release, retries),
            },
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            "securityContext": {
                "runAsNonRoot": True,
                "fsGroup": POD_FS_GROUP,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [
                {"name": "tmp", "emptyDir": {}},
                {
                    "name": FEEDBACK_VOLUME,
                    "secret": {
                        "secretName": feedback_secret_name(owner.name),
                        "items": [{"key": c.FEEDBACK_TOKEN_KEY, "path": c.FEEDBACK_TOKEN_KEY}],
                        "defaultMode": FEEDBACK_TOKEN_MODE,
                    },
                },
            ],
        },
    }
    deployment_spec: dict[str, Any] = {} if spec.replicas is None else {"replicas": spec.replicas}
    deployment_spec |= {
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
            "labels": {
                **common_labels(owner),
                c.LABEL_VERSION: release.version,
                c.LABEL_SPEC_HASH: spec_hash(deployment_spec),
            },
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
    template_meta = (spec.get("template") or {}).get("metadata") or {}
    return ObservedDeployment(
        release_id=(template_meta.get("annotations") or {}).get(c.ANNOTATION_RELEASE),
        available=available,
        deadline_exceeded=deadline_exceeded,
    )


def _stamped_after(condition: dict[str, Any], moment: datetime | None) -> bool:
    if moment is None:
        return True
    stamps = [condition.get("lastUpdateTime"), condition.get("lastTransitionTime")]
    times = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in stamps if t]
    # Condition times have whole seconds; the rollout start has milliseconds.
    return bool(times) and max(times) >= moment.replace(microsecond=0) + timedelta(seconds=1)


# A field's path: keys, and `[name]` for the item so named of a list (containers, env, ports).
FieldPath = tuple[str, ...]


def drift(before: dict[str, Any] | None, after: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What applying `wanted` put back in the fields the operator owns, as `path: was -> now`.

    Empty when the operator's own intent changed since its last apply (another spec hash): that
    is a rollout, not drift. Only fields of `wanted` count, so what others own (an HPA's
    replicas, a webhook's env var, `kubectl rollout restart`'s annotation) is never reported.
    """
    if before is None or _spec_hash_of(before) != _spec_hash_of(wanted):
        return []
    changes = []
    for path in _owned_paths(wanted):
        was, now = _lookup(before, path), _lookup(after, path)
        if was != now:
            changes.append(f"{_render(path)}: {_shown(was)} -> {_shown(now)}")
    return changes


def _spec_hash_of(deployment: dict[str, Any]) -> str | None:
    return (deployment.get("metadata", {}).get("labels") or {}).get(c.LABEL_SPEC_HASH)


def _owned_paths(wanted: dict[str, Any]) -> list[FieldPath]:
    meta = wanted.get("metadata", {})
    return [
        *_leaves(meta.get("labels") or {}, ("metadata", "labels")),
        *_leaves(meta.get("annotations") or {}, ("metadata", "annotations")),
        *_leaves(wanted.get("spec") or {}, ("spec",)),
    ]


def _leaves(value: Any, path: FieldPath) -> list[FieldPath]:
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _leaves(item, (*path, key))]
    if isinstance(value, list) and value and all(isinstance(i, dict) and "name" in i for i in value):
        return [leaf for item in value for leaf in _leaves(item, (*path, f"[{item['name']}]"))]
    return [path]


def _lookup(obj: Any, path: FieldPath) -> Any:
    for step in path:
        if step.startswith("[") and isinstance(obj, list):
            name = step[1:-1]
            obj = next((item for item in obj if isinstance(item, dict) and item.get("name") == name), None)
        elif isinstance(obj, dict):
            obj = obj.get(step)
        else:
            return None
    return obj


def _render(path: FieldPath) -> str:
    return ".".join(path).replace(".[", "[")


def _shown(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value, sort_keys=True)
