"""Vigil as users run it, on a cluster whose one node is real.

- a local cluster (harness.cluster) with no kwok node: every pod lands on the real node
  (harness.node), which runs it in a container from the images `make images` built;
- Prometheus 3 (`make node-tools`; Debian's has no Kubernetes discovery) on the host,
  discovering the model-server pods through the API with the scrape job users copy
  (manifests/samples/prometheus-scrape-config.yaml), listening on the node's IP so that the
  operator's pod reaches it; or, with `kube_prometheus_stack_values`, monitoring as
  kube-prometheus-stack users have it: prometheus-operator on the node runs the Prometheus of
  the release those chart values name (harness.prometheus_operator), which finds the model
  servers and the operator through the chart's PodMonitor and ServiceMonitor alone;
- an in-cluster model store: a Deployment and a Service serving the trained model files from an
  image built here (harness.node.model_store_image), reached by its ClusterIP;
- the chart, installed with helm into `vigil-system`, which enforces the `restricted` Pod
  Security Standard, as are the models' and the store's namespaces.

The node's cluster DNS (harness.cluster_dns) resolves Service names in pods; the host reaches
Services by ClusterIP (kube-proxy's rules route them from the host too).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import prometheus_operator
from harness.cluster import REPO_ROOT, LocalCluster
from harness.helm import CHART, Helm
from harness.models import TrainedModel
from harness.node import NodeError, RealNode, log, model_store_image
from harness.processes import ProcessGroup
from harness.prometheus import LocalPrometheus, prometheus3_binary
from harness.waiting import wait_for

IMAGES_DIR = REPO_ROOT / ".work" / "images"
# What `make images` tags and the chart runs by default: its appVersion (hack/versions.py).
IMAGE_TAG = str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])
OPERATOR_IMAGE = f"ghcr.io/vigil-dev/vigil-operator:{IMAGE_TAG}"
SERVER_IMAGE = f"ghcr.io/vigil-dev/vigil-model-server:{IMAGE_TAG}"
OPERATOR_NAMESPACE = "vigil-system"
MODELS_NAMESPACE = "ml"
STORE_NAMESPACE = "model-store"
SCRAPE_JOB = REPO_ROOT / "manifests" / "samples" / "prometheus-scrape-config.yaml"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
# The pod and container security context of the restricted standard, for the store's pod.
RESTRICTED_POD = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def image_archives() -> tuple[Path, Path]:
    """The archives `make images` writes; a clear error when they are not there."""
    archives = (IMAGES_DIR / "vigil-operator.tar", IMAGES_DIR / "vigil-model-server.tar")
    missing = [str(a) for a in archives if not a.exists()]
    if missing:
        raise NodeError(f"{', '.join(missing)} missing: run `make images`")
    return archives


@dataclass
class RealStack:
    """One running real-node stack; `start()` then `stop()` (which undoes a half start too)."""

    workdir: Path
    models: dict[str, TrainedModel]
    # Chart values for a kube-prometheus-stack (docs/operations.md's block): with them, the
    # Prometheus of the release they name runs under prometheus-operator on the node and the chart
    # is installed with them; without, Prometheus 3 runs on the host with the sample scrape job.
    kube_prometheus_stack_values: Path | None = None
    processes: ProcessGroup = field(init=False)
    cluster: LocalCluster | None = None
    node: RealNode | None = None
    prometheus: LocalPrometheus | None = None
    monitoring: prometheus_operator.Stack | None = None
    store_url: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.processes = ProcessGroup(log_dir=self.workdir / "logs")

    # -- start
    def start(self) -> RealStack:
        """The whole stack; on any failure (or Ctrl-C) what was made is removed again."""
        try:
            self.start_cluster()
            self.start_node()
        except BaseException:
            self.stop()
            raise
        return self

    def start_cluster(self) -> None:
        """The cluster alone (the node needs its CA); checks the images are there first."""
        image_archives()
        self._timed("cluster", self._start_cluster)

    def start_node(self) -> None:
        """Then the node, the model store, Prometheus and the chart."""
        archives = image_archives()
        self._timed("node", lambda: self._start_node(archives))
        self._timed("model store", self._start_store)
        if self.kube_prometheus_stack_values is None:
            self._timed("prometheus", self._start_prometheus)
        else:
            self._timed("prometheus-operator", self._start_prometheus_operator)
            self._timed("prometheus", self._start_operated_prometheus)
        self._timed("helm install", self._install_chart)

    def _timed(self, what: str, step: Any) -> None:
        started = time.monotonic()
        step()
        self.timings[what] = round(time.monotonic() - started, 1)
        log(f"{what}: ready in {self.timings[what]:.0f}s")

    def _start_cluster(self) -> None:
        self.cluster = LocalCluster.start(self.workdir / "cluster", nodes=0)
        for namespace in (OPERATOR_NAMESPACE, MODELS_NAMESPACE, STORE_NAMESPACE):
            self.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace, "labels": RESTRICTED},
                }
            )

    def _start_node(self, archives: tuple[Path, ...]) -> None:
        assert self.cluster is not None
        self.node = RealNode(
            self.workdir / "node", self.cluster.kubeconfig, self.cluster.pki, taint=False, images=archives
        )
        self.node.start()

    def _start_store(self) -> None:
        assert self.node is not None
        files = {f"{name}.joblib": m.path for name, m in self.models.items()}
        image, archive = model_store_image(files)
        self.node.import_images(archive)
        labels = {"app.kubernetes.io/name": "model-store"}
        self.apply(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "model-store", "namespace": STORE_NAMESPACE},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "automountServiceAccountToken": False,
                            "securityContext": RESTRICTED_POD,
                            "containers": [
                                {
                                    "name": "store",
                                    "image": image,
                                    "imagePullPolicy": "Never",
                                    "ports": [{"name": "http", "containerPort": 8080}],
                                    "readinessProbe": {"httpGet": {"path": f"/{min(files)}", "port": "http"}},
                                    "securityContext": RESTRICTED_CONTAINER,
                                }
                            ],
                        },
                    },
                },
            }
        )
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "model-store", "namespace": STORE_NAMESPACE},
                "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
            }
        )
        self.wait_rolled_out("model-store", STORE_NAMESPACE)
        ip = self.kubectl(
            "get", "service", "model-store", "-n", STORE_NAMESPACE, "-o", "jsonpath={.spec.clusterIP}"
        )
        self.store_url = f"http://{ip.strip()}"

    def _start_prometheus(self) -> None:
        assert self.cluster is not None
        assert self.node is not None
        job = yaml.safe_load(SCRAPE_JOB.read_text())["scrape_configs"][0]
        job["scrape_interval"] = "1s"  # the tests' analysis runs every few seconds
        for discovery in job["kubernetes_sd_configs"]:
            discovery["kubeconfig_file"] = str(self.cluster.kubeconfig)
            discovery["namespaces"] = {"names": [MODELS_NAMESPACE]}
        self.prometheus = LocalPrometheus.start(
            self.workdir / "prometheus",
            self.processes,
            host=self.node.node_ip,
            jobs=(job,),
            binary=prometheus3_binary(),
        )

    def _start_prometheus_operator(self) -> None:
        """The CRDs of its release, its images on the node, and its Deployment rolled out."""
        assert self.node is not None
        self.node.import_images(*prometheus_operator.image_archives())
        crds = prometheus_operator.crd_files()
        # Server-side: the Prometheus CRD is larger than client-side apply's annotation allows.
        self.kubectl("apply", "--server-side", *(a for crd in crds for a in ("-f", str(crd))))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *(f"crd/{c}.monitoring.coreos.com" for c in prometheus_operator.CRDS),
        )
        for manifest in prometheus_operator.operator_objects():
            self.apply(manifest)
        self.wait_rolled_out(prometheus_operator.OPERATOR_NAME, prometheus_operator.OPERATOR_NAMESPACE)

    def _start_operated_prometheus(self) -> None:
        """The Prometheus of the release the values name; its StatefulSet's pod Ready."""
        assert self.kube_prometheus_stack_values is not None
        values = yaml.safe_load(self.kube_prometheus_stack_values.read_text())
        self.monitoring = stack = prometheus_operator.Stack.from_values(values)
        for manifest in prometheus_operator.prometheus_objects(stack):
            self.apply(manifest)

        def ready() -> bool:
            out = self.kubectl(
                "get",
                "statefulset",
                f"prometheus-{stack.prometheus}",
                "-n",
                stack.namespace,
                "-o",
                "jsonpath={.status.readyReplicas}",
                check=False,
            )
            return out.strip() == "1"

        wait_for(ready, timeout=120, interval=1, what=f"the StatefulSet of Prometheus {stack.prometheus}")

    @property
    def prometheus_url(self) -> str:
        """Where the host reaches the stack's Prometheus (the operated one: its Service's ClusterIP)."""
        if self.prometheus is not None:
            return self.prometheus.url
        assert self.monitoring is not None
        ip = self.kubectl(
            "get",
            "service",
            self.monitoring.prometheus,
            "-n",
            self.monitoring.namespace,
            "-o",
            "jsonpath={.spec.clusterIP}",
        )
        return f"http://{ip.strip()}:9090"

    def _install_chart(self) -> None:
        if self.kube_prometheus_stack_values is not None:
            monitoring = ("-f", str(self.kube_prometheus_stack_values))
        else:
            assert self.prometheus is not None
            monitoring = ("--set", f"prometheusUrl={self.prometheus.url}")
        self.helm(
            "upgrade",
            "--install",
            "vigil",
            str(CHART),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--wait",
            "--timeout",
            "3m",
            # The chart's default images are the ones `make images` built (OPERATOR_IMAGE,
            # SERVER_IMAGE), loaded into containerd: nothing to pull.
            *("--set", "image.pullPolicy=Never"),
            *("--set", f"watchNamespaces={{{MODELS_NAMESPACE}}}"),
            # Every check written to status: the count comparison reads each check's
            # `status.watch`, which the default heartbeat (300 s) lets lag after promotion.
            *("--set-json", "statusHeartbeatSeconds=0.001"),  # --set makes 0.001 a string
            *monitoring,
        )

    def wait_rolled_out(self, deployment: str, namespace: str, timeout: int = 90) -> None:
        """The Deployment exists (an operator may create it a moment later) and `kubectl rollout
        status` says it rolled out; when it does not, the error and the pods' state say why."""
        cluster = self.cluster
        assert cluster is not None
        wait_for(
            lambda: (
                cluster.kubectl("get", "deployment", deployment, "-n", namespace, check=False).returncode == 0
            ),
            timeout=60,
            what=f"deployment {namespace}/{deployment} to exist",
        )
        rollout = ["rollout", "status", f"deployment/{deployment}", "-n", namespace, f"--timeout={timeout}s"]
        done = cluster.kubectl(*rollout, check=False, timeout=timeout + 30)
        if done.returncode != 0:
            pods = self.kubectl("describe", "pods", "-n", namespace, check=False)
            raise NodeError(
                f"deployment {namespace}/{deployment} did not roll out in {timeout}s: {done.stderr.strip()}\n"
                f"{pods[-3000:]}"
            )

    # -- use
    @property
    def helm(self) -> Helm:
        assert self.cluster is not None
        return Helm(self.cluster, self.workdir / "helm")

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        assert self.cluster is not None
        return self.cluster.kubectl(*args, input=input, check=check).stdout

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest))

    def get(self, kind: str, name: str, namespace: str = MODELS_NAMESPACE) -> dict[str, Any]:
        return json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json"))

    def pods(self, selector: str, namespace: str = MODELS_NAMESPACE) -> list[dict[str, Any]]:
        listed = self.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
        return list(json.loads(listed)["items"])

    def model_uri(self, name: str) -> str:
        return f"{self.store_url}/{name}.joblib"

    def service_url(self, name: str) -> str:
        """The model Service's ClusterIP URL (kube-proxy's rules route it from the host too)."""
        ip = self.kubectl("get", "service", name, "-n", MODELS_NAMESPACE, "-o", "jsonpath={.spec.clusterIP}")
        return f"http://{ip.strip()}"

    def feedback_token(self, name: str) -> str:
        """The token the operator generated for `name`'s feedback endpoint (its Secret)."""

        def token() -> str | None:
            out = self.kubectl(
                "get",
                "secret",
                f"{name}-feedback",
                "-n",
                MODELS_NAMESPACE,
                "-o",
                "jsonpath={.data.token}",
                check=False,
            )
            return base64.b64decode(out).decode() if out else None

        return wait_for(token, timeout=60, what=f"the {name}-feedback Secret")

    def wait_status(
        self, name: str, predicate: Any, timeout: float = 240, what: str = "status"
    ) -> dict[str, Any]:
        def current() -> dict[str, Any] | None:
            status = self.get("mdep", name).get("status") or {}
            return status if predicate(status) else None

        return wait_for(current, timeout=timeout, interval=1, what=f"{name}: {what}")

    # -- stop
    def stop(self) -> None:
        """Everything start() made, in reverse: the node first (it needs the API to drain)."""
        if self.node is not None:
            try:
                self.node.stop()
            except Exception as error:  # noqa: BLE001 - the rest must go too
                log(f"stopping the node failed: {error}")
        self.processes.close()
        if self.cluster is not None:
            self.cluster.stop()
