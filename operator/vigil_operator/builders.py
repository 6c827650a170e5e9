"""Kubernetes objects the operator owns, as plain dicts from pure functions.

`tests/unit/test_builders.py` compares them with golden YAML files a reader can review.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from vigil_operator import constants as c
from vigil_operator.decisions import ObservedDeployment, release_id
from vigil_operator.pod_template import customise_container, customise_pod, pod_metadata
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


def candidate_name(owner: Owner) -> str:
    """The candidate's Deployment and Service (Shadow and Canary)."""
    return owner.name + c.CANDIDATE_SUFFIX


def candidate_selector_labels(owner: Owner) -> dict[str, str]:
    """What selects the candidate's pods, as a shadow and as a canary alike (selectors are immutable)."""
    return {c.LABEL_CANDIDATE_OF: owner.name}


def candidate_pod_labels(owner: Owner, *, in_service: bool) -> dict[str, str]:
    """A shadow's pods lack the label the ModelDeployment's Service selects on, so it sends them no
    user request; a canary's carry it, so the Service spreads requests over both tracks' pods."""
    labels = {**common_labels(owner), **candidate_selector_labels(owner), c.LABEL_TRACK: c.TRACK_CANDIDATE}
    if not in_service:
        del labels[c.LABEL_MODEL]
    return labels


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
FEEDBACK_VOLUME = c.FEEDBACK_VOLUME
FEEDBACK_TOKEN_MODE = 0o440
# Where a pvc://CLAIM/PATH model's claim is mounted (read-only): the model server reads
# MODEL_PVC_ROOT/CLAIM/PATH, and MODEL_PVC_ROOT defaults to this folder.
MODEL_PVC_VOLUME = "model-pvc"
MODEL_PVC_ROOT = "/var/lib/vigil/pvc"
# The group that may read the mounted token: the model server image's user (65532). fsGroup makes
# it a supplementary group of every container process, so a custom image's UID can read it too.
POD_FS_GROUP = 65532


