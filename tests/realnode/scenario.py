"""The real-node tier's scenario, run in a thread beside the rest of the suite.

It needs a machine of its own for minutes (one real node per machine: the kubelet's ports), and
most of those minutes are waits, so it starts with the session (tests/conftest.py) and the tier's
tests, ordered last, assert what it saw. Steps, each recorded in `facts`:

1. a cluster whose only node is real (harness.realstack);
2. an interrupted `python -m harness.node up` (SIGINT while containerd runs) leaves nothing;
3. the node (with its cluster DNS), the model store, monitoring as kube-prometheus-stack users
   have it (prometheus-operator running a Prometheus that selects monitors by `release`), and
   `helm install` of the chart with the values block of docs/operations.md, verbatim;
4. v1 rolled out and promoted, v2 rolled out and promoted, v3 (worse than the threshold)
   rolled back to v2, under steady traffic through the Service's ClusterIP, every check asked
   of that Prometheus by its Service's DNS name, which scrapes the servers through the chart's
   PodMonitor alone; then a known batch of labels, counted by the servers and by the checks;
5. `kubectl logs` and `kubectl exec` into the containers;
5b. a second ModelDeployment whose models live on a PersistentVolumeClaim (a hostPath
   PersistentVolume on the node), `pvc://` URIs: v1 promoted, v2 (worse) rolled back;
6. teardown, then what is left of the node on the machine (nothing, or the test fails);
7. `make demo`'s script on the real path, start to teardown.

The figures also go to .work/realnode-report.json for the closing note.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from e2e.conftest import FAST_ANALYSIS

from harness import cluster_dns, prometheus_operator
from harness.cluster import REPO_ROOT
from harness.helm import kube_prometheus_stack_values
from harness.models import TrainedModel, train
from harness.node import leftovers
from harness.realstack import MODELS_NAMESPACE, OPERATOR_NAMESPACE, RealStack
from harness.traffic import ServiceTraffic
from harness.waiting import wait_for

from .monitoring import count_a_batch, feedback_series, targets

REPORT = REPO_ROOT / ".work" / "realnode-report.json"
MODEL = "iris"
SELECTOR = f"app.kubernetes.io/instance={MODEL}"
OPERATOR_SELECTOR = "app.kubernetes.io/name=vigil"


def train_models(folder: Path) -> dict[str, TrainedModel]:
    """Served from the in-cluster store: good (~0.97), good-too (~0.97), bad (~0.79)."""
    return {
        "good": train(folder / "good.joblib"),
        "good-too": train(folder / "good-too.joblib", seed=1),
        "bad": train(folder / "bad.joblib", shuffled_fraction=0.4),
    }


class RealNodeRun:
    """The scenario in a thread; `fact(key)` waits for it and returns what it recorded."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.facts: dict[str, Any] = {}
        self.error: str | None = None
        self.stack: RealStack | None = None
        self._demo_process: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, name="real-node", daemon=True)

    def start(self) -> RealNodeRun:
        self._thread.start()
        return self

    def fact(self, key: str, timeout: float = 1700) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the real-node scenario did not finish within {timeout:.0f}s")
        if key not in self.facts:
            raise AssertionError(f"the real-node scenario stopped before recording {key!r}:\n{self.error}")
        return self.facts[key]

    def stop(self) -> None:
        """The session ends (early, when interrupted): the node goes now, whatever the scenario
        is doing; the scenario then fails, and its own teardown finds nothing left to remove."""
        if self._thread.is_alive() and self.stack is not None:
            self.stack.stop()
        if self._demo_process is not None and self._demo_process.poll() is None:
            self._demo_process.terminate()
        self._thread.join(120)

    def _record(self, key: str, value: Any) -> None:
        self.facts[key] = value
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        current = json.loads(REPORT.read_text()) if REPORT.exists() else {}
        REPORT.write_text(json.dumps(current | {key: value}, indent=2, default=str))

    def _run(self) -> None:
        REPORT.unlink(missing_ok=True)
        started = time.monotonic()
        models = train_models(self.workdir / "models")
        values = self.workdir / "values-kube-prometheus-stack.yaml"
        values.write_text(kube_prometheus_stack_values())
        self.stack = stack = RealStack(self.workdir / "stack", models, kube_prometheus_stack_values=values)
        try:
            stack.start_cluster()
            self._record("interrupted start", self._interrupted_start(stack))
            stack.start_node()
            self._record("stack start (s)", stack.timings)
            self._inventory(stack)
            rollout = time.monotonic()
            self._rollout_and_rollback(stack, models)
            self._record("rollout and rollback (s)", round(time.monotonic() - rollout, 1))
            self._monitoring(stack)
            self._logs_and_exec(stack)
            claim = time.monotonic()
            self._from_a_claim(stack, models)
            self._record("pvc rollout and rollback (s)", round(time.monotonic() - claim, 1))
        except BaseException:  # noqa: BLE001 - recorded; the tests report it
            self.error = traceback.format_exc()
        finally:
            teardown = time.monotonic()
            stack.stop()
            self._record("teardown (s)", round(time.monotonic() - teardown, 1))
            self._record("leftovers after teardown", leftovers(stack.workdir / "node"))
        if self.error is None:
            try:
                self._record("demo", self._demo())
            except BaseException:  # noqa: BLE001 - recorded; the tests report it
                self.error = traceback.format_exc()
        self._record("scenario (s)", round(time.monotonic() - started, 1))

    def _demo(self) -> dict[str, Any]:
        """hack/demo.py --node real, as `make demo` runs it on a machine that can."""
        workdir = self.workdir / "demo"
        started = time.monotonic()
        argv = [
            sys.executable,
            str(REPO_ROOT / "hack" / "demo.py"),
            "--node",
            "real",
            "--workdir",
            str(workdir),
        ]
        self._demo_process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            output, _ = self._demo_process.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            self._demo_process.terminate()  # the demo tears itself down on SIGTERM
            output, _ = self._demo_process.communicate(timeout=120)
        summary_file = workdir / "summary.json"
        return {
            "exit code": self._demo_process.returncode,
            "seconds": round(time.monotonic() - started, 1),
            "output": output if len(output) <= 8000 else f"{output[:2000]}\n[...]\n{output[-6000:]}",
            "summary": json.loads(summary_file.read_text()) if summary_file.exists() else None,
            "state file left": (workdir / "demo-state.json").exists(),
            "leftovers": leftovers(workdir / "real" / "node"),
        }

    def _interrupted_start(self, stack: RealStack) -> dict[str, Any]:
        """`harness.node up` stopped by SIGINT mid-start (containerd up, the kubelet not yet)."""
        assert stack.cluster is not None
        workdir = self.workdir / "interrupted-node"
        argv = [sys.executable, "-m", "harness.node", "up", "--workdir", str(workdir)]
        argv += ["--kubeconfig", str(stack.cluster.kubeconfig), "--pki", str(stack.cluster.pki)]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "tests")}
        log = self.workdir / "interrupted-node.log"
        with log.open("w") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_for(
                lambda: "containerd" in log.read_text() and "is up" in log.read_text(),
                timeout=120,
                interval=0.2,
                what="the interrupted node's containerd",
            )
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
        return {"exit code": code, "output": log.read_text()[-2000:], "leftovers": leftovers(workdir)}

    def _inventory(self, stack: RealStack) -> None:
        nodes = json.loads(stack.kubectl("get", "nodes", "-o", "json"))["items"]
        self._record(
            "nodes",
            [
                {
                    "name": n["metadata"]["name"],
                    "runtime": n["status"]["nodeInfo"]["containerRuntimeVersion"],
                    "kubelet": n["status"]["nodeInfo"]["kubeletVersion"],
                }
                for n in nodes
            ],
        )
        self._record("kubectl get nodes -o wide", stack.kubectl("get", "nodes", "-o", "wide"))
        namespace = json.loads(stack.kubectl("get", "namespace", OPERATOR_NAMESPACE, "-o", "json"))
        self._record("operator namespace labels", namespace["metadata"].get("labels", {}))
        self._record(
            "operator pods", [_pod_facts(p) for p in stack.pods(OPERATOR_SELECTOR, OPERATOR_NAMESPACE)]
        )
        assert stack.monitoring is not None
        namespaces = (stack.monitoring.namespace, prometheus_operator.OPERATOR_NAMESPACE)
        self._record(
            "monitoring namespace labels",
            {
                n: json.loads(stack.kubectl("get", "namespace", n, "-o", "json"))["metadata"]["labels"]
                for n in namespaces
            },
        )
        self._record(
            "monitoring pods",
            {
                "prometheus-operator": [
                    _pod_facts(p)
                    for p in stack.pods(
                        "app.kubernetes.io/name=prometheus-operator", prometheus_operator.OPERATOR_NAMESPACE
                    )
                ],
                "prometheus": [
                    _pod_facts(p)
                    for p in stack.pods("app.kubernetes.io/name=prometheus", stack.monitoring.namespace)
                ],
                "coredns": [_pod_facts(p) for p in stack.pods("k8s-app=kube-dns", cluster_dns.NAMESPACE)],
            },
        )
        deployment = stack.get("deployment", "vigil-operator", OPERATOR_NAMESPACE)
        self._record("operator args", deployment["spec"]["template"]["spec"]["containers"][0]["args"])

    def _rollout_and_rollback(self, stack: RealStack, models: dict[str, TrainedModel]) -> None:
        stack.apply(_model_deployment(stack, "v1", "good", models))
        wait_for(lambda: _rolled_out(stack, "v1"), timeout=180, interval=1, what="v1 pods Ready")
        self._record("model-server pods", [_pod_facts(p) for p in stack.pods(SELECTOR)])
        self._record("kubectl get pods -A -o wide", stack.kubectl("get", "pods", "-A", "-o", "wide"))
        traffic = ServiceTraffic(stack.service_url(MODEL), MODEL, stack.feedback_token(MODEL)).start()
        marks: dict[str, dict[str, int]] = {}
        try:
            stack.wait_status(MODEL, _promoted("v1"), what="v1 promoted")
            marks["v1 promoted"] = traffic.versions()
            # Rollout: v2, as good, replaces v1 pod by pod, is analysed and promoted.
            stack.apply(_model_deployment(stack, "v2", "good-too", models))
            stack.wait_status(MODEL, _promoted("v2"), what="v2 promoted")
            marks["v2 promoted"] = traffic.versions()
            # Rollback: v3 is worse than the threshold; the operator puts v2 back by itself.
            stack.apply(_model_deployment(stack, "v3", "bad", models))
            status = stack.wait_status(MODEL, lambda s: s.get("phase") == "RolledBack", what="v3 rolled back")
            wait_for(lambda: _rolled_out(stack, "v2"), timeout=180, interval=1, what="v2 on every pod again")
            marks["v2 back on every pod"] = traffic.versions()
        finally:
            traffic.stop()
        self._record("rollback check", status.get("history", [{}])[0])
        self._record(
            "rollback status", {k: status.get(k) for k in ("phase", "stableVersion", "failedVersion")}
        )
        self._record(
            "traffic",
            {
                "requests": traffic.requests,
                "failed": len(traffic.failures),
                "answered per version (infer, cumulative)": marks,
                "failures (first 20)": traffic.failures[:20],
            },
        )

    def _monitoring(self, stack: RealStack) -> None:
        """Labels counted once, and what the operated Prometheus scrapes."""
        started = time.monotonic()
        self._record(
            "count comparison", count_a_batch(stack, MODEL, SELECTOR, "v2", stack.feedback_token(MODEL))
        )
        self._record("count comparison (s)", round(time.monotonic() - started, 1))
        self._record("prometheus targets", targets(stack.prometheus_url))
        assert stack.monitoring is not None
        prometheus = stack.get("prometheus", stack.monitoring.prometheus, stack.monitoring.namespace)
        self._record(
            "prometheus conditions", {c["type"]: c["status"] for c in prometheus["status"]["conditions"]}
        )
        log = stack.kubectl(
            "logs",
            "-n",
            prometheus_operator.OPERATOR_NAMESPACE,
            f"deploy/{prometheus_operator.OPERATOR_NAME}",
        )
        self._record(
            "prometheus-operator log errors",
            [line for line in log.splitlines() if "level=error" in line or "forbidden" in line],
        )
        self._record("v2 feedback series", feedback_series(stack.prometheus_url, MODEL, "v2"))
        self._record("v2 pods", sorted(p["metadata"]["name"] for p in stack.pods(SELECTOR)))

    def _logs_and_exec(self, stack: RealStack) -> None:
        self._record(
            "operator log",
            stack.kubectl("logs", "-n", OPERATOR_NAMESPACE, "-l", OPERATOR_SELECTOR, "--tail=200"),
        )
        name = stack.pods(SELECTOR)[0]["metadata"]["name"]
        self._record("model-server log", stack.kubectl("logs", "-n", MODELS_NAMESPACE, name))
        uid = stack.kubectl(
            "exec", "-n", MODELS_NAMESPACE, name, "--", "python3", "-c", "import os; print(os.getuid())"
        )
        self._record("exec uid", uid.strip())
        resolv = stack.kubectl(
            "exec",
            "-n",
            MODELS_NAMESPACE,
            name,
            "--",
            "python3",
            "-c",
            "print(open('/etc/resolv.conf').read())",
        )
        self._record("pod resolv.conf", resolv)

    def _from_a_claim(self, stack: RealStack, models: dict[str, TrainedModel]) -> None:
        """pvc://: the models in a folder of the node, a hostPath PersistentVolume bound to the claim
        `models`; the operator mounts the claim read-only and the servers read their version's file."""
        folder = self.workdir / "claim"
        for version, model in (("v1", "good"), ("v2", "bad")):
            (folder / "iris" / version).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(models[model].path, folder / "iris" / version / "model.joblib")
        for path in [folder, *folder.rglob("*")]:  # readable by the image's non-root user
            path.chmod(0o755 if path.is_dir() else 0o644)
        stack.apply(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": "vigil-models"},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadOnlyMany"],
                    "storageClassName": "local-models",
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": str(folder), "type": "Directory"},
                },
            }
        )
        stack.apply(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "models", "namespace": MODELS_NAMESPACE},
                "spec": {
                    "accessModes": ["ReadOnlyMany"],
                    "storageClassName": "local-models",
                    "volumeName": "vigil-models",
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }
        )
        wait_for(
            lambda: stack.get("pvc", "models")["status"].get("phase") == "Bound",
            timeout=60,
            what="the claim bound",
        )
        name, selector = f"{MODEL}-claim", f"app.kubernetes.io/instance={MODEL}-claim"

        def on_claim(version: str, model: str) -> dict[str, Any]:
            manifest = _model_deployment(stack, version, model, models)
            manifest["metadata"]["name"] = name
            manifest["spec"]["model"]["uri"] = f"pvc://models/iris/{version}/model.joblib"
            manifest["spec"]["replicas"] = 1
            return manifest

        def rolled_out(version: str) -> bool:
            pods = stack.pods(selector)
            return bool(pods) and all(
                p["metadata"]["labels"].get("vigil.dev/version") == version
                and not p["metadata"].get("deletionTimestamp")
                and _ready(p)
                for p in pods
            )

        stack.apply(on_claim("v1", "good"))
        wait_for(lambda: rolled_out("v1"), timeout=180, interval=1, what="v1 from the claim Ready")
        pod = stack.pods(selector)[0]
        self._record(
            "pvc pod volumes",
            {
                "volumes": [v for v in pod["spec"]["volumes"] if v["name"] == "model-pvc"],
                "mounts": [
                    m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "model-pvc"
                ],
            },
        )
        self._record(
            "pvc model-server log", stack.kubectl("logs", "-n", MODELS_NAMESPACE, pod["metadata"]["name"])
        )
        traffic = ServiceTraffic(stack.service_url(name), name, stack.feedback_token(name)).start()
        try:
            stack.wait_status(name, _promoted("v1"), what="v1 from the claim promoted")
            stack.apply(on_claim("v2", "bad"))
            status = stack.wait_status(name, lambda s: s.get("phase") == "RolledBack", what="v2 rolled back")
            wait_for(lambda: rolled_out("v1"), timeout=180, interval=1, what="v1 back from the claim")
        finally:
            traffic.stop()
        self._record(
            "pvc rollback status",
            {k: status.get(k) for k in ("phase", "stableVersion", "failedVersion", "currentVersion")},
        )
        self._record("pvc traffic", {"requests": traffic.requests, "failed": len(traffic.failures)})


