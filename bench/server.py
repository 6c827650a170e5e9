"""Benchmark vigil-model-server against MLServer 1.7.1 under the same wrk load (`make bench-server`).

Trains an iris LogisticRegression, starts each server on 127.0.0.1, drives it with single-row
V2 infer requests at 16 and 64 connections for a bounded time, and prints one table with
requests/s, p50 and p99 latency, and our ratios to MLServer's better configuration.
Then mirroring (issue 14's Shadow): p99 at 16 connections of a server mirroring every answer to a
real candidate server vs the same server without while bench/candidate_feeder.py gives the candidate
the same copies (so the candidate's own CPU, which a cluster gives pods of their own, weighs on both),
in alternating rounds, with the server alone beside them; the run fails (exit 1) when the median of
the rounds' p99 ratios is above MIRROR_P99_GOAL. `--mirroring-only` runs only that part.
MLServer gets its own virtualenv under .work/bench/ (uvloop<0.20: with uvloop 0.2x MLServer
1.7.1's worker processes crash at start on Python 3.11); wrk comes from Debian.
"""

from __future__ import annotations

import argparse
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
from statistics import median

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
# Mirroring: alternating rounds off/on at MIRROR_CONNECTIONS; the goal is on p99 / off p99.
MIRROR_CONNECTIONS = 16
MIRROR_ROUNDS = 5
MIRROR_P99_GOAL = 1.10
MIRROR_TOKEN = "bench-mirror-token"
# The control runs must load the candidate at least this much (copies fed / copies mirrored, per second).
FEED_SHARE_GOAL = 0.9

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


def vigil_argv(model_path: Path, port: int, version: str, *extra: str) -> list[str]:
    """The command line serving `model_path` as iris `version` on 127.0.0.1:`port`."""
    return [
        str(VIGIL_SERVER),
        "--model-uri",
        str(model_path),
        "--model-name",
        MODEL_NAME,
        "--model-version",
        version,
        "--sha256",
        hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *extra,
    ]


@dataclass(frozen=True)
class Mirroring:
    """Alternating rounds of three runs each, and what the mirroring server and the feeder counted.

    `on`: wrk drives the server that mirrors into the candidate. `off`: wrk drives the server that does
    not mirror while the feeder gives the candidate the same load (the control the goal is measured
    against). `alone`: the same server with the candidate idle, as without any shadow at all.
    """

    off: list[Result]
    on: list[Result]
    alone: list[Result]
    copies: dict[str, float]  # vigil_model_mirror_total{kind="predictions"} by result
    fed: int  # requests the feeder posted to the candidate in the `off` runs
    fed_refused: int
    fed_seconds: float

    @property
    def p99_ratio(self) -> float:
        """The median of the rounds' on/off ratios: a round's runs are back to back, so changes
        in the machine's load between rounds (other jobs come and go) cancel out."""
        return _median_ratio(self.on, self.off)

    @property
    def colocated_p99_ratio(self) -> float:
        """On against the server alone: adds what the candidate's own CPU costs on this machine."""
        return _median_ratio(self.on, self.alone)

    @property
    def throughput_ratio(self) -> float:
        return median(r.requests_per_second for r in self.on) / median(
            r.requests_per_second for r in self.off
        )

    @property
    def mirrored_per_second(self) -> float:
        """Copies the mirroring server sent per second wrk drove it (its warm-up included)."""
        return self.copies.get("sent", 0) / (RUN_SECONDS * len(self.on) + WARMUP_SECONDS)

    @property
    def fed_per_second(self) -> float:
        return self.fed / self.fed_seconds if self.fed_seconds else 0.0


def _median_ratio(numerators: list[Result], denominators: list[Result]) -> float:
    return median(a.p99_ms / b.p99_ms for a, b in zip(numerators, denominators, strict=True))


