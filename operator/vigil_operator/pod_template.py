"""`spec.podTemplate`: what users may change in the model server pods, parsed and merged (pure).

The operator's pods have one container, `model-server`; `env`, `envFrom`, `volumeMounts` and
`resources` of `podTemplate.spec` apply to it (KServe inlines container fields into its predictor
the same way), the other fields to the pod. What the operator needs always wins: its security
context, probes, ports, environment variables, labels, annotations and volumes. The CRD refuses a
podTemplate that collides with them, naming the field; `parse_pod_template` refuses it again (an
object stored before the CRD had these rules is not validated until it changes), and the merge
below puts the operator's values last all the same.

A podTemplate is not part of a release: changing it rolls the pods of whatever release serves, is
not analysed and is never rolled back (docs/reference.md, "podTemplate").
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vigil_operator import constants as c

# Variables the operator sets on the model server (or the server reads for the operator's wiring).
RESERVED_ENV = (
    "MODEL_URI",
    "MODEL_NAME",
    "MODEL_VERSION",
    "MODEL_SHA256",
    "MODEL_ALLOW_UNPINNED_PICKLE",
    "MODEL_FEEDBACK_TOKEN_FILE",
    "MODEL_PVC_ROOT",
    "PORT",
    "MIRROR_URL",
    "STABLE_VERSION",
)
OPERATOR_VOLUMES = (c.TMP_VOLUME, c.FEEDBACK_VOLUME, c.MODEL_PVC_VOLUME)
OPERATOR_MOUNT_PATHS = ("/tmp", c.FEEDBACK_TOKEN_DIR, c.MODEL_PVC_ROOT)
# Labels the operator sets on its pods besides vigil.dev/* (which select them).
OWNED_LABELS = (c.LABEL_NAME, c.LABEL_INSTANCE, c.LABEL_COMPONENT, c.LABEL_MANAGED_BY)
OPERATOR_PREFIX = c.GROUP + "/"
CONTAINER_FIELDS = ("env", "envFrom", "volumeMounts", "resources")
POD_FIELDS = (
    "nodeSelector",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
    "serviceAccountName",
    "automountServiceAccountToken",
    "imagePullSecrets",
    "priorityClassName",
)
SPEC_FIELDS = (*CONTAINER_FIELDS, *POD_FIELDS, "volumes", "initContainers")
# Restricted Pod Security for init containers: what the operator starts from, and the one
# capability that profile lets a container add back.
RESTRICTED_SECURITY = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
ADDABLE_CAPABILITIES = ("NET_BIND_SERVICE",)
USER_SECURITY_FIELDS = ("readOnlyRootFilesystem", "runAsUser", "runAsGroup")


class InvalidPodTemplate(ValueError):
    """A podTemplate the operator refuses; the message names the field."""


@dataclass(frozen=True)
class PodTemplate:
    """`spec.podTemplate`, by where each part goes. Empty: the pods are exactly the operator's."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    # The model server container's: env, envFrom, volumeMounts, resources.
    container: Mapping[str, Any] = field(default_factory=dict)
    # The pod's: volumes, initContainers and POD_FIELDS.
    pod: Mapping[str, Any] = field(default_factory=dict)

    @property
    def resources(self) -> dict[str, Any]:
        return dict(self.container.get("resources") or {})


def parse_pod_template(raw: Any) -> PodTemplate:
    """Typed `spec.podTemplate`, refused (InvalidPodTemplate) where it collides with the operator."""
    if raw is None:
        return PodTemplate()
    path = "spec.podTemplate"
    template = _object(raw, path)
    _known(template, ("metadata", "spec"), path)
    metadata = _object(template.get("metadata"), f"{path}.metadata")
    _known(metadata, ("labels", "annotations"), f"{path}.metadata")
    spec = _object(template.get("spec"), f"{path}.spec")
    _known(spec, SPEC_FIELDS, f"{path}.spec")
    labels = _strings(metadata.get("labels"), f"{path}.metadata.labels")
    annotations = _strings(metadata.get("annotations"), f"{path}.metadata.annotations")
    for key in labels:
        if key.startswith(OPERATOR_PREFIX) or key in OWNED_LABELS:
            raise InvalidPodTemplate(f"{path}.metadata.labels: {key} is the operator's label")
    for key in annotations:
        if key.startswith(OPERATOR_PREFIX):
            raise InvalidPodTemplate(f"{path}.metadata.annotations: {key} is the operator's annotation")
    for index, name in enumerate(_names(spec.get("env"), f"{path}.spec.env")):
        if name in RESERVED_ENV:
            raise InvalidPodTemplate(f"{path}.spec.env[{index}].name: {name} is set by the operator")
    for index, name in enumerate(_names(spec.get("volumes"), f"{path}.spec.volumes")):
        if name in OPERATOR_VOLUMES:
            raise InvalidPodTemplate(f"{path}.spec.volumes[{index}].name: {name} is the operator's volume")
    _check_mounts(spec.get("volumeMounts"), f"{path}.spec.volumeMounts")
    for index, init in enumerate(_items(spec.get("initContainers"), f"{path}.spec.initContainers")):
        where = f"{path}.spec.initContainers[{index}]"
        if init.get("name") == c.CONTAINER_NAME:
            raise InvalidPodTemplate(f"{where}.name: {c.CONTAINER_NAME} is the operator's container")
        _check_mounts(init.get("volumeMounts"), f"{where}.volumeMounts")
        _check_security(init.get("securityContext"), f"{where}.securityContext")
    return PodTemplate(
        labels=labels,
        annotations=annotations,
        container={key: copy.deepcopy(spec[key]) for key in CONTAINER_FIELDS if _given(spec.get(key))},
        pod={
            key: copy.deepcopy(spec[key])
            for key in (*POD_FIELDS, "volumes", "initContainers")
            if _given(spec.get(key))
        },
    )


