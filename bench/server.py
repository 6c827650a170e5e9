"""Benchmark vigil-model-server against MLServer 1.7.1 under the same wrk load (`make bench-server`).

Trains an iris LogisticRegression, starts each server on 127.0.0.1, drives it with single-row
V2 infer requests at 16 and 64 connections for a bounded time, and prints one table with
requests/s, p50 and p99 latency, and our ratios to MLServer's better configuration.
MLServer gets its own virtualenv under .work/bench/ (uvloop<0.20: with uvloop 0.2x MLServer
1.7.1's worker processes crash at start on Python 3.11); wrk comes from Debian.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".work" / "bench"
MLSERVER_VENV = WORK / "mlserver-venv"
MLSERVER_PACKAGES = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.20"]
VIGIL_SERVER = ROOT / ".venv" / "bin" / "vigil-model-server"
MODEL_NAME = "iris"
VIGIL = "vigil-model-server"
CONNECTIONS = (16, 64)
WARMUP_SECONDS = 3
RUN_SECONDS = 10
READY_TIMEOUT_SECONDS = 120
PIP_TIMEOUT_SECONDS = 900
BODY = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [[5.1, 3.5, 1.4, 0.2]]}]}
# MLServer's adaptive batching: a batch closes at this many requests or after this long.
MLSERVER_MAX_BATCH_SIZE = 16
MLSERVER_MAX_BATCH_TIME = 0.002

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("BENCH %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status, errors))
end
"""


@dataclass(frozen=True)
class Result:
    """One wrk run against one server configuration."""

    server: str
    connections: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    failed: int


def step(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train_model(model_dir: Path) -> Path:
    """An iris LogisticRegression saved with joblib, beside MLServer's model-settings.json."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    model_dir.mkdir(parents=True, exist_ok=True)
    features, labels = load_iris(return_X_y=True)
    path = model_dir / "model.joblib"
    joblib.dump(LogisticRegression(max_iter=1000).fit(features, labels), path)
    return path


def ensure_wrk() -> str:
    """wrk's path, installing Debian's package when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    step("installing wrk with apt-get")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "wrk"], check=True, timeout=PIP_TIMEOUT_SECONDS)
    found = shutil.which("wrk")
    if not found:
        sys.exit("error: wrk is still missing after apt-get install wrk")
    return found