def measure_mirroring(model_path: Path, wrk_path: str, script: Path) -> Mirroring:
    """p99 of a server mirroring to a real candidate vs one that does not, in alternating rounds.

    Both stable servers and the candidate run throughout, so each run differs only in which server
    wrk drives and in whether the feeder runs; the order rotates so that drift in the machine's load
    weighs on every arm. The candidate runs under SCHED_IDLE (`chrt --idle 0`: only on CPU time
    nothing else wants; nice 19 still took slices from the stable server), yet its work still slows
    the stable server on a machine wrk and the stable server fill: with the stable server not
    mirroring, feeding the candidate the same copies raised p99 by 35-50% (docs/model-server.md). In a
    cluster the candidate has pods of its own. So the goal compares against the control in which the
    feeder (bench/candidate_feeder.py, also SCHED_IDLE) gives the candidate that load: what differs
    is the stable server's own cost of mirroring. The run against the server alone is reported too.
    Copies the candidate could not take show as failed in the table.
    """
    token = WORK / "mirror-token"
    token.write_text(MIRROR_TOKEN)
    auth = ("--feedback-token-file", str(token))
    candidate_port, on_port, off_port = free_port(), free_port(), free_port()
    candidate = [
        "chrt",
        "--idle",
        "0",
        *vigil_argv(model_path, candidate_port, "2", "--stable-version", "1", *auth),
    ]
    mirror = ("--mirror-url", f"http://127.0.0.1:{candidate_port}")
    mirroring = vigil_argv(model_path, on_port, "1", *mirror, *auth)
    plain = vigil_argv(model_path, off_port, "1", *auth)
    fed = fed_refused = 0
    fed_seconds = 0.0
    with (
        running(f"{VIGIL} (candidate)", candidate, candidate_port),
        running(f"{VIGIL} (mirroring on)", mirroring, on_port) as on,
        running(f"{VIGIL} (mirroring off)", plain, off_port) as off,
    ):
        rates = {}
        for name, url in (("off", off), ("on", on)):
            step(f"mirroring {name}: warming up for {WARMUP_SECONDS}s")
            rates[name] = wrk(wrk_path, script, url, MIRROR_CONNECTIONS, WARMUP_SECONDS)[0]
        # The feeder posts what the mirroring server sends: a copy of every request it answers.
        feed_rate = rates["on"]
        step(f"the feeder gives the candidate {feed_rate:.0f} requests/s in the control runs")
        arms = (("off", off, True), ("on", on, False), ("alone", off, False))
        runs: dict[str, list[Result]] = {"off": [], "on": [], "alone": []}
        for round_number in range(MIRROR_ROUNDS):
            shift = round_number % len(arms)
            for name, url, feeding in arms[shift:] + arms[:shift]:
                step(f"mirroring {name}, round {round_number + 1}: {RUN_SECONDS}s")
                with _feeder(candidate_port, feed_rate, token, enabled=feeding) as counted:
                    rps, p50, p99, failed = wrk(wrk_path, script, url, MIRROR_CONNECTIONS, RUN_SECONDS)
                if feeding:
                    fed, fed_refused = fed + counted[0], fed_refused + counted[1]
                    fed_seconds += RUN_SECONDS
                runs[name].append(
                    Result(f"{VIGIL} (mirroring {name})", MIRROR_CONNECTIONS, rps, p50, p99, failed)
                )
        copies = _mirror_counts(f"http://127.0.0.1:{on_port}/metrics")
    return Mirroring(runs["off"], runs["on"], runs["alone"], copies, fed, fed_refused, fed_seconds)


@contextmanager
def _feeder(candidate_port: int, rate: float, token: Path, *, enabled: bool) -> Iterator[list[int]]:
    """Run bench/candidate_feeder.py for the block (if `enabled`); yields [posted, refused], set on exit."""
    counted = [0, 0]
    if not enabled:
        yield counted
        return
    argv = [
        "chrt",
        "--idle",
        "0",
        sys.executable,
        str(Path(__file__).with_name("candidate_feeder.py")),
        f"http://127.0.0.1:{candidate_port}",
        f"{rate:.0f}",
        str(token),
    ]
    feeder = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        yield counted
    finally:
        feeder.terminate()
        output, _ = feeder.communicate(timeout=30)
    line = next((line for line in output.splitlines() if line.startswith("FED ")), None)
    if line is None:
        sys.exit(f"error: the candidate feeder stopped without counting (exit status {feeder.returncode})")
    counted[0], counted[1] = (int(value) for value in line.split()[1:])


def _mirror_counts(metrics_url: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "vigil_model_mirror_total" and sample.labels["kind"] == "predictions"
    }


