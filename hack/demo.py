"""`make demo`: Vigil's whole story on a local cluster, narrated.

A good v1 of an iris classifier is rolled out and promoted; a degraded v2 (trained on
partly shuffled labels) follows, its accuracy falls below the threshold in Prometheus,
and the operator rolls it back to v1 on its own. The demo ends with a summary and a PNG
plot of accuracy per version over time, with the rollback marked.

Two paths, the same story, summary and plot; the demo says which it takes and why:
- on a real node (when this machine can run one: root, cgroups v1, `make node-tools images`):
  kube-apiserver, etcd, controller-manager and scheduler, one real node (kubelet, containerd),
  the chart installed with helm (the operator runs as a pod), model servers in containers from
  the model-server image fetching their model from an in-cluster store, Prometheus discovering
  the pods through the API, and labelled traffic through the model's Service;
- otherwise on kwok: the same control plane, kwok plays the kubelet, and Prometheus, the
  operator and the model servers run as local processes.
It talks only to the cluster it starts, through the kubeconfig it writes under --workdir.

    make demo              # run and tear down (NODE=real or NODE=kwok forces a path)
    make demo KEEP=1       # leave it running to explore; `make demo-down` stops it
    make demo STRATEGY=shadow  # v2 as a shadow: mirrored copies only, rejected having answered no user
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from harness.cluster import BIN_DIR, VENV_BIN, ClusterToolsMissing, LocalCluster  # noqa: E402
from harness.kubeapi import KubeApi  # noqa: E402
from harness.models import TrainedModel, accuracy, train  # noqa: E402
from harness.node import NodeError, RealNode, host_problems  # noqa: E402
from harness.ports import free_port  # noqa: E402
from harness.processes import ProcessGroup  # noqa: E402
from harness.prometheus import LocalPrometheus, prometheus_binary  # noqa: E402
from harness.realstack import RealStack, image_archives  # noqa: E402
from harness.traffic import ServiceTraffic  # noqa: E402
from harness.waiting import WaitTimeout, wait_for  # noqa: E402

NAMESPACE = "ml"
NAME = "iris"
THRESHOLD = 0.9
ANALYSIS = {
    "interval": "3s",
    "window": "1m",
    "minSamples": 100,
    "failureLimit": 3,
    "successLimit": 3,
    "threshold": THRESHOLD,
    "evaluationDelay": "1s",  # the demo's Prometheus scrapes every second, on this machine
}
STATE_FILE = "demo-state.json"
STRATEGIES = ("replace", "shadow")
# A user inference, whichever protocol: what a shadow must never have answered.
USER_ENDPOINTS = "infer|v1_predict"


class DemoError(RuntimeError):
    """A problem the person running the demo can act on; printed without a traceback."""


class Narrator:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {text}", flush=True)

    def show(self, title: str, text: str) -> None:
        print(f"        $ {title}")
        for line in text.rstrip().splitlines():
            print(f"        {line}")
        sys.stdout.flush()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def choose_path(wanted: str) -> tuple[str, str]:
    """("real" or "kwok", why): the real node when asked for or when this machine can run it."""
    if wanted == "kwok":
        return "kwok", "NODE=kwok asked for it"
    # Asked for the real node, wait for another run's node to stop rather than fall back or fail.
    problems = host_problems(ports=wanted != "real")
    try:
        image_archives()
    except NodeError as missing:
        problems.append(str(missing))
    missing = [n for n in ("kubelet", "containerd", "prometheus3") if not (BIN_DIR / n).exists()]
    if missing:
        problems.append(f"no {', '.join(missing)} in bin/: run `make node-tools`")
    if not problems:
        return "real", "this machine can run a real node (root, cgroups v1, node tools and images built)"
    if wanted == "real":
        raise DemoError("NODE=real, but the real node cannot run here: " + "; ".join(problems))
    return "kwok", "no real node here (" + "; ".join(problems) + "); kwok plays the kubelet instead"


class Demo:
    def __init__(
        self,
        workdir: Path,
        prometheus_port: int,
        narrator: Narrator,
        path: str = "kwok",
        strategy: str = "replace",
    ) -> None:
        self.workdir = workdir
        self.path = path
        self.strategy = strategy
        self.prometheus_port = prometheus_port
        self.say = narrator.say
        self.narrator = narrator
        self.processes = ProcessGroup(log_dir=workdir / "logs")
        self.cluster: LocalCluster | None = None
        self.prometheus: LocalPrometheus | None = None
        self.api: KubeApi | None = None
        self.marks: dict[str, datetime] = {}
        self.models: dict[str, TrainedModel] = {}
        self.real: RealStack | None = None
        self.traffic: ServiceTraffic | None = None

    # --- set-up ---------------------------------------------------------------------------
    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if (self.workdir / STATE_FILE).exists():
            raise DemoError(f"a demo is still running from {self.workdir}; stop it with `make demo-down`")
        if self.prometheus_port and not port_is_free(self.prometheus_port):
            raise DemoError(
                f"port {self.prometheus_port} is busy; free it or pick another: DEMO_PROMETHEUS_PORT=<port>"
            )
        models = self.workdir / "models"
        self.say("Training two iris classifiers: v1 on clean labels, v2 on 40% shuffled labels ...")
        self.models = {
            "v1": train(models / "v1.joblib"),
            "v2": train(models / "v2.joblib", shuffled_fraction=0.4),
        }
        if self.path == "real":
            self._start_real()
            return
        try:
            prometheus_binary()
        except RuntimeError as missing:
            raise DemoError(str(missing)) from None
        self.say("Starting a local cluster: etcd, kube-apiserver, controller-manager, scheduler, kwok ...")
        self.cluster = LocalCluster.start(self.workdir / "cluster")
        self.cluster.apply_crds()
        self.cluster.kubectl("create", "namespace", NAMESPACE)
        self.api = KubeApi(self.cluster.kubeconfig)
        version = yaml.safe_load(self.cluster.kubectl("version", "-o", "yaml").stdout)["serverVersion"][
            "gitVersion"
        ]
        self.say(f"Cluster up: Kubernetes {version}, kubeconfig {self.cluster.kubeconfig}")

        self.say("Starting Prometheus (scrapes every model server, 1 s interval) ...")
        self.prometheus = LocalPrometheus.start(
            self.workdir / "prometheus", self.processes, port=self.prometheus_port or None
        )
        self.say(f"Prometheus up: {self.prometheus.url}")

        self.say("Starting the Vigil operator ...")
        env = {**self.cluster.env(), "PYTHONUNBUFFERED": "1"}
        liveness = free_port()
        self.processes.start(
            "operator",
            [
                str(VENV_BIN / "vigil-operator"),
                "--namespace",
                NAMESPACE,
                "--liveness-port",
                str(liveness),
                "--metrics-port",
                "0",
                "--prometheus-url",
                self.prometheus.url,
            ],
            env=env,
        )
        self.say(
            "Starting the stand-in kubelet (runs a real model server per release) and labelled traffic ..."
        )
        # The harness first, then whatever the caller had (a checkout's own packages, say).
        harness_path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
        self.processes.start(
            "agent",
            [
                sys.executable,
                "-m",
                "harness.agent",
                "--kubeconfig",
                str(self.cluster.kubeconfig),
                "--namespace",
                NAMESPACE,
                "--prometheus-dir",
                str(self.prometheus.workdir),
                "--prometheus-port",
                str(self.prometheus.port),
                "--log-dir",
                str(self.workdir / "logs" / "servers"),
            ],
            env={"PYTHONPATH": harness_path},
        )
        self._write_state()

    def _start_real(self) -> None:
        self.say(
            "Starting a local cluster whose one node is real: etcd, kube-apiserver, controller-manager,"
            " scheduler, then containerd, kubelet and kube-proxy; the images, an in-cluster model store,"
            " Prometheus (pod discovery) and `helm install charts/vigil` ..."
        )
        self.real = RealStack(self.workdir / "real", {f"iris-{v}": m for v, m in self.models.items()})
        self.processes = self.real.processes
        self.real.start()
        self.cluster, self.prometheus = self.real.cluster, self.real.prometheus
        assert self.cluster is not None
        self.api = KubeApi(self.cluster.kubeconfig)
        steps = ", ".join(f"{step} {seconds:.0f}s" for step, seconds in self.real.timings.items())
        self.say(f"Up in {sum(self.real.timings.values()):.0f}s ({steps})")
        self.narrator.show("kubectl get nodes -o wide", self.kubectl("get", "nodes", "-o", "wide"))
        self.narrator.show("kubectl get pods -A -o wide", self.kubectl("get", "pods", "-A", "-o", "wide"))
        self._write_state()

    def _write_state(self) -> None:
        assert self.cluster is not None
        assert self.prometheus is not None
        state = {
            "cluster": {"name": self.cluster.name, "workdir": str(self.cluster.workdir)},
            "kubeconfig": str(self.cluster.kubeconfig),
            "pids": [p.pid for p in self.processes.processes],
            "prometheus": self.prometheus.url,
        }
        if self.real is not None and self.real.node is not None:
            state["real_node"] = {"workdir": str(self.real.node.workdir), "pki": str(self.cluster.pki)}
        (self.workdir / STATE_FILE).write_text(json.dumps(state, indent=2))

    # --- the story ------------------------------------------------------------------------
    def manifest(self, version: str) -> str:
        model = self.models[version]
        spec: dict[str, Any] = {
            "version": version,
            "model": {"uri": model.path.as_uri(), "sha256": model.sha256},
        }
        if self.real is not None:  # as a user writes it: the chart's image, the store's URL
            spec["model"]["uri"] = self.real.model_uri(f"iris-{version}")
        else:
            spec |= {"image": "vigil-model-server:demo", "podAnnotations": {"kwok.x-k8s.io/status": "custom"}}
        spec |= {"replicas": 2, "analysis": ANALYSIS}
        if self.strategy == "shadow":  # v1 too: the first version has nothing to shadow, so it replaces
            spec["strategy"] = {"type": "Shadow"}
        return yaml.safe_dump(
            {
                "apiVersion": "vigil.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": NAME, "namespace": NAMESPACE},
                "spec": spec,
            },
            sort_keys=False,
        )

    def kubectl(self, *args: str) -> str:
        assert self.cluster is not None
        return self.cluster.kubectl(*args).stdout

    def get_mdep(self) -> None:
        self.narrator.show("kubectl get mdep -n ml", self.kubectl("get", "mdep", "-n", NAMESPACE))

    def status(self) -> dict[str, Any]:
        assert self.api is not None
        path = f"/apis/vigil.dev/v1alpha1/namespaces/{NAMESPACE}/modeldeployments/{NAME}"
        return self.api.get(path).get("status") or {}

    def follow(self, done, what: str, timeout: float = 240) -> dict[str, Any]:
        """Narrate each new check and phase until `done(status)`."""
        seen: set[tuple[str, str]] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            check = status.get("lastCheck") or {}
            key = (status.get("phase", ""), check.get("time", ""))
            if key not in seen:
                seen.add(key)
                line = f"{status.get('currentVersion', '-')}: phase {status.get('phase', '-')}"
                staged = status.get("strategy") or {}
                if staged:
                    line += f" ({staged.get('stage')} candidate, {staged.get('candidatePercent')}% of users)"
                if check:
                    line += f"; check {check['verdict']}: {check['reason']}"
                self.say(line)
            if done(status):
                return status
            time.sleep(0.5)
        raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}; see {self.workdir / 'logs'}")

    def run(self) -> dict[str, Any]:
        assert self.cluster is not None
        good, bad = self.models["v1"], self.models["v2"]
        self.say(f"accuracy on iris: v1 {accuracy(good):.3f}, v2 {accuracy(bad):.3f}; threshold {THRESHOLD}")

        self.say("Applying ModelDeployment iris, version v1:")
        v1 = self.manifest("v1")
        self.narrator.show("kubectl apply -f iris-v1.yaml", v1)
        self.cluster.kubectl("apply", "-f", "-", input=v1)
        if self.real is not None:
            self._start_service_traffic()
        self.follow(
            lambda s: s.get("phase") == "Promoted" and s.get("stableVersion") == "v1", "v1 to be promoted"
        )
        self.say("v1 passed its checks and is promoted: Ready.")
        self.get_mdep()

        shadow = self.strategy == "shadow"
        if shadow:
            self.say(
                "Applying version v2 (the degraded model) as a shadow: v1 keeps answering every request"
                " and mirrors a copy of each, with its label, to v2, which answers no user:"
            )
        else:
            self.say("Applying version v2 (the degraded model):")
        v2 = self.manifest("v2")
        self.marks["v2_applied"] = datetime.now(UTC)
        self.cluster.kubectl("apply", "-f", "-", input=v2)
        status = self.follow(lambda s: s.get("phase") == "RolledBack", "v2 to be rolled back")
        wait_for(self._deployment_on_v1, timeout=60, interval=0.1, what="the Deployment back on v1")
        self.marks["back_on_v1"] = datetime.now(UTC)
        if shadow:
            self.say(
                "The operator rejected the shadow v2 by itself: its Deployment and Service are gone and v1,"
                " which answered every request throughout, stops mirroring. The spec still says v2:"
            )
        else:
            self.say(
                "The operator rolled v2 back to v1 by itself. The spec still says v2 (git stays the truth):"
            )
        self.get_mdep()
        events = self.kubectl(
            "get",
            "events",
            "-n",
            NAMESPACE,
            "--field-selector",
            "involvedObject.kind=ModelDeployment",
            "--sort-by=.metadata.creationTimestamp",
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        )
        self.narrator.show("kubectl get events -n ml (ModelDeployment)", _shorten(events))
        return self.summarise(status)

    def _start_service_traffic(self) -> None:
        """Users' requests and their labels through the model's Service (real path only), once
        its pods are Ready: before that the Service has nowhere to send them."""
        assert self.real is not None
        self.real.wait_rolled_out(NAME, NAMESPACE, timeout=180)
        url = self.real.service_url(NAME)
        self.say(f"Sending requests and their labels to the Service ({url}, 20 requests/s) ...")
        self.traffic = ServiceTraffic(url, NAME, self.real.feedback_token(NAME)).start()

    def _deployment_on_v1(self) -> bool:
        assert self.api is not None
        deployment = self.api.get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{NAME}")
        env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        return any(item["name"] == "MODEL_VERSION" and item["value"] == "v1" for item in env)

    # --- the summary and the plot ---------------------------------------------------------
    def summarise(self, status: dict[str, Any]) -> dict[str, Any]:
        assert self.prometheus is not None
        failed = [h for h in status.get("history", []) if h["version"] == "v2" and h["outcome"] == "failed"]
        rollback_at = _parse(failed[0]["at"]) if failed else self.marks["back_on_v1"]
        serving_v2 = self._first_failing_check_time()
        per_version = {}
        for version in ("v1", "v2"):
            selector = f'namespace="{NAMESPACE}", model="{NAME}", version="{version}"'
            # Each pod's counter at its highest over the demo, summed: pods replaced by the
            # rollout and the rollback count too (their series are gone by now).
            span = f"{int(time.monotonic() - self.narrator.started) + 5}s"
            correct = self.prometheus.query(
                f"sum(max_over_time(vigil_model_feedback_correct_total{{{selector}}}[{span}]))"
            )
            total = self.prometheus.query(
                f"sum(max_over_time(vigil_model_feedback_total{{{selector}}}[{span}]))"
            )
            if correct and total and float(total[0]["value"][1]) > 0:
                per_version[version] = {
                    "accuracy": float(correct[0]["value"][1]) / float(total[0]["value"][1]),
                    "labelled": int(float(total[0]["value"][1])),
                }
        summary = {
            "rolled_back": status.get("phase") == "RolledBack" and status.get("failedVersion") == "v2",
            "serving": status.get("currentVersion"),
            "spec_version": "v2",
            "seconds_to_first_failing_check": _seconds(self.marks["v2_applied"], serving_v2),
            "seconds_to_rollback_decision": _seconds(self.marks["v2_applied"], rollback_at),
            "seconds_to_deployment_on_v1": _seconds(self.marks["v2_applied"], self.marks["back_on_v1"]),
            "accuracy": per_version,
            "path": self.path,
        }
        if self.traffic is not None:
            summary["requests"] = {
                "sent": self.traffic.requests,
                "failed": len(self.traffic.failures),
                "failures": self.traffic.failures[:10],
            }
        summary["strategy"] = self.strategy
        if self.strategy == "shadow":
            summary["shadow"] = self.shadow_counts()
        summary["plot"] = str(self.plot(rollback_at))
        (self.workdir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def shadow_counts(self) -> dict[str, int]:
        """What v2 answered as a shadow, from its own request counters: user inferences (must be 0)
        and the mirror posts it took (each carries many copies); and, through the Service, what users
        got from it (the real path's traffic)."""
        prometheus = self.prometheus
        assert prometheus is not None
        span = f"{int(time.monotonic() - self.narrator.started) + 5}s"
        selector = f'namespace="{NAMESPACE}", model="{NAME}", version="v2"'

        def requests(endpoints: str) -> int:
            # Each pod's counter at its highest over the demo, summed, as for the accuracy.
            series = f'vigil_model_requests_total{{{selector}, endpoint=~"{endpoints}"}}'
            result = prometheus.query(f"sum(max_over_time({series}[{span}]))")
            return int(float(result[0]["value"][1])) if result else 0

        counts = {"user_inferences": requests(USER_ENDPOINTS), "mirror_posts": requests("mirror")}
        if self.traffic is not None:
            counts["answered_through_the_service"] = self.traffic.versions("infer").get("v2", 0)
        return counts

    def _first_failing_check_time(self) -> datetime | None:
        assert self.api is not None
        events = self.api.get(
            f"/api/v1/namespaces/{NAMESPACE}/events",
            fieldSelector=f"involvedObject.name={NAME},reason=AnalysisFailed",
        )["items"]
        times = [_parse(e.get("firstTimestamp") or e["metadata"]["creationTimestamp"]) for e in events]
        return min(times) if times else None

    def plot(self, rollback_at: datetime) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        assert self.prometheus is not None
        end = time.time()
        start = end - (time.monotonic() - self.narrator.started) - 5
        import httpx

        query = f'avg by (version) (vigil_model_accuracy{{namespace="{NAMESPACE}", model="{NAME}"}})'
        response = httpx.get(
            f"{self.prometheus.url}/api/v1/query_range",
            params={"query": query, "start": start, "end": end, "step": "1s"},
            timeout=10,
        )
        response.raise_for_status()
        figure, axes = plt.subplots(figsize=(9, 4.5))
        for series in response.json()["data"]["result"]:
            points = [(datetime.fromtimestamp(float(t), UTC), float(v)) for t, v in series["values"]]
            version = series["metric"].get("version", "?")
            axes.plot([p[0] for p in points], [p[1] for p in points], label=f"{version} (mean over its pods)")
        axes.axhline(THRESHOLD, color="grey", linestyle="--", label=f"threshold {THRESHOLD}")
        shadow = self.strategy == "shadow"
        decision = "shadow rejected" if shadow else "automatic rollback"
        axes.axvline(rollback_at, color="red", linestyle=":", label=decision)
        axes.set_ylim(0.5, 1.02)
        axes.set_ylabel("accuracy (last labelled predictions)")
        axes.set_title(f"Vigil demo: {'shadow v2 rejected' if shadow else 'v2 rolled back'} on accuracy")
        axes.legend(loc="lower left")
        figure.autofmt_xdate()
        path = self.workdir / "accuracy.png"
        figure.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(figure)
        return path

    # --- teardown -------------------------------------------------------------------------
    def stop(self) -> None:
        if self.traffic is not None:
            self.traffic.stop()
        if self.api is not None:
            self.api.close()
        if self.real is not None:
            self.real.stop()  # the node, Prometheus, the cluster
        else:
            self.processes.close()
            if self.cluster is not None:
                self.cluster.stop()
        (self.workdir / STATE_FILE).unlink(missing_ok=True)

    def explain_kept(self) -> None:
        assert self.cluster is not None
        assert self.prometheus is not None
        print(
            f"""
Everything is still running (KEEP=1). Explore it:
  export KUBECONFIG={self.cluster.kubeconfig}
  export PATH={VENV_BIN}:$PATH
  kubectl get mdep -n ml
  kubectl describe mdep iris -n ml
  kubectl get deploy,pods,svc -n ml
  kubectl annotate mdep iris -n ml vigil.dev/action=retry     # try v2 again
Prometheus UI: {self.prometheus.url}  (query: vigil_model_accuracy{{namespace="ml"}})
Logs: {self.workdir / "logs"}
Stop it all with: make demo-down"""
        )
        if self.real is not None:
            print(
                "(Real node: the demo's traffic stopped when it exited;"
                " `kubectl get pods -A -o wide` shows the containers.)"
            )


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else round((end - start).total_seconds(), 1)


def _shorten(text: str, width: int = 150) -> str:
    return "\n".join(line if len(line) <= width else line[: width - 3] + "..." for line in text.splitlines())


def print_summary(summary: dict[str, Any]) -> None:
    print("\n=== Summary ===")
    where = "a real node (containerd)" if summary["path"] == "real" else "kwok (simulated pods)"
    print(f"  ran on: {where}")
    verdict = "yes" if summary["rolled_back"] else "NO"
    if summary.get("strategy") == "shadow":
        shadow = summary["shadow"]
        print(f"  v2 rejected as a shadow by itself: {verdict}; serving: {summary['serving']}")
        print(
            f"  user inferences v2 answered: {shadow['user_inferences']}"
            f" (mirror posts it took from v1: {shadow['mirror_posts']})"
        )
    else:
        print(f"  v2 rolled back by itself: {verdict}; serving: {summary['serving']}")
    print(
        f"  time from applying v2 to its first failing check: {summary['seconds_to_first_failing_check']} s"
    )
    print(f"  time from applying v2 to the rollback decision:    {summary['seconds_to_rollback_decision']} s")
    print(f"  time from applying v2 to the Deployment on v1:     {summary['seconds_to_deployment_on_v1']} s")
    for version, numbers in summary["accuracy"].items():
        print(
            f"  {version}: accuracy {numbers['accuracy']:.3f} over {numbers['labelled']} labelled predictions"
        )
    if "requests" in summary:
        requests = summary["requests"]
        print(f"  requests through the Service: {requests['sent']} sent, {requests['failed']} failed")
    print(f"  plot: {summary['plot']}")


def down(workdir: Path) -> int:
    state_file = workdir / STATE_FILE
    if not state_file.exists():
        print("no demo is running")
        return 0
    state = json.loads(state_file.read_text())
    if "real_node" in state:  # needs the API to drain its pods: before the cluster stops
        node = state["real_node"]
        RealNode(Path(node["workdir"]), Path(state["kubeconfig"]), Path(node["pki"])).stop()
    for pid in reversed(state["pids"]):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in state["pids"]:
        try:
            wait_for(lambda pid=pid: not _alive(pid), timeout=15, what=f"process {pid} to exit")
        except WaitTimeout:
            os.kill(pid, signal.SIGKILL)
    LocalCluster(name=state["cluster"]["name"], workdir=Path(state["cluster"]["workdir"])).stop()
    state_file.unlink()
    print("demo stopped: cluster, Prometheus, operator and model servers")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        return (
            subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout[:1]
            != "Z"
        )
    except OSError:
        return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / ".work" / "demo")
    parser.add_argument("--keep", action="store_true", default=os.environ.get("KEEP", "") not in ("", "0"))
    parser.add_argument(
        "--prometheus-port", type=int, default=int(os.environ.get("DEMO_PROMETHEUS_PORT", "0"))
    )
    parser.add_argument("--down", action="store_true", help="stop a demo left running with KEEP=1")
    parser.add_argument(
        "--node",
        choices=["auto", "real", "kwok"],
        default=os.environ.get("NODE") or "auto",
        help="a real node (containerd, kubelet) or kwok; auto: real when this machine can run it",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default=(os.environ.get("STRATEGY") or "replace").lower(),
        help="how v2 reaches requests: replace (all of them) or shadow (mirrored copies, answers no user)",
    )
    args = parser.parse_args()
    if args.down:
        return down(args.workdir)

    # Ctrl-C (even when started from a script that ignores it) and SIGTERM tear everything down.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    narrator = Narrator()
    try:
        path, why = choose_path(args.node)
    except DemoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    narrator.say(f"Path: {'a real node' if path == 'real' else 'kwok'}: {why}.")
    demo = Demo(args.workdir, args.prometheus_port, narrator, path, args.strategy)
    keep = False
    try:
        demo.start()
        summary = demo.run()
        print_summary(summary)
        keep = args.keep
        if keep:
            demo.explain_kept()
        return 0 if summary["rolled_back"] and summary["serving"] == "v1" else 1
    except KeyboardInterrupt:
        print("\ninterrupted: tearing the demo down ...", file=sys.stderr)
        return 130
    except (DemoError, ClusterToolsMissing, NodeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if not keep:
            demo.stop()


if __name__ == "__main__":
    sys.exit(main())
