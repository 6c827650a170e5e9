"""The real node's cluster DNS: CoreDNS as a Deployment and the `kube-dns` Service in kube-system.

Users name Services by DNS (`http://<release>-kube-prometheus-prometheus.monitoring:9090` is
what kube-prometheus-stack's docs give), so the node's pods resolve `<svc>.<ns>` and
`<svc>.<ns>.svc.cluster.local` as on any cluster: the kubelet points them at the Service's fixed
ClusterIP (`clusterDNS`), CoreDNS answers from the API (its `kubernetes` plugin). There is no
upstream to forward other names to (this machine reaches no outside resolver): they get
SERVFAIL. Built from the static binary `make node-tools` put in bin/ (tools/coredns), in an
image of that binary alone; the pod meets the `restricted` Pod Security Standard (it listens on
1053, the Service maps 53 to it, so it needs no capability).
"""

from __future__ import annotations

from typing import Any

NAMESPACE = "kube-system"
NAME = "coredns"
# The conventional address (kubeadm's: the tenth of the service range), in the apiserver's static
# band, which dynamic ClusterIP allocation leaves to fixed addresses like this one.
CLUSTER_DNS_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
VERSION = "1.15.0"
IMAGE = f"localhost/vigil/coredns:{VERSION}"
PORT = 1053
LABELS = {"k8s-app": "kube-dns"}
COREFILE = f"""\
.:{PORT} {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        fallthrough in-addr.arpa ip6.arpa
    }}
    prometheus :9153
    cache 30
    loadbalance
}}
"""


def objects(node_selector: dict[str, str], tolerations: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Everything CoreDNS needs, in apply order; its pod lands on the real node."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta()},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "vigil:coredns"},
            # What the kubernetes plugin watches to answer (no pod records: `pods` is off).
            "rules": [
                {"apiGroups": [""], "resources": ["services", "namespaces"], "verbs": ["list", "watch"]},
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "vigil:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "vigil:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(), "data": {"Corefile": COREFILE}},
        deployment(node_selector, tolerations),
        service(),
    ]


def deployment(node_selector: dict[str, str], tolerations: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {
                    "serviceAccountName": NAME,
                    "priorityClassName": "system-cluster-critical",
                    "dnsPolicy": "Default",  # it is the cluster DNS: it must not ask itself
                    "nodeSelector": node_selector,
                    "tolerations": tolerations,
                    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "coredns",
                            "image": IMAGE,
                            "imagePullPolicy": "Never",
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "ports": [
                                {"name": "dns", "containerPort": PORT, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": PORT, "protocol": "TCP"},
                                {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                            ],
                            "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": 8181},
                                "periodSeconds": 1,
                            },
                            "resources": {
                                "requests": {"cpu": "10m", "memory": "32Mi"},
                                "limits": {"memory": "128Mi"},
                            },
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/coredns", "readOnly": True}
                            ],
                        }
                    ],
                    "volumes": [{"name": "config", "configMap": {"name": NAME}}],
                },
            },
        },
    }


def service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": NAMESPACE, "labels": LABELS},
        "spec": {
            "clusterIP": CLUSTER_DNS_IP,
            "selector": LABELS,
            "ports": [
                {"name": "dns", "port": 53, "targetPort": PORT, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "targetPort": PORT, "protocol": "TCP"},
            ],
        },
    }


def _meta() -> dict[str, Any]:
    return {"name": NAME, "namespace": NAMESPACE, "labels": LABELS}
