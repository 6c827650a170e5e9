"""Faults, end to end: hostile Prometheus answers, the operator killed mid-rollback, the API
server restarted mid-rollout. Each ends in the outcome a user expects, with nothing lost and
nothing done twice.

The operator, the cluster, the model servers and the real Prometheus are the same as in
test_rollouts.py. No timed assertions: waits poll the real state; the numbers measured (the
operator's peak RSS, what the fake Prometheus managed to send) are printed and recorded in
.work/e2e-faults.json, and asserted only against generous bounds that prove a mechanism works.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from harness.cluster import REPO_ROOT, LocalCluster
from harness.model_store import ModelStore
from harness.models import TrainedModel
from harness.waiting import wait_for

from .conftest import Stack, condition, kubectl_vigil_watch, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus]
RECORD = REPO_ROOT / ".work" / "e2e-faults.json"
MIB = 1024 * 1024
HUGE_BYTES = 300 * MIB
SLOW_SECONDS = 30.0  # far beyond the faulty objects' queryTimeout (2s)


def _record(name: str, value: object) -> None:
    """Measurements for the closing note and docs (never asserted beyond generous bounds)."""
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    data[name] = value
    RECORD.write_text(json.dumps(data, indent=2))
    print(f"{name}: {value}")


class HostilePrometheus:
    """A real local HTTP server that answers /api/v1/query the way no real Prometheus does.

    The mode is the first path segment of the URL a ModelDeployment names as its Prometheus
    (`http://127.0.0.1:PORT/huge` gets `/huge/api/v1/query`):
    - `garbage`: 200 with an HTML page;
    - `huge`: 200 with a 300 MB body and no Content-Length (read until the connection closes);
    - `slow`: nothing for 30 s, then an answer;
    - `error500`: HTTP 500 with a Prometheus-style error body.
    """

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.huge_bytes_sent: list[int] = []  # per request: how much went out before the hang-up
        self.stopping = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                mode = self.path.strip("/").split("/", 1)[0]
                outer.requests[mode] += 1
                # The operator hanging up is the point, not an error.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    getattr(outer, f"_{mode}")(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="hostile-prometheus", daemon=True
        )

    def _garbage(self, handler: BaseHTTPRequestHandler) -> None:
        body = b"<html><body>502 Bad Gateway</body></html>" * 100
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _huge(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.end_headers()  # HTTP/1.0, no Content-Length: the body ends when the connection does
        chunk = b'{"status":"success","data":{"resultType":"vector","result":[' + b"0," * (MIB // 2 - 40)
        sent = 0
        try:
            while sent < HUGE_BYTES and not self.stopping.is_set():
                handler.wfile.write(chunk)
                sent += len(chunk)
        finally:
            self.huge_bytes_sent.append(sent)

    def _slow(self, handler: BaseHTTPRequestHandler) -> None:
        self.stopping.wait(SLOW_SECONDS)
        self._error500(handler)

    def _error500(self, handler: BaseHTTPRequestHandler) -> None:
        body = json.dumps({"status": "error", "errorType": "internal", "error": "boom " * 20_000}).encode()
        handler.send_response(500)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def __enter__(self) -> HostilePrometheus:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile_prometheus() -> Iterator[HostilePrometheus]:
    with HostilePrometheus() as server:
        yield server


def peak_rss_bytes(pid: int) -> int:
    """VmHWM of a process: the most resident memory it has ever had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


FAULTS = {  # ModelDeployment name -> (mode, what its check's reason says)
    "garbage": ("garbage", "without a JSON body"),
    "huge": ("huge", "answered too much"),
    "slow": ("slow", "did not answer within 2s"),
    "error500": ("error500", "Prometheus rejected the query (internal): boom"),
}