def pod_metadata(
    template: PodTemplate,
    *,
    older_labels: Mapping[str, str],
    older_annotations: Mapping[str, str],
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> dict[str, dict[str, str]]:
    """The pod template's labels and annotations: the user's (spec.podLabels/podAnnotations, then
    podTemplate.metadata), then the operator's.

    A user's key in the operator's namespace (vigil.dev/*, and the app.kubernetes.io labels it
    sets) is left out, not merely overridden: a shadow's pods must lack `vigil.dev/model`, or the
    ModelDeployment's Service would send them user requests.
    """
    return {
        "labels": {**_users(older_labels, OWNED_LABELS), **_users(template.labels, OWNED_LABELS), **labels},
        "annotations": {**_users(older_annotations), **_users(template.annotations), **annotations},
    }


def _users(metadata: Mapping[str, str], owned: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        key: value
        for key, value in metadata.items()
        if not key.startswith(OPERATOR_PREFIX) and key not in owned
    }


def customise_container(container: dict[str, Any], template: PodTemplate) -> dict[str, Any]:
    """The model server container with the user's env, envFrom and volumeMounts after the operator's.

    After, so the user's values may refer to the operator's ($(MODEL_NAME)); a user's variable with
    a reserved name, or a mount that collides with the operator's by name or path, is left out.
    `resources` is chosen by the caller (it has two older sources).
    """
    merged = dict(container)
    env = _without(
        template.container.get("env"), "name", {*RESERVED_ENV, *(item["name"] for item in container["env"])}
    )
    if env:
        merged["env"] = [*container["env"], *env]
    if template.container.get("envFrom"):
        merged["envFrom"] = copy.deepcopy(list(template.container["envFrom"]))
    mounts = _user_mounts(template.container.get("volumeMounts"), container["volumeMounts"])
    if mounts:
        merged["volumeMounts"] = [*container["volumeMounts"], *mounts]
    return merged


def customise_pod(pod: dict[str, Any], template: PodTemplate, selector: Mapping[str, str]) -> dict[str, Any]:
    """The pod spec with the user's pod settings; the operator's keys (containers, security context,
    grace period) are never replaced, and the API token stays out unless the user mounts it.

    A topology spread constraint without a labelSelector counts this Deployment's own pods
    (`selector`): without one it would count none, and spread nothing.
    """
    merged = dict(pod)
    volumes = _without(template.pod.get("volumes"), "name", {v["name"] for v in pod.get("volumes", [])})
    if volumes:
        merged["volumes"] = [*pod.get("volumes", []), *volumes]
    inits = [
        init_container(item, pod.get("volumes", [])) for item in template.pod.get("initContainers") or []
    ]
    if inits:
        merged["initContainers"] = inits
    for key in POD_FIELDS:
        value = template.pod.get(key)
        if _given(value) and key not in pod:
            merged[key] = copy.deepcopy(value)
    # The one setting of the operator's a user may change: its default keeps the API token out.
    if template.pod.get("automountServiceAccountToken") is True:
        merged["automountServiceAccountToken"] = True
    if "topologySpreadConstraints" in merged:
        merged["topologySpreadConstraints"] = [
            {**item, "labelSelector": {"matchLabels": dict(selector)}}
            if "labelSelector" not in item
            else item
            for item in merged["topologySpreadConstraints"]
        ]
    return merged


def init_container(
    user: Mapping[str, Any], operator_volumes: Iterable[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """A user's init container, its security context held to restricted Pod Security.

    The user may set readOnlyRootFilesystem, runAsUser (not 0), runAsGroup, a Localhost seccomp
    profile and add NET_BIND_SERVICE; everything else is the restricted profile's.
    """
    container = {key: copy.deepcopy(value) for key, value in user.items() if key != "securityContext"}
    reserved = {v["name"] for v in operator_volumes}
    if "volumeMounts" in container:
        container["volumeMounts"] = [m for m in container["volumeMounts"] if m.get("name") not in reserved]
        if not container["volumeMounts"]:
            del container["volumeMounts"]
    asked = user.get("securityContext") or {}
    security: dict[str, Any] = copy.deepcopy(RESTRICTED_SECURITY)
    security |= {key: asked[key] for key in USER_SECURITY_FIELDS if key in asked}
    if security.get("runAsUser") == 0:
        del security["runAsUser"]
    added = [cap for cap in (asked.get("capabilities") or {}).get("add") or [] if cap in ADDABLE_CAPABILITIES]
    if added:
        security["capabilities"]["add"] = sorted(set(added))
    profile = asked.get("seccompProfile") or {}
    if profile.get("type") == "Localhost":
        security["seccompProfile"] = dict(profile)
    container["securityContext"] = security
    return container


def _user_mounts(user: Any, operator: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The user's mounts that neither use the operator's volumes nor overlap its mount paths."""
    names = {m["name"] for m in operator}
    paths = {m["mountPath"] for m in operator}
    return [
        copy.deepcopy(dict(m))
        for m in user or []
        if m.get("name") not in names and not any(_overlaps(m.get("mountPath", ""), p) for p in paths)
    ]


def _without(items: Any, key: str, taken: set[str]) -> list[dict[str, Any]]:
    return [copy.deepcopy(dict(item)) for item in items or [] if item.get(key) not in taken]


def _overlaps(path: str, reserved: str) -> bool:
    """Whether a mount at `path` is at, above or below `reserved`."""
    path, reserved = path.rstrip("/") or "/", reserved.rstrip("/")
    return path in (reserved, "/") or path.startswith(reserved + "/") or reserved.startswith(path + "/")


def _check_mounts(mounts: Any, path: str) -> None:
    for index, mount in enumerate(_items(mounts, path)):
        if mount.get("name") in OPERATOR_VOLUMES:
            raise InvalidPodTemplate(f"{path}[{index}].name: {mount['name']} is the operator's volume")
        mount_path = str(mount.get("mountPath", ""))
        if any(_overlaps(mount_path, reserved) for reserved in OPERATOR_MOUNT_PATHS):
            raise InvalidPodTemplate(
                f"{path}[{index}].mountPath: {mount_path} overlaps a mount of the operator"
            )


def _check_security(security: Any, path: str) -> None:
    """Restricted Pod Security, as the CRD's rules say it."""
    if security is None:
        return
    security = _object(security, path)
    if security.get("privileged") is True:
        raise InvalidPodTemplate(f"{path}.privileged must not be true")
    if security.get("allowPrivilegeEscalation") is True:
        raise InvalidPodTemplate(f"{path}.allowPrivilegeEscalation must not be true")
    if security.get("runAsNonRoot") is False:
        raise InvalidPodTemplate(f"{path}.runAsNonRoot must not be false")
    if security.get("runAsUser") == 0:
        raise InvalidPodTemplate(f"{path}.runAsUser must not be 0 (root)")
    added = (security.get("capabilities") or {}).get("add") or []
    if any(cap not in ADDABLE_CAPABILITIES for cap in added):
        raise InvalidPodTemplate(f"{path}.capabilities.add may contain NET_BIND_SERVICE only")
    if (security.get("seccompProfile") or {}).get("type", "RuntimeDefault") not in (
        "RuntimeDefault",
        "Localhost",
    ):
        raise InvalidPodTemplate(f"{path}.seccompProfile.type must be RuntimeDefault or Localhost")


def _given(value: Any) -> bool:
    """Set to something: an empty list, map or string is the same as leaving the field out."""
    return value is not None and value != [] and value != {} and value != ""


def _object(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidPodTemplate(f"{path} must be an object")
    return value


def _known(value: dict[str, Any], keys: tuple[str, ...], path: str) -> None:
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise InvalidPodTemplate(f"{path}.{unknown[0]} is not supported (supported: {', '.join(keys)})")


def _strings(value: Any, path: str) -> dict[str, str]:
    mapping = _object(value, path)
    if not all(isinstance(v, str) for v in mapping.values()):
        raise InvalidPodTemplate(f"{path} values must be strings")
    return dict(mapping)


def _items(value: Any, path: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidPodTemplate(f"{path} must be a list of objects")
    return value


def _names(value: Any, path: str) -> list[str]:
    items = _items(value, path)
    for index, item in enumerate(items):
        if not isinstance(item.get("name"), str):
            raise InvalidPodTemplate(f"{path}[{index}].name is required")
    return [item["name"] for item in items]
