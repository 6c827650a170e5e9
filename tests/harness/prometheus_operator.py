"""Monitoring as kube-prometheus-stack sets it up, on the real node: prometheus-operator and a
Prometheus it runs as a StatefulSet, selecting monitors by a `release` label.

- prometheus-operator and prometheus-config-reloader v0.85.0 and the CRDs of that release, built
  from their Go module by `make node-tools` (tools/prometheus-operator);
- the Prometheus image holds bin/prometheus3, Prometheus 3.16 (the same build the host-run tier
  uses): Debian's 2.42 lacks Kubernetes discovery and is older than any Prometheus this operator
  release supports (its tested versions run from v2.45 to v3.5.0; it only turns features on by
  minimum version, so a newer 3.x gets the same configuration);
- the operator runs as a Deployment with a ClusterRole limited to what its Prometheus controller
  uses (the Alertmanager, ThanosRuler and PrometheusAgent controllers stay off: no CRD, no
  permission), in a namespace that enforces the `restricted` Pod Security Standard, as does the
  Prometheus' own namespace;
- `Stack` names what a kube-prometheus-stack release makes and Vigil's docs rely on: the
  Prometheus `<release>-kube-prometheus-prometheus` and its Service of that name on 9090, with
  its monitor and rule selectors at `release: <release>` in every namespace (its defaults).

Images are archives of the static binaries alone (harness.node.binary_image).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.cluster import BIN_DIR
from harness.node import binary_image

VERSION = "v0.85.0"
PROMETHEUS_VERSION = "v3.16.0"  # what bin/prometheus3 is (hack/node-tools.sh)
OPERATOR_IMAGE = f"localhost/vigil/prometheus-operator:{VERSION}"
RELOADER_IMAGE = f"localhost/vigil/prometheus-config-reloader:{VERSION}"
PROMETHEUS_IMAGE = f"localhost/vigil/prometheus:{PROMETHEUS_VERSION}"
CRDS_DIR = BIN_DIR / "prometheus-operator-crds"
# What a Prometheus selects from; the Alertmanager, ThanosRuler and PrometheusAgent CRDs stay out.
CRDS = ("prometheuses", "servicemonitors", "podmonitors", "probes", "prometheusrules", "scrapeconfigs")
OPERATOR_NAMESPACE = "prometheus-operator"
OPERATOR_NAME = "prometheus-operator"
WRITE = ["get", "list", "watch", "create", "update", "patch", "delete"]
RESTRICTED_POD = {
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "runAsGroup": 65534,
    "fsGroup": 65534,
    "seccompProfile": {"type": "RuntimeDefault"},
}


@dataclass(frozen=True)
class Stack:
    """A kube-prometheus-stack release, as far as Vigil's values refer to it."""

    release: str
    namespace: str

    @property
    def prometheus(self) -> str:
        """Its Prometheus resource, ServiceAccount and Service: `<release>-kube-prometheus-prometheus`."""
        return f"{self.release}-kube-prometheus-prometheus"

    @property
    def url(self) -> str:
        return f"http://{self.prometheus}.{self.namespace}:9090"

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Stack:
        """The release the chart values point at: their `prometheusUrl` host names its Service and
        namespace, `monitoring.labels.release` its selector label; they must agree."""
        host = urlsplit(values["prometheusUrl"]).hostname or ""
        service, _, namespace = host.partition(".")
        stack = cls(release=values["monitoring"]["labels"]["release"], namespace=namespace.split(".")[0])
        if service != stack.prometheus:
            raise ValueError(
                f"prometheusUrl names {service!r}, not release {stack.release}'s {stack.prometheus!r}"
            )
        return stack


def image_archives() -> list[Path]:
    """The operator's, the config reloader's and Prometheus' images (archived once per build)."""
    return [
        binary_image(OPERATOR_IMAGE, {"bin/operator": BIN_DIR / "prometheus-operator"}, ["/bin/operator"]),
        # The operator starts the reloader by this path (its `command`), and Prometheus by the
        # image's entrypoint (it sets only `args`).
        binary_image(
            RELOADER_IMAGE,
            {"bin/prometheus-config-reloader": BIN_DIR / "prometheus-config-reloader"},
            ["/bin/prometheus-config-reloader"],
        ),
        binary_image(PROMETHEUS_IMAGE, {"bin/prometheus": BIN_DIR / "prometheus3"}, ["/bin/prometheus"]),
    ]


def crd_files() -> list[Path]:
    files = [CRDS_DIR / f"monitoring.coreos.com_{name}.yaml" for name in CRDS]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing: run `make node-tools`")
    return files