def model_pvc_mount(uri: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The volume and the volume mount a pvc://CLAIM/PATH model needs, as ([volume], [mount]):
    CLAIM read-only at MODEL_PVC_ROOT/CLAIM; ([], []) for any other URI."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme.lower() != "pvc" or not parts.netloc:
        return [], []
    volume = {
        "name": MODEL_PVC_VOLUME,
        "persistentVolumeClaim": {"claimName": parts.netloc, "readOnly": True},
    }
    mount = {"name": MODEL_PVC_VOLUME, "mountPath": f"{MODEL_PVC_ROOT}/{parts.netloc}", "readOnly": True}
    return [volume], [mount]


def deployment_for(
    owner: Owner,
    spec: ModelDeploymentSpec,
    release: Release,
    *,
    retries: int = 0,
    scrape_annotations: bool = False,
    default_resources: dict[str, Any] | None = None,
    replicas: int | Literal["spec"] | None = "spec",
    mirror_url: str | None = None,
) -> dict[str, Any]:
    """The main Deployment, behind the Service: it runs `release` (not necessarily spec's: a
    rollback, a shadow or a canary runs the stable one there).

    `replicas` replaces spec's (a canary keeps part of them for the candidate); None leaves them
    out. `mirror_url` (a shadow's candidate Service) makes the servers mirror every request there.
    """
    return _deployment(
        owner,
        spec,
        release,
        name=owner.name,
        selector=selector_labels(owner),
        pod_labels=common_labels(owner),
        replicas=spec.replicas if replicas == "spec" else replicas,
        extra_env=[{"name": "MIRROR_URL", "value": mirror_url}] if mirror_url else [],
        retries=retries,
        scrape_annotations=scrape_annotations,
        default_resources=default_resources,
    )


def candidate_deployment_for(
    owner: Owner,
    spec: ModelDeploymentSpec,
    release: Release,
    *,
    stable_version: str,
    replicas: int,
    in_service: bool,
    retries: int = 0,
    scrape_annotations: bool = False,
    default_resources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The candidate's own Deployment: a shadow (`in_service` False: only its own Service reaches
    it) or a canary (the ModelDeployment's Service selects it beside the stable pods).

    `STABLE_VERSION` lets its servers take mirrored requests and count each label against the
    stable release's prediction for the same id (the paired counts).
    """
    return _deployment(
        owner,
        spec,
        release,
        name=candidate_name(owner),
        selector=candidate_selector_labels(owner),
        pod_labels=candidate_pod_labels(owner, in_service=in_service),
        replicas=replicas,
        extra_env=[{"name": "STABLE_VERSION", "value": stable_version}],
        retries=retries,
        scrape_annotations=scrape_annotations,
        default_resources=default_resources,
        labels={c.LABEL_TRACK: c.TRACK_CANDIDATE},
    )


def _deployment(
    owner: Owner,
    spec: ModelDeploymentSpec,
    release: Release,
    *,
    name: str,
    selector: dict[str, str],
    pod_labels: dict[str, str],
    replicas: int | None,
    extra_env: list[dict[str, str]],
    retries: int,
    scrape_annotations: bool,
    default_resources: dict[str, Any] | None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Deployment of model servers running `release`.

    Its pod template carries the release id (`vigil.dev/release`), which is how the operator
    recognises its rollout whatever admission webhooks change; `retries` is part of that id.
    `replicas` is left out when the spec leaves it unset, so the operator never owns it.
    `scrape_annotations` adds the `prometheus.io/*` annotations (the operator's
    `VIGIL_SCRAPE_ANNOTATIONS`); off by default, since a second scrape path beside the chart's
    PodMonitor stores every count twice. `default_resources` (the operator's
    `--model-server-resources`) applies when the spec sets no `resources`. The feedback token
    Secret is mounted but not referenced in the template otherwise, so rotating it restarts no pod.
    `spec.pod_template` is merged in last (pod_template.py), the operator's own settings winning;
    an empty one changes nothing, so the pods of a spec without it never roll.
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
    env.extend(extra_env)
    pvc_volumes, pvc_mounts = model_pvc_mount(release.uri)
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
            *pvc_mounts,
        ],
    }
    custom = spec.pod_template
    resources = custom.resources or spec.resources or default_resources
    if resources:
        container["resources"] = resources
    template: dict[str, Any] = {
        "metadata": pod_metadata(
            custom,
            older_labels=spec.pod_labels,
            older_annotations=spec.pod_annotations,
            labels={**pod_labels, c.LABEL_VERSION: release.version},
            annotations={
                **(SCRAPE_ANNOTATIONS if scrape_annotations else {}),
                c.ANNOTATION_RELEASE: release_id(release, retries),
            },
        ),
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            "securityContext": {
                "runAsNonRoot": True,
                "fsGroup": POD_FS_GROUP,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [customise_container(container, custom)],
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
                *pvc_volumes,
            ],
        },
    }
    template["spec"] = customise_pod(template["spec"], custom, selector)
    deployment_spec: dict[str, Any] = {} if replicas is None else {"replicas": replicas}
    deployment_spec |= {
        "selector": {"matchLabels": selector},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "progressDeadlineSeconds": spec.progress_deadline_seconds,
        "revisionHistoryLimit": 3,
        "template": template,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": {
                **common_labels(owner),
                **(labels or {}),
                c.LABEL_VERSION: release.version,
                c.LABEL_SPEC_HASH: spec_hash(deployment_spec),
            },
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": deployment_spec,
    }


def service_for(owner: Owner) -> dict[str, Any]:
    """The Service in front of whichever release serves."""
    return _service(owner, owner.name, common_labels(owner), selector_labels(owner))


def candidate_service_for(owner: Owner) -> dict[str, Any]:
    """A shadow's own Service: where the stable servers mirror requests and forward labels."""
    labels = {**common_labels(owner), c.LABEL_TRACK: c.TRACK_CANDIDATE}
    return _service(owner, candidate_name(owner), labels, candidate_selector_labels(owner))


def _service(owner: Owner, name: str, labels: dict[str, str], selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            "selector": selector,
            "ports": [
                {
                    "name": c.SERVER_PORT_NAME,
                    "port": c.SERVICE_PORT,
                    "targetPort": c.SERVER_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def service_url(service: dict[str, Any]) -> str | None:
    """`http://<clusterIP>:<port>` of a Service, or None before it has a ClusterIP.

    By address, not by DNS name: the mirror must work in clusters without cluster DNS (the local
    test clusters have none), and a ClusterIP never changes while the Service exists.
    """
    spec = service.get("spec") or {}
    address = spec.get("clusterIP")
    if not address or address == "None":
        return None
    ports = spec.get("ports") or [{}]
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{ports[0].get('port', c.SERVICE_PORT)}"


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
    # The current template's pods that are available, at most: Deployment status counts updated
    # and available pods apart, so during a roll this may count one surged pod not ready yet.
    in_service = (template_meta.get("labels") or {}).get(c.LABEL_MODEL) is not None
    ready = min(updated, status.get("availableReplicas", 0) or 0) if up_to_date and in_service else 0
    return ObservedDeployment(
        release_id=(template_meta.get("annotations") or {}).get(c.ANNOTATION_RELEASE),
        available=available,
        deadline_exceeded=deadline_exceeded,
        ready_in_service=ready,
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


def needs_apply(live: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    """Whether `live` lacks something of `wanted`: missing, another spec hash, or an owned field
    that differs. Fields of `wanted` only, so what others own never causes an apply."""
    if live is None or _spec_hash_of(live) != _spec_hash_of(wanted):
        return True
    return any(_lookup(live, path) != _lookup(wanted, path) for path in _owned_paths(wanted))


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