def mirroring_table(mirroring: Mirroring) -> str:
    """The median rows, each round's p99, the ratios against the goal, and the copies counted."""
    lines = []
    for name, runs in (
        ("off, candidate fed", mirroring.off),
        ("on", mirroring.on),
        ("off, candidate idle", mirroring.alone),
    ):
        lines.append(
            f"{VIGIL + f' (mirroring {name})':<48} {MIRROR_CONNECTIONS:>5} "
            f"{median(r.requests_per_second for r in runs):>9.0f} {median(r.p50_ms for r in runs):>8.2f} "
            f"{median(r.p99_ms for r in runs):>8.2f} {sum(r.failed for r in runs):>7}"
        )
    rounds = ", ".join(
        f"{a.p99_ms:.2f}/{b.p99_ms:.2f}/{c.p99_ms:.2f}"
        for a, b, c in zip(mirroring.off, mirroring.on, mirroring.alone, strict=True)
    )
    copies = mirroring.copies
    verdict = "met" if mirroring.p99_ratio <= MIRROR_P99_GOAL else "MISSED"
    lines += [
        "",
        f"mirroring at {MIRROR_CONNECTIONS} connections: p99 on/off {mirroring.p99_ratio:.3f}, the median of "
        f"{MIRROR_ROUNDS} rounds (goal <= {MIRROR_P99_GOAL:.2f}: {verdict}); "
        f"req/s on/off {mirroring.throughput_ratio:.3f}",
        f"with the candidate's own CPU on this machine (on / off with the candidate idle): p99 "
        f"{mirroring.colocated_p99_ratio:.3f} (not a goal: in a cluster the candidate has its own pods)",
        f"p99 ms off/on/idle per round: {rounds}",
        f"copies mirrored to the candidate: {copies.get('sent', 0):.0f} sent "
        f"({mirroring.mirrored_per_second:.0f}/s), "
        f"{copies.get('dropped', 0):.0f} dropped, {copies.get('failed', 0):.0f} failed",
        f"copies fed by bench/candidate_feeder.py in the control runs: {mirroring.fed} "
        f"({mirroring.fed_per_second:.0f}/s), {mirroring.fed_refused} refused",
    ]
    return "\n".join(lines)


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirroring-only", action="store_true", help="run only the mirroring rounds")
    mirroring_only = parser.parse_args().mirroring_only
    started = datetime.now(UTC)
    WORK.mkdir(parents=True, exist_ok=True)
    step(
        f"load average before: {' '.join(f'{load:.2f}' for load in os.getloadavg())} on {os.cpu_count()} CPUs"
    )
    step("training the iris LogisticRegression")
    model_path = train_model(WORK / "model")
    wrk_path = ensure_wrk()
    script = WORK / "infer.lua"
    script.write_text(WRK_SCRIPT % json.dumps(BODY, separators=(",", ":")))
    if mirroring_only:
        mirroring = measure_mirroring(model_path, wrk_path, script)
        print()
        print(f"Mirroring: single-row V2 infer, wrk -t1, {RUN_SECONDS}s per run, 127.0.0.1")
        print(_when(started))
        print(mirroring_table(mirroring))
        _exit_if_missed(mirroring)
        return
    mlserver = ensure_mlserver()

    results: list[Result] = []
    for name, extra in ((VIGIL, []), (f"{VIGIL} (batching off)", ["--batching", "false"])):
        port = free_port()
        with running(name, vigil_argv(model_path, port, "1", *extra), port) as url:
            results += measure(name, wrk_path, script, url)
    mirroring = measure_mirroring(model_path, wrk_path, script)
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
    print(_when(started))
    print(table(results))
    print()
    print(mirroring_table(mirroring))
    _exit_if_missed(mirroring)


def _when(started: datetime) -> str:
    return (
        f"{started:%Y-%m-%d %H:%M} UTC, load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


def _exit_if_missed(mirroring: Mirroring) -> None:
    lost = mirroring.copies.get("failed", 0) + mirroring.copies.get("dropped", 0)
    if lost:
        sys.exit(f"error: {lost:.0f} copies were not mirrored: the ratio would flatter mirroring")
    if mirroring.fed_refused or mirroring.fed_per_second < FEED_SHARE_GOAL * mirroring.mirrored_per_second:
        sys.exit(
            f"error: the feeder gave the candidate {mirroring.fed_per_second:.0f} copies/s "
            f"({mirroring.fed_refused} refused), short of the {mirroring.mirrored_per_second:.0f}/s "
            "mirrored: a lighter control would flatter mirroring"
        )
    if mirroring.p99_ratio > MIRROR_P99_GOAL:
        sys.exit(
            f"error: with mirroring on, p99 is {mirroring.p99_ratio:.3f}x the p99 without "
            f"(goal <= {MIRROR_P99_GOAL:.2f})"
        )


if __name__ == "__main__":
    main()