def _model_deployment(
    stack: RealStack, version: str, model: str, models: dict[str, TrainedModel]
) -> dict[str, Any]:
    """A ModelDeployment as a user writes it: the chart's default image and Prometheus."""
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": MODEL, "namespace": MODELS_NAMESPACE},
        "spec": {
            "version": version,
            "model": {"uri": stack.model_uri(model), "sha256": models[model].sha256},
            "replicas": 2,
            "progressDeadlineSeconds": 180,
            "analysis": dict(FAST_ANALYSIS),
        },
    }


def _promoted(version: str) -> Any:
    return lambda s: s.get("phase") == "Promoted" and s.get("stableVersion") == version


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))


def _rolled_out(stack: RealStack, version: str) -> bool:
    """Every pod of the model runs `version` and is Ready; none is left terminating."""
    pods = stack.pods(SELECTOR)
    return bool(pods) and all(
        p["metadata"]["labels"].get("vigil.dev/version") == version
        and not p["metadata"].get("deletionTimestamp")
        and _ready(p)
        for p in pods
    )


def _pod_facts(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod["status"].get("containerStatuses") or [{}]
    return {
        "name": pod["metadata"]["name"],
        "node": pod["spec"].get("nodeName"),
        "serviceAccount": pod["spec"].get("serviceAccountName"),
        "ready": _ready(pod),
        "containerID": statuses[0].get("containerID", ""),
        "image": statuses[0].get("image", ""),
        "images": {status["name"]: status["image"] for status in statuses if "name" in status},
    }