def test_hostile_prometheus_answers_are_errors_and_never_hold_up_other_checks(
    stack: Stack, models: dict[str, TrainedModel], hostile_prometheus: HostilePrometheus
) -> None:
    """Garbage, a 300 MB answer, a 30 s silence and a 500: each is an error verdict, then
    Degraded/MetricsUnavailable, never a failing check nor a rollback; meanwhile a healthy
    ModelDeployment in the same namespace, on the real Prometheus, keeps being checked, and the
    operator's memory stays far below the 300 MB it was offered (the read is capped at 1 MiB).

    A real Prometheus cannot answer like this, hence a fake one: a plain local HTTP server.
    """
    stack.start_operator()
    namespace, real = stack.namespace, stack.prometheus.url
    stack.apply(model_deployment("steady", namespace, "v1", models["good"], prometheus_url=real))
    stack.wait_status("steady", promoted("v1"), what="steady promoted")

    for name, (mode, _) in FAULTS.items():
        url = f"{hostile_prometheus.url}/{mode}"
        stack.apply(
            model_deployment(name, namespace, "v1", models["good"], prometheus_url=url, queryTimeout="2s")
        )
    wait_for(
        lambda: all(hostile_prometheus.requests[mode] for mode, _ in FAULTS.values()),
        timeout=180,
        what="every hostile mode queried",
    )

    # While the faults are being hit, record every check of the healthy object.
    steady_checks: set[str] = set()

    def all_degraded() -> bool:
        steady_checks.add((stack.status("steady").get("lastCheck") or {}).get("time", ""))
        return all(
            condition(stack.status(name), "Degraded").get("reason") == "MetricsUnavailable" for name in FAULTS
        )

    wait_for(all_degraded, timeout=120, interval=0.5, what="every faulty object Degraded/MetricsUnavailable")
    wait_for(
        lambda: (
            steady_checks.add((stack.status("steady").get("lastCheck") or {}).get("time", ""))
            or len(steady_checks) >= 4
        ),
        timeout=60,
        interval=0.5,
        what="several checks of the healthy object while the faults go on",
    )
    assert hostile_prometheus.requests["slow"] >= 2, "the healthy checks ran while a slow query hung"
    times = sorted(datetime.fromisoformat(t.replace("Z", "+00:00")) for t in steady_checks if t)
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    _record("healthy_checks_during_faults", len(times))
    _record("healthy_check_max_gap_seconds_during_faults", max(gaps))  # interval: 2s
    _record("hostile_requests", dict(hostile_prometheus.requests))

    for name, (_, says) in FAULTS.items():
        status = stack.status(name)
        check = status["lastCheck"]
        assert check["verdict"] == "error", (name, check)
        assert says in check["reason"], (name, check["reason"])
        assert len(check["reason"]) <= 600
        assert status["streaks"]["failures"] == 0
        assert status["currentVersion"] == "v1"
        assert status.get("failedVersion") is None
        assert condition(status, "Degraded")["status"] == "True"
        reasons = stack.wait_reason(name, "MetricsUnavailable")
        assert "AnalysisFailed" not in reasons
        assert "RolledBack" not in reasons
        assert all(len(e["message"]) <= 1024 for e in stack.events(name))
        assert stack.deployment_version(name) == "v1"

    steady = stack.status("steady")
    assert steady["lastCheck"]["verdict"] != "error"
    assert condition(steady, "Degraded").get("status") != "True"

    assert stack.operator is not None
    peak = peak_rss_bytes(stack.operator.pid)
    sent = hostile_prometheus.huge_bytes_sent
    _record("operator_peak_rss_mib_facing_300mb_answers", round(peak / MIB, 1))
    _record("huge_answer_mib_sent_before_hang_up", [round(b / MIB, 1) for b in sent])
    # Generous bounds that prove the cap works (whole answers would be 300 MB each), not timings.
    assert peak < 200 * MIB
    assert sent
    assert max(sent) < 50 * MIB


# --- the operator SIGKILLed after the rollback decision, before the Deployment is back -----------


def _hold_rollback_policy(namespace: str) -> list[dict]:
    """A ValidatingAdmissionPolicy that refuses to move the Deployment from v2 back to v1, so the
    test can kill the operator at a known point: rollback decided (in status), Deployment not back."""
    name = f"hold-rollback-{namespace}"
    label = "'vigil.dev/version'"
    moves_back = (
        f"has(object.metadata.labels) && has(oldObject.metadata.labels) && "
        f"{label} in object.metadata.labels && {label} in oldObject.metadata.labels && "
        f"object.metadata.labels[{label}] == 'v1' && oldObject.metadata.labels[{label}] == 'v2'"
    )
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "operations": ["UPDATE"],
                            "resources": ["deployments"],
                        }
                    ]
                },
                "validations": [{"expression": f"!({moves_back})", "message": "held by the test: rollback"}],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    ]