def ensure_mlserver() -> Path:
    """The mlserver executable of .work/bench/mlserver-venv, creating the virtualenv on first use."""
    mlserver = MLSERVER_VENV / "bin" / "mlserver"
    marker = MLSERVER_VENV / ".installed"
    if mlserver.exists() and marker.exists() and marker.read_text() == " ".join(MLSERVER_PACKAGES):
        return mlserver
    packages = " ".join(MLSERVER_PACKAGES)
    step(f"creating {MLSERVER_VENV.relative_to(ROOT)} with {packages} (first run: a few minutes)")
    subprocess.run([_base_python(), "-m", "venv", "--clear", str(MLSERVER_VENV)], check=True)
    pip = [str(MLSERVER_VENV / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    process = subprocess.Popen(
        [*pip, "--progress-bar", "off", *MLSERVER_PACKAGES],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + PIP_TIMEOUT_SECONDS
    for line in process.stdout:
        if line.startswith(("Collecting", "Successfully")):
            step("  " + line.strip()[:120])
        if time.monotonic() > deadline:
            process.kill()
            sys.exit(f"error: installing MLServer took more than {PIP_TIMEOUT_SECONDS}s")
    if process.wait() != 0:
        sys.exit("error: pip could not install MLServer; see the output above")
    marker.write_text(" ".join(MLSERVER_PACKAGES))
    return mlserver


def _base_python() -> str:
    """The interpreter our venv was made from (a venv made from a venv would share nothing anyway)."""
    return getattr(sys, "_base_executable", None) or sys.executable


@contextmanager
def running(name: str, argv: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start a server, wait until /v2/health/ready answers 200, yield its infer URL, stop it."""
    log_path = WORK / "logs" / f"{name.split()[0].lower()}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not _answers(f"{base}/v2/health/ready"):
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"error: {name} did not become ready; its log is {log_path}")
            time.sleep(0.2)
        url = f"{base}/v2/models/{MODEL_NAME}/infer"
        _check_answer(name, url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _check_answer(name: str, url: str) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(BODY).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        outputs = json.load(response)["outputs"]
    if outputs[0]["data"] != [0]:
        sys.exit(f"error: {name} predicted {outputs[0]['data']} for a setosa row; expected [0]")


def wrk(
    wrk_path: str, script: Path, url: str, connections: int, seconds: int
) -> tuple[float, float, float, int]:
    """requests/s, p50 ms, p99 ms and failed requests of one wrk run."""
    completed = subprocess.run(
        [wrk_path, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    line = next(line for line in completed.stdout.splitlines() if line.startswith("BENCH "))
    requests, duration_us, p50_us, p99_us, bad_status, errors = (int(value) for value in line.split()[1:])
    return requests / (duration_us / 1e6), p50_us / 1000, p99_us / 1000, bad_status + errors


def measure(name: str, wrk_path: str, script: Path, url: str) -> list[Result]:
    step(f"{name}: warming up for {WARMUP_SECONDS}s")
    wrk(wrk_path, script, url, CONNECTIONS[0], WARMUP_SECONDS)
    results = []
    for connections in CONNECTIONS:
        step(f"{name}: {connections} connections for {RUN_SECONDS}s")
        rps, p50, p99, failed = wrk(wrk_path, script, url, connections, RUN_SECONDS)
        results.append(Result(name, connections, rps, p50, p99, failed))
    return results


def mlserver_model_dir(model_path: Path, batching: bool) -> Path:
    """A model repository for `mlserver start`, with or without adaptive batching."""
    directory = WORK / ("mlserver-batching" if batching else "mlserver-default") / MODEL_NAME
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_path, directory / "model.joblib")
    model_settings: dict[str, object] = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "1"},
    }
    if batching:
        model_settings |= {
            "max_batch_size": MLSERVER_MAX_BATCH_SIZE,
            "max_batch_time": MLSERVER_MAX_BATCH_TIME,
        }
    (directory / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return directory.parent


def table(results: list[Result]) -> str:
    lines = [
        f"{'server':<40} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}",
        "-" * 82,
    ]
    for result in results:
        lines.append(
            f"{result.server:<40} {result.connections:>5} {result.requests_per_second:>9.0f} "
            f"{result.p50_ms:>8.2f} {result.p99_ms:>8.2f} {result.failed:>7}"
        )
    lines.append("")
    for connections in CONNECTIONS:
        ours = next(r for r in results if r.server == VIGIL and r.connections == connections)
        theirs = max(
            (r for r in results if r.server.startswith("MLServer") and r.connections == connections),
            key=lambda r: r.requests_per_second,
        )
        ratio = ours.requests_per_second / theirs.requests_per_second
        lines.append(
            f"{connections} connections: {ratio:.1f}x the req/s of "
            f"{theirs.server}; p99 {ours.p99_ms:.2f} ms vs {theirs.p99_ms:.2f} ms "
            f"({theirs.p99_ms / ours.p99_ms:.1f}x lower)"
        )
    return "\n".join(lines)


def main() -> None:
    started = datetime.now(UTC)
    WORK.mkdir(parents=True, exist_ok=True)
    step(
        f"load average before: {' '.join(f'{load:.2f}' for load in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    step("training the iris LogisticRegression")
    model_path = train_model(WORK / "model")
    wrk_path = ensure_wrk()
    mlserver = ensure_mlserver()
    script = WORK / "infer.lua"
    script.write_text(WRK_SCRIPT % json.dumps(BODY, separators=(",", ":")))

    results: list[Result] = []
    for name, extra in ((VIGIL, []), (f"{VIGIL} (batching off)", ["--batching", "false"])):
        port = free_port()
        argv = [
            str(VIGIL_SERVER),
            "--model-uri",
            str(model_path),
            "--model-name",
            MODEL_NAME,
            "--model-version",
            "1",
            "--sha256",
            hashlib.sha256(model_path.read_bytes()).hexdigest(),
        ]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *extra]
        with running(name, argv, port) as url:
            results += measure(name, wrk_path, script, url)
    for name, batching in (
        ("MLServer 1.7.1 (defaults)", False),
        ("MLServer 1.7.1 (adaptive batching)", True),
    ):
        port = free_port()
        env = {
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_HTTP_PORT": str(port),
            "MLSERVER_GRPC_PORT": str(free_port()),
            "MLSERVER_METRICS_PORT": str(free_port()),
        }
        argv = [str(mlserver), "start", str(mlserver_model_dir(model_path, batching))]
        with running(name, argv, port, env) as url:
            results += measure(name, wrk_path, script, url)

    print()
    print(f"Single-row V2 infer, iris LogisticRegression, wrk -t1, {RUN_SECONDS}s per run, 127.0.0.1")
    print(
        f"{started:%Y-%m-%d %H:%M} UTC, load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(table(results))


if __name__ == "__main__":
    main()