def namespace(name: str) -> dict[str, Any]:
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def operator_objects() -> list[dict[str, Any]]:
    """prometheus-operator: its namespace, ServiceAccount, RBAC and Deployment."""
    labels = {"app.kubernetes.io/name": OPERATOR_NAME}
    monitoring = "monitoring.coreos.com"
    rules = [
        {
            "apiGroups": [monitoring],
            "resources": ["prometheuses", "prometheuses/status", "prometheuses/finalizers"],
            "verbs": ["get", "list", "watch", "update", "patch"],
        },
        {
            "apiGroups": [monitoring],
            "resources": ["servicemonitors", "podmonitors", "probes", "prometheusrules", "scrapeconfigs"],
            "verbs": ["get", "list", "watch"],
        },
        {  # it reports which monitors each Prometheus took (the resources' status)
            "apiGroups": [monitoring],
            "resources": [
                "servicemonitors/status",
                "podmonitors/status",
                "probes/status",
                "scrapeconfigs/status",
            ],
            "verbs": ["get", "update", "patch"],
        },
        {"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": WRITE},
        # The generated configuration (a Secret), the rule files (ConfigMaps), and the Secrets
        # monitors may reference (credentials), in the namespaces it watches.
        {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": WRITE},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]},
        # The governing Service `prometheus-operated` of each StatefulSet.
        {
            "apiGroups": [""],
            "resources": ["services", "services/finalizers"],
            "verbs": ["get", "create", "update", "delete"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    container = {
        "name": "operator",
        "image": OPERATOR_IMAGE,
        "imagePullPolicy": "Never",
        "args": [
            f"--prometheus-config-reloader={RELOADER_IMAGE}",
            "--log-level=info",
        ],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
        "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return [
        namespace(OPERATOR_NAMESPACE),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(OPERATOR_NAME, OPERATOR_NAMESPACE)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": OPERATOR_NAME},
            "rules": rules,
        },
        _cluster_binding(OPERATOR_NAME, OPERATOR_NAMESPACE),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _meta(OPERATOR_NAME, OPERATOR_NAMESPACE, labels),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": OPERATOR_NAME,
                        "securityContext": RESTRICTED_POD,
                        "containers": [container],
                    },
                },
            },
        },
    ]


def prometheus_objects(stack: Stack, scrape_interval: str = "15s") -> list[dict[str, Any]]:
    """The Prometheus of a kube-prometheus-stack release: its RBAC, the resource and its Service."""
    name, selector = stack.prometheus, {"matchLabels": {"release": stack.release}}
    pod_labels = {"app.kubernetes.io/name": "prometheus", "operator.prometheus.io/name": name}
    discovery = ["pods", "services", "endpoints"]
    rules = [
        {"apiGroups": [""], "resources": discovery, "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["get", "list", "watch"],
        },
    ]
    return [
        namespace(stack.namespace),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, stack.namespace)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        },
        _cluster_binding(name, stack.namespace),
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Prometheus",
            "metadata": _meta(name, stack.namespace, {"release": stack.release}),
            "spec": {
                "replicas": 1,
                "image": PROMETHEUS_IMAGE,
                "version": PROMETHEUS_VERSION,
                "imagePullPolicy": "Never",
                "serviceAccountName": name,
                "securityContext": RESTRICTED_POD,
                "portName": "http-web",
                "scrapeInterval": scrape_interval,
                "evaluationInterval": scrape_interval,
                # kube-prometheus-stack's defaults: its release label, in every namespace.
                "serviceMonitorSelector": selector,
                "serviceMonitorNamespaceSelector": {},
                "podMonitorSelector": selector,
                "podMonitorNamespaceSelector": {},
                "probeSelector": selector,
                "probeNamespaceSelector": {},
                "ruleSelector": selector,
                "ruleNamespaceSelector": {},
                "scrapeConfigSelector": selector,
                "scrapeConfigNamespaceSelector": {},
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
                # The one change to what the operator generates, for the tests' time: probe every
                # second, not every 15 s (startup) and 5 s (readiness); merged into its container.
                "containers": [
                    {
                        "name": "prometheus",
                        "startupProbe": {"periodSeconds": 1, "failureThreshold": 300},
                        "readinessProbe": {"periodSeconds": 1},
                    }
                ],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(name, stack.namespace, {"release": stack.release}),
            "spec": {
                "selector": pod_labels,
                "ports": [{"name": "http-web", "port": 9090, "targetPort": 9090}],
            },
        },
    ]


def _meta(name: str, namespace: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, **({"labels": labels} if labels else {})}


def _cluster_binding(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }
