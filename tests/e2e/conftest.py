"""The whole stack for end-to-end tests: local cluster, Prometheus, the operator as a real
process, model servers run by the stand-in kubelet, and labelled traffic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from harness.cluster import VENV_BIN, LocalCluster
from harness.kubeapi import KubeApi
from harness.kubelet import CUSTOM_STATUS, LocalKubelet
from harness.models import TrainedModel, train
from harness.ports import free_port
from harness.processes import LocalProcess, ProcessGroup
from harness.prometheus import LocalPrometheus
from harness.traffic import TrafficGenerator
from harness.waiting import wait_for

GROUP_PATH = "/apis/vigil.dev/v1alpha1"
# Runs argv[1:] with SIGINT ignored, as a shell's `&` or a CI job starts a command.
IGNORING_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)
# Status written with every check (see `Stack.start_operator`).
STATUS_HEARTBEAT_SECONDS = 0.001

# Fast analysis settings, so a scenario takes seconds: checks every 2 s, 50 labels minimum.
FAST_ANALYSIS = {
    "interval": "2s",
    "window": "30s",
    "minSamples": 50,
    "failureLimit": 3,
    "successLimit": 3,
    "errorLimit": 3,
    "threshold": 0.9,
    "evaluationDelay": "1s",  # the local Prometheus scrapes every second
}


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TrainedModel]:
    """A good iris model (accuracy ~0.97) and a degraded one (~0.79, 40% labels shuffled)."""
    folder = tmp_path_factory.mktemp("models")
    return {
        "good": train(folder / "good.joblib"),
        "good-too": train(folder / "good-too.joblib", seed=1, shuffled_fraction=0.0),
        "bad": train(folder / "bad.joblib", shuffled_fraction=0.4),
    }


def model_deployment(
    name: str,
    namespace: str,
    version: str,
    model: TrainedModel,
    *,
    prometheus_url: str,
    sha256: str | None = None,
    progress_deadline: int = 600,
    **analysis: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "version": version,
            "model": {"uri": model.uri, "sha256": sha256 or model.sha256},
            "image": "vigil-model-server:test",
            "replicas": 1,
            "progressDeadlineSeconds": progress_deadline,
            "podAnnotations": dict(CUSTOM_STATUS),
            "analysis": {"prometheusUrl": prometheus_url, **FAST_ANALYSIS, **analysis},
        },
    }


@dataclass
class Stack:
    cluster: LocalCluster
    namespace: str
    api: KubeApi
    processes: ProcessGroup
    prometheus: LocalPrometheus
    kubelet: LocalKubelet
    traffic: TrafficGenerator | None  # None where a test sends its own labels (the soak)
    operator: LocalProcess | None = None
    operator_port: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def start_operator(
        self,
        kubeconfig: Path | None = None,
        args: Sequence[str] | None = None,
        metrics_port: int = 0,
        status_heartbeat: float | None = STATUS_HEARTBEAT_SECONDS,
    ) -> LocalProcess:
        """The operator as a local process: by default with the cluster's admin kubeconfig and
        `--namespace` of this test; `kubeconfig` (e.g. a ServiceAccount token's) and `args`
        (e.g. the chart's, instead of `--namespace`) replace those. Ports are always free ones.

        Every check is written to status by default (`status_heartbeat`), since tests wait for
        `status.lastCheck` to move; None keeps the operator's own pacing (300 s after promotion).
        """
        self.operator_port = free_port()
        env = {
            "KUBECONFIG": str(kubeconfig or self.cluster.kubeconfig),
            "VIGIL_DEFAULT_IMAGE": "vigil-model-server:test",
            "PATH": self.cluster.env()["PATH"],
        }
        argv = [
            str(VENV_BIN / "vigil-operator"),
            *(["--namespace", self.namespace] if args is None else args),
            "--liveness-port",
            str(self.operator_port),
            "--metrics-port",
            str(metrics_port),
            "--verbose",
        ]
        if status_heartbeat is not None:  # after `args`: the last one wins over the chart's
            argv += ["--status-heartbeat", str(status_heartbeat)]
        self.operator = self.processes.start("operator", argv, env=env)
        wait_for(self._operator_live, timeout=60, what="the operator's liveness endpoint")
        return self.operator

    def _operator_live(self) -> bool:
        assert self.operator is not None
        if not self.operator.alive():
            raise RuntimeError(f"the operator exited:\n{self.operator.log()[-3000:]}")
        return httpx.get(f"http://127.0.0.1:{self.operator_port}/healthz", timeout=1).status_code == 200

    def apply(self, manifest: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))

    def mdep(self, name: str) -> dict[str, Any]:
        return self.api.get(f"{GROUP_PATH}/namespaces/{self.namespace}/modeldeployments/{name}")

    def status(self, name: str) -> dict[str, Any]:
        return self.mdep(name).get("status") or {}

    def wait_status(
        self, name: str, predicate, *, timeout: float = 120, what: str = "status"
    ) -> dict[str, Any]:
        def current() -> dict[str, Any] | None:
            status = self.status(name)
            return status if predicate(status) else None

        try:
            return wait_for(current, timeout=timeout, what=f"{name}: {what}")
        except AssertionError as error:
            raise AssertionError(f"{error}\nlast status: {yaml.safe_dump(self.status(name))}") from None

    def deployment(self, name: str) -> dict[str, Any]:
        return self.api.get(f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{name}")

    def deployment_version(self, name: str) -> str:
        env = self.deployment(name)["spec"]["template"]["spec"]["containers"][0]["env"]
        return next(item["value"] for item in env if item["name"] == "MODEL_VERSION")

    def events(self, name: str) -> list[dict[str, Any]]:
        items = self.api.get(
            f"/api/v1/namespaces/{self.namespace}/events",
            fieldSelector=f"involvedObject.name={name},involvedObject.kind=ModelDeployment",
        )["items"]
        return sorted(items, key=lambda e: e["metadata"]["creationTimestamp"])

    def reasons(self, name: str) -> list[str]:
        return [event["reason"] for event in self.events(name)]

    def wait_reason(self, name: str, reason: str, *, count: int = 1, timeout: float = 30) -> list[str]:
        """Wait until `reason` was posted `count` times and return every reason so far.

        Events are posted after the status write that reports the same step, so a test that
        has just seen the status must still wait for the event; never assume their order.
        """
        return wait_for(
            lambda: (reasons := self.reasons(name)).count(reason) >= count and reasons,
            timeout=timeout,
            what=f"{name}: {count} {reason} event(s)",
        )


def promoted(version: str) -> Callable[[dict[str, Any]], bool]:
    """A `wait_status` predicate: `version` is the stable release and serves."""
    return lambda status: status.get("phase") == "Promoted" and status.get("stableVersion") == version


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


@pytest.fixture(scope="session", autouse=True)
def soak(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    models: dict[str, TrainedModel],
) -> Iterator[Any]:
    """Start the soak (tests/e2e/test_steady_state.py) as the session begins, when it was
    collected, so its ten minutes overlap the other tests instead of adding to them (`make test`
    runs it in a pytest of its own beside the others; see the Makefile)."""
    if not any(item.get_closest_marker("soak") for item in request.session.items):
        yield None
        return
    from e2e.test_steady_state import SoakRun

    run = SoakRun(tmp_path_factory.mktemp("soak"), models["good"]).start()
    yield run
    run.stop()


@pytest.fixture
def stack(cluster: LocalCluster, namespace: str, processes: ProcessGroup, tmp_path: Path) -> Iterator[Stack]:
    api = KubeApi(cluster.kubeconfig)
    prometheus = LocalPrometheus.start(tmp_path / "prometheus", processes)
    kubelet = LocalKubelet(api, namespace, processes, prometheus).start()
    traffic = TrafficGenerator(kubelet).start()
    local = Stack(cluster, namespace, api, processes, prometheus, kubelet, traffic, env=dict(os.environ))
    try:
        yield local
    finally:
        traffic.stop()
        kubelet.stop()
        api.close()


@contextmanager
def kubectl_vigil_watch(
    stack: Stack, screen: Path, *, sigint_ignored: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """`kubectl vigil watch iris` writing its frames to `screen`. Leaving sends Ctrl-C (SIGINT), as
    a user ends it, and kills it if it is still there 30 s later, so a watch that ignores Ctrl-C
    fails the test on its exit status and is not left running."""
    argv = [str(VENV_BIN / "kubectl"), "vigil", "watch", "iris", "-n", stack.namespace]
    if sigint_ignored:
        argv = [sys.executable, "-c", IGNORING_SIGINT, *argv]
    with screen.open("w") as output:
        process = subprocess.Popen(
            argv, env=stack.cluster.env(), text=True, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