def _move_back_refused(stack: Stack) -> bool:
    """Whether the policy refuses, right now, a dry-run move of the Deployment's label to v1."""
    result = stack.cluster.kubectl(
        "label", "deployment", "iris", "-n", stack.namespace, "vigil.dev/version=v1",
        "--overwrite", "--dry-run=server", check=False,
    )  # fmt: skip
    return result.returncode != 0 and "held by the test" in result.stderr


def test_operator_killed_mid_rollback_rolls_back_exactly_once(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    namespace, url = stack.namespace, stack.prometheus.url
    policy = _hold_rollback_policy(namespace)
    stack.start_operator()
    stack.apply(model_deployment("iris", namespace, "v1", models["good"], prometheus_url=url))
    stack.wait_status("iris", promoted("v1"), what="v1 promoted")
    try:
        for obj in policy:
            stack.apply(obj)
        stack.apply(model_deployment("iris", namespace, "v2", models["bad"], prometheus_url=url))
        wait_for(lambda: stack.deployment_version("iris") == "v2", timeout=60, what="Deployment on v2")
        wait_for(lambda: _move_back_refused(stack), timeout=60, what="the policy in force")

        # The rollback is decided and stored (v1 is being rolled out again); the API server
        # refuses the Deployment's way back.
        status = stack.wait_status(
            "iris",
            lambda s: (
                s.get("rollbackReason") == "AnalysisFailed"
                and s.get("currentVersion") == "v1"
                and "held by the test" in (s.get("applyError") or "")
            ),
            what="rollback decided, Deployment held on v2",
        )
        assert status["failedVersion"] == "v2"
        assert stack.operator is not None
        stack.operator.kill()
        assert stack.deployment_version("iris") == "v2", "killed before the Deployment was back"
    finally:
        for obj in reversed(policy):
            stack.cluster.kubectl(
                "delete", obj["kind"], obj["metadata"]["name"], "--ignore-not-found", check=False
            )
    wait_for(lambda: not _move_back_refused(stack), timeout=60, what="the policy gone")

    stack.start_operator()
    wait_for(lambda: stack.deployment_version("iris") == "v1", timeout=60, what="Deployment back on v1")
    status = stack.wait_status(
        "iris",
        lambda s: s.get("phase") == "RolledBack" and not s.get("applyError"),
        what="rolled back, applied",
    )
    assert status["currentVersion"] == "v1"
    assert status["failedVersion"] == "v2"
    assert condition(status, "RolledBack")["reason"] == "AnalysisFailed"
    # Later rounds keep it there, and the rollback was recorded (and announced) exactly once.
    seen = status["lastCheck"]["time"]
    stack.wait_status("iris", lambda s: s["lastCheck"]["time"] != seen, what="a later check")
    assert stack.deployment_version("iris") == "v1"
    assert stack.wait_reason("iris", "RolledBack").count("RolledBack") == 1
    assert [h["outcome"] for h in stack.status("iris")["history"] if h["version"] == "v2"] == ["failed"]


# --- the kube-apiserver restarted mid-rollout ------------------------------------------------------


def restart_apiserver(cluster: LocalCluster) -> int:
    """SIGKILL kwok's kube-apiserver and start it again with the same command line, working folder
    and environment (kwokctl's binary runtime runs it detached and does not restart it itself).
    The pid file is updated, so `kwokctl delete cluster` stops the new process. Returns its pid."""
    (cluster_dir,) = (cluster.kwok_workdir / "clusters").iterdir()
    pid_file = cluster_dir / "pids" / "kube-apiserver.pid"
    pid = int(pid_file.read_text().strip())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    environ = dict(
        item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item
    )
    cwd = os.readlink(f"/proc/{pid}/cwd")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=30, what="the old kube-apiserver gone")
    with (cluster_dir / "logs" / "kube-apiserver.log").open("ab") as log:
        process = subprocess.Popen(
            argv, cwd=cwd, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    pid_file.write_text(str(process.pid))
    wait_for(
        lambda: cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
        timeout=120,
        what="the restarted kube-apiserver ready",
    )
    return process.pid


def test_api_server_restarted_mid_rollout_the_rollout_completes(
    stack: Stack, models: dict[str, TrainedModel], tmp_path: Path
) -> None:
    """The operator rides out the restart, and so does `kubectl vigil watch`: its connections are
    cut, it lists again, and it shows the promotion that follows."""
    namespace, url = stack.namespace, stack.prometheus.url
    stack.start_operator()
    stack.apply(model_deployment("iris", namespace, "v1", models["good"], prometheus_url=url))
    stack.wait_status("iris", promoted("v1"), what="v1 promoted")
    stack.apply(model_deployment("iris", namespace, "v2", models["good-too"], prometheus_url=url))
    wait_for(lambda: stack.deployment_version("iris") == "v2", timeout=60, what="Deployment on v2")
    before = stack.status("iris")
    assert before.get("stableVersion") == "v1", "mid-rollout: v2 not promoted yet"

    screen = tmp_path / "watch.txt"
    with kubectl_vigil_watch(stack, screen) as watching:
        wait_for(lambda: "Phase:" in screen.read_text(), timeout=30, what="watch's first frame")
        started = time.monotonic()
        restart_apiserver(stack.cluster)
        _record("apiserver_restart_seconds", round(time.monotonic() - started, 1))

        status = stack.wait_status("iris", promoted("v2"), timeout=180, what="v2 promoted after the restart")
        wait_for(
            lambda: "Phase:       Promoted  v2 is stable and serving" in screen.read_text(),
            timeout=60,
            what="the watch showing v2 promoted after the restart",
        )
    shown = screen.read_text()
    assert "Traceback" not in shown, shown[-3000:]
    assert watching.returncode == 0, "Ctrl-C ends watch without an error"
    assert status["currentVersion"] == "v2"
    assert status.get("failedVersion") is None
    assert stack.deployment_version("iris") == "v2"
    assert stack.operator is not None
    assert stack.operator.alive(), "the operator rode out the restart"
    reasons = stack.wait_reason("iris", "Promoted", count=2)
    assert "RolledBack" not in reasons
    assert reasons.count("RolloutStarted") == 2  # v1, v2: the restart started nothing twice


def test_model_store_down_when_the_pod_starts_then_back_completes_the_rollout(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    """v2's server starts before its model store: it retries (not ready, saying why), and the
    rollout completes once the store is up, with no restart and no rollback."""
    namespace, url = stack.namespace, stack.prometheus.url
    stack.start_operator()
    stack.apply(model_deployment("iris", namespace, "v1", models["good"], prometheus_url=url))
    stack.wait_status("iris", promoted("v1"), what="v1 promoted")

    good_too = models["good-too"]
    store = ModelStore(files={"/iris/v2/model.joblib": good_too.path.read_bytes()})  # not started yet
    manifest = model_deployment("iris", namespace, "v2", good_too, prometheus_url=url)
    manifest["spec"]["model"]["uri"] = f"{store.url}/iris/v2/model.joblib"
    stack.apply(manifest)

    def retrying() -> str | None:
        server = stack.kubelet.server_for("v2")
        if server is None:
            return None
        answer = httpx.get(f"{server.url}/v2/health/ready", timeout=2)
        return answer.text if answer.status_code == 503 and "retrying" in answer.text else None

    print("v2 while its store is down:", wait_for(retrying, timeout=60, what="v2 retrying its download"))
    assert stack.status("iris")["phase"] == "Progressing"
    store.start()
    try:
        status = stack.wait_status(
            "iris", promoted("v2"), timeout=180, what="v2 promoted once the store is up"
        )
    finally:
        store.stop()
    assert status.get("failedVersion") is None
    server = stack.kubelet.server_for("v2")
    assert server is not None
    assert server.process.alive()
    assert "RolledBack" not in stack.reasons("iris")
