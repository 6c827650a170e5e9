"""`make bench-scale`: one operator, 100 to 3,000 ModelDeployments, what it costs the cluster.

On the local cluster (kwok's fake nodes make each Deployment's pod Ready without running it) with
a real Prometheus scraping a label-stream exporter (`label_stream.py`: every model's feedback
counters at a steady accuracy), for each size and for each operator (this checkout's, "after";
and `--before REF`'s, by default main before issue 15), it measures at once, over a window of
steady state:

- the operator's memory (peak RSS) and CPU (cores), from /proc;
- API requests per second by verb on the objects the operator reads and writes, from the API
  server's own `apiserver_request_total` (scraped with the cluster's admin credentials), and the
  reads (GET, LIST, WATCH) per second per object;
- Prometheus queries per second and per analysis interval, from Prometheus's own
  `prometheus_http_requests_total`;
- the time from a spec change to the Deployment updated (p50, p99) on probe objects, and the
  time from a breach (a bad version serving) to the rollback, seen by a watch on the probes'
  Deployments.

The goals at 1,000 objects (the command fails when "after" misses one): RSS < 300 MB; at most 1
Prometheus query per interval per Prometheus; at most 0.1 API reads per second per object; p99
spec change to Deployment updated < 2 s; rollback within failureLimit x interval + 10 s. Time is
compressed (a 10 s analysis interval), and objects are added size after size to the same cluster.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from label_stream import LabelStream  # noqa: E402

from harness.cluster import VENV_BIN, LocalCluster  # noqa: E402
from harness.kubeapi import KubeApi  # noqa: E402
from harness.ports import free_port  # noqa: E402
from harness.processes import LocalProcess, ProcessGroup  # noqa: E402
from harness.prometheus import LocalPrometheus, ScrapeTarget  # noqa: E402
from harness.waiting import wait_for  # noqa: E402

BEFORE_REF = "966c227"  # main before issue 15
NAMESPACE, PROBES = "bench", "bench-probe"
GROUP_PATH = "/apis/vigil.dev/v1alpha1"
INTERVAL_SECONDS = 10
FAILURE_LIMIT = 3
GOOD, BAD = 0.97, 0.5
SPEC_PROBES, BREACH_PROBES = 10, 3
# The objects whose requests count: what the operator reads and writes (the controllers' and
# kwok's own traffic is on pods, nodes, leases and ReplicaSets).
OPERATOR_RESOURCES = frozenset({"modeldeployments", "deployments", "services", "secrets", "events"})
READ_VERBS = frozenset({"GET", "LIST", "WATCH"})
GOALS_AT = 1000
GOAL_RSS_MB = 300.0
GOAL_QUERIES_PER_INTERVAL = 1.0
GOAL_READS_PER_OBJECT = 0.1
GOAL_SPEC_P99 = 2.0
NODE = """\
apiVersion: v1
kind: Node
metadata:
  name: kwok-bench
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-bench, kubernetes.io/os: linux, type: kwok}
status:
  allocatable: {cpu: "10000", memory: 64Ti, pods: "20000"}
  capacity: {cpu: "10000", memory: 64Ti, pods: "20000"}
"""


# ---- pure parts (tests/unit/test_bench_scale.py) ----


def requests_by_verb(metrics_text: str, resources: Iterable[str] = OPERATOR_RESOURCES) -> dict[str, float]:
    """`apiserver_request_total` summed by verb over `resources` (every code, group, scope)."""
    wanted = set(resources)
    totals: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "apiserver_request":  # the parser drops a counter's `_total`
            continue
        for sample in family.samples:
            if sample.name == "apiserver_request_total" and sample.labels.get("resource") in wanted:
                totals[sample.labels.get("verb", "")] += sample.value
    return dict(totals)


def counter_sum(metrics_text: str, name: str, **match: str) -> float:
    """The sum of a counter's samples whose labels include `match`."""
    total = 0.0
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in match.items()):
                total += sample.value
    return total


def rates(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Per-second increase of each counter (a counter that restarted counts from zero)."""
    return {
        key: (value - before.get(key, 0.0) if value >= before.get(key, 0.0) else value) / seconds
        for key, value in sorted(after.items())
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def template_version(deployment: dict[str, Any]) -> str | None:
    """The model version a Deployment's pod template runs (the operator's `vigil.dev/version`)."""
    template = (deployment.get("spec") or {}).get("template") or {}
    return ((template.get("metadata") or {}).get("labels") or {}).get("vigil.dev/version")


def rolled_out(deployment: dict[str, Any]) -> bool:
    """Every replica updated and available, as `kubectl rollout status` reads it."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0) or 0
    return (
        status.get("observedGeneration", 0) >= (deployment.get("metadata") or {}).get("generation", 0)
        and updated >= wanted
        and (status.get("replicas", 0) or 0) <= updated
        and (status.get("availableReplicas", 0) or 0) >= updated
    )


Timeline = list[tuple[float, str | None, bool]]  # (seen at, template version, rolled out)


def first_seen(timeline: Timeline, version: str, after: float, *, rolled: bool = False) -> float | None:
    """When the Deployment first ran `version` (rolled out, if asked) at or after `after`."""
    return next((t for t, v, done in timeline if t >= after and v == version and (done or not rolled)), None)


def first_left(timeline: Timeline, version: str, after: float) -> float | None:
    """When the Deployment first ran anything but `version` after `after`: the rollback."""
    return next((t for t, v, _ in timeline if t > after and v is not None and v != version), None)


@dataclass
class Result:
    size: int
    operator: str
    window_seconds: float
    rss_mb: float
    cpu_cores: float
    requests_per_second: dict[str, float]
    reads_per_object: float
    prometheus_queries_per_second: float
    queries_per_interval: float
    spec_to_deployment: list[float] = field(default_factory=list)
    breach_to_rollback: list[float | None] = field(default_factory=list)
    settle_seconds: float = 0.0
    spec_missed: int = 0  # spec changes whose Deployment was not updated before the run ended

    @property
    def spec_p50(self) -> float | None:
        return percentile(self.spec_to_deployment, 50)

    @property
    def spec_p99(self) -> float | None:
        """None (missed) when a spec change never reached its Deployment."""
        return None if self.spec_missed else percentile(self.spec_to_deployment, 99)

    @property
    def rollback_worst(self) -> float | None:
        return None if None in self.breach_to_rollback else max(self.breach_to_rollback, default=None)  # type: ignore[type-var]


def missed_goals(result: Result, interval: float, failure_limit: int) -> list[str]:
    """The goals at 1,000 objects that `result` misses, as sentences."""
    missed = []
    if result.rss_mb >= GOAL_RSS_MB:
        missed.append(f"RSS {result.rss_mb:.0f} MB >= {GOAL_RSS_MB:.0f} MB")
    if result.queries_per_interval > GOAL_QUERIES_PER_INTERVAL:
        missed.append(
            f"{result.queries_per_interval:.1f} Prometheus queries per interval > {GOAL_QUERIES_PER_INTERVAL}"
        )
    if result.reads_per_object > GOAL_READS_PER_OBJECT:
        missed.append(f"{result.reads_per_object:.3f} API reads/s per object > {GOAL_READS_PER_OBJECT}")
    p99 = result.spec_p99
    if p99 is None or p99 >= GOAL_SPEC_P99:
        missed.append(f"p99 spec change -> Deployment {_s(p99)} >= {GOAL_SPEC_P99} s")
    limit = failure_limit * interval + 10
    worst = result.rollback_worst
    if worst is None or worst > limit:
        missed.append(f"breach -> rollback {_s(worst)} > {limit:g} s")
    return missed


def _s(value: float | None) -> str:
    return "missed" if value is None else f"{value:.2f} s"


def table(results: Sequence[Result]) -> str:
    """The before/after table, one row per size and operator."""
    head = (
        "| size | operator | RSS MB | CPU cores | API req/s by verb | reads/s/object | Prom q/s | q/interval "
        "| spec->Deployment p50 / p99 | breach->rollback (worst) |"
    )
    lines = [head, "|" + " --- |" * 10]
    for r in results:
        verbs = ", ".join(
            f"{verb} {rate:.1f}" for verb, rate in r.requests_per_second.items() if rate >= 0.05
        )
        lines.append(
            f"| {r.size} | {r.operator} | {r.rss_mb:.0f} | {r.cpu_cores:.2f} | {verbs or '-'} | "
            f"{r.reads_per_object:.3f} | {r.prometheus_queries_per_second:.1f} | "
            f"{r.queries_per_interval:.0f} | "
            f"{_s(r.spec_p50)} / {_s(r.spec_p99)} | {_s(r.rollback_worst)} |"
        )
    return "\n".join(lines)


# ---- the run ----


def model_deployment(
    name: str, namespace: str, version: str, prometheus_url: str, interval: int
) -> dict[str, Any]:
    return {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "version": version,
            "model": {"uri": f"http://models.bench.invalid/{name}/model.joblib"},
            "image": "vigil-model-server:bench",
            "replicas": 1,
            "analysis": {
                "prometheusUrl": prometheus_url,
                "interval": f"{interval}s",
                "window": "1m",
                "evaluationDelay": "1s",
                "minSamples": 50,
                "failureLimit": FAILURE_LIMIT,
                "successLimit": 2,
                "errorLimit": 5,
                "threshold": 0.9,
            },
        },
    }


class ProcessStats:
    """RSS and CPU time of one process, from /proc (Linux)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.ticks = os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.ticks  # utime, stime


class DeploymentWatch:
    """A watch on the probes' Deployments: when each ran which version, rolled out or not."""

    def __init__(self, api: KubeApi, namespace: str, seconds: float) -> None:
        self.api, self.namespace, self.seconds = api, namespace, seconds
        self.timelines: dict[str, Timeline] = defaultdict(list)
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> DeploymentWatch:
        self.thread.start()
        self.ready.wait(30)
        return self

    def _run(self) -> None:
        path = f"/apis/apps/v1/namespaces/{self.namespace}/deployments"
        listed = self.api.get(path)
        params = {"watch": "1", "resourceVersion": listed["metadata"]["resourceVersion"]}
        params["timeoutSeconds"] = str(int(self.seconds))
        with self.api.client.stream("GET", path, params=params, timeout=self.seconds + 30) as response:
            self.ready.set()
            for line in response.iter_lines():
                if not line:
                    continue
                obj = json.loads(line).get("object") or {}
                name = (obj.get("metadata") or {}).get("name")
                if name:
                    self.timelines[name].append((time.time(), template_version(obj), rolled_out(obj)))


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.processes = ProcessGroup(workdir / "logs")
        self.cluster: LocalCluster | None = None
        self.streams = {NAMESPACE: LabelStream(), PROBES: LabelStream()}
        self.created: dict[str, list[str]] = {NAMESPACE: [], PROBES: []}
        self.round = 0

    # -- set-up --
    def start(self) -> None:
        print("starting the local cluster, Prometheus and the label streams ...", flush=True)
        self.cluster = LocalCluster.start(self.workdir / "cluster", nodes=0)
        self.cluster.apply_crds()
        self.cluster.kubectl("apply", "-f", "-", input=NODE)
        for namespace in (NAMESPACE, PROBES):
            self.cluster.kubectl("create", "namespace", namespace)
        self.api = KubeApi(self.cluster.kubeconfig)
        targets = tuple(
            ScrapeTarget(f"127.0.0.1:{stream.start().port}", {"namespace": ns}, job=f"labels-{ns}")
            for ns, stream in self.streams.items()
        )
        self.prometheus = LocalPrometheus.start(self.workdir / "prometheus", self.processes, targets)

    def stop(self) -> None:
        self.processes.close()
        for stream in self.streams.values():
            stream.stop()
        if self.cluster is not None:
            self.cluster.stop()

    def grow_to(self, size: int) -> None:
        """Create ModelDeployments (at v1, good labels) until there are `size`, probes included."""
        probes = SPEC_PROBES + BREACH_PROBES
        want = {PROBES: probes, NAMESPACE: max(0, size - probes)}
        started = time.monotonic()
        for namespace, count in want.items():
            names = self.created[namespace]
            for index in range(len(names), count):
                name = f"m{index:05d}"
                self.streams[namespace].set(name, "v1", GOOD)
                manifest = model_deployment(name, namespace, "v1", self.prometheus.url, self.args.interval)
                response = self.api.client.post(
                    f"{GROUP_PATH}/namespaces/{namespace}/modeldeployments", json=manifest
                )
                response.raise_for_status()
                names.append(name)
        print(f"  {size} ModelDeployments exist ({time.monotonic() - started:.0f} s to create)", flush=True)

    # -- one operator --
    def start_operator(self, label: str, source: Path) -> LocalProcess:
        assert self.cluster is not None
        port = free_port()
        env = {
            "KUBECONFIG": str(self.cluster.kubeconfig),
            "PYTHONPATH": str(source / "operator"),
            "VIGIL_DEFAULT_IMAGE": "vigil-model-server:bench",
            "PATH": self.cluster.env()["PATH"],
        }
        argv = [
            str(VENV_BIN / "python"),
            "-m",
            "vigil_operator.main",
            "--liveness-port",
            str(port),
            "--metrics-port",
            "0",
        ]
        process = self.processes.start(f"operator-{label}", argv, env=env)

        def live() -> bool:
            if not process.alive():
                raise RuntimeError(f"the {label} operator exited:\n{process.log()[-3000:]}")
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(live, timeout=120, what=f"the {label} operator's liveness endpoint")
        return process

    def settled(self) -> tuple[int, int] | None:
        """(objects at rest, objects): Promoted or RolledBack, status for the current generation;
        None when the API server is too busy to list them now (a start-up burst)."""
        try:
            response = self.api.client.get(f"{GROUP_PATH}/modeldeployments", timeout=120)
            response.raise_for_status()
        except httpx.HTTPError as error:
            print(f"    (listing ModelDeployments: {error!r}; trying again)", flush=True)
            return None
        items = response.json()["items"]
        done = sum(
            1
            for item in items
            if (item.get("status") or {}).get("phase") in ("Promoted", "RolledBack")
            and (item.get("status") or {}).get("observedGeneration") == item["metadata"].get("generation")
        )
        return done, len(items)

    def wait_settled(self, size: int) -> float:
        started = time.monotonic()
        deadline = started + self.args.settle_timeout + size * 0.3
        counts = None
        while time.monotonic() < deadline:
            counts = self.settled() or counts
            if counts is not None and counts[0] == counts[1]:
                return time.monotonic() - started
            time.sleep(5)
        raise RuntimeError(f"not every ModelDeployment settled within {deadline - started:.0f} s: {counts}")

    def snapshot(self) -> tuple[dict[str, float], float]:
        assert self.cluster is not None
        apiserver = self.cluster.kubectl("get", "--raw", "/metrics", timeout=60).stdout
        prometheus = httpx.get(f"{self.prometheus.url}/metrics", timeout=10).text
        queries = sum(
            counter_sum(prometheus, "prometheus_http_requests_total", handler=handler)
            for handler in ("/api/v1/query", "/api/v1/query_range")
        )
        return requests_by_verb(apiserver), queries

    def measure(self, label: str, source: Path, size: int) -> Result:
        print(f"  [{label}] starting the operator from {source}", flush=True)
        process = self.start_operator(label, source)
        stats = ProcessStats(process.pid)
        settle = self.wait_settled(size)
        warmup = max(2 * self.args.interval + 10, size / 50)
        print(
            f"  [{label}] settled in {settle:.0f} s; {warmup:.0f} s more for the start-up rounds", flush=True
        )
        time.sleep(warmup)  # a fixed wait, not for a condition: the start-up rounds must be over
        window = float(self.args.window)
        watch = DeploymentWatch(self.api, PROBES, window + 60).start()
        self.round += 1
        api_before, queries_before = self.snapshot()
        cpu_before, started = stats.cpu_seconds(), time.time()
        changes = self._probe(started, window)
        peak_rss = 0.0
        while time.time() < started + window:
            peak_rss = max(peak_rss, stats.rss_mb())
            time.sleep(2)
        elapsed = time.time() - started
        api_after, queries_after = self.snapshot()
        cpu = (stats.cpu_seconds() - cpu_before) / elapsed
        # A slow operator's rollbacks may come after the window: wait for them (bounded), so a
        # late one is measured as late, not as missing.
        grace_until = time.time() + FAILURE_LIMIT * self.args.interval + 30
        while time.time() < grace_until and not all(
            (served := first_seen(watch.timelines[name], version, at, rolled=True)) is not None
            and first_left(watch.timelines[name], version, served) is not None
            for name, version, at in changes["breach"]
        ):
            time.sleep(1)
        process.stop()
        per_verb = rates(api_before, api_after, elapsed)
        reads = sum(rate for verb, rate in per_verb.items() if verb in READ_VERBS)
        query_rate = max(0.0, queries_after - queries_before) / elapsed
        spec_times = [
            t - at
            for name, version, at in changes["spec"]
            if (t := first_seen(watch.timelines[name], version, at)) is not None
        ]
        spec_missed = len(changes["spec"]) - len(spec_times)
        breach_times: list[float | None] = []
        for name, version, at in changes["breach"]:
            served = first_seen(watch.timelines[name], version, at, rolled=True)
            back = first_left(watch.timelines[name], version, served) if served is not None else None
            breach_times.append(None if back is None or served is None else back - served)
        return Result(
            size=size,
            operator=label,
            window_seconds=round(elapsed, 1),
            rss_mb=round(peak_rss, 1),
            cpu_cores=round(cpu, 3),
            requests_per_second={k: round(v, 3) for k, v in per_verb.items()},
            reads_per_object=round(reads / size, 4),
            prometheus_queries_per_second=round(query_rate, 2),
            queries_per_interval=round(query_rate * self.args.interval, 1),
            spec_to_deployment=[round(t, 3) for t in spec_times],
            breach_to_rollback=[None if t is None else round(t, 2) for t in breach_times],
            settle_seconds=round(settle, 1),
            spec_missed=spec_missed,
        )

    def _probe(self, started: float, window: float) -> dict[str, list[tuple[str, str, float]]]:
        """Spec changes spread over the window's first third, breaches at its start (in a thread,
        so the window's sampling goes on); returns (name, version, when) per change as it happens."""
        changes: dict[str, list[tuple[str, str, float]]] = {"spec": [], "breach": []}
        names = self.created[PROBES]
        breach, spec = names[:BREACH_PROBES], names[BREACH_PROBES:]
        gap = window / 3 / max(1, len(spec))

        def patch(name: str, version: str, accuracy: float, kind: str) -> None:
            self.streams[PROBES].set(name, version, accuracy)
            at = time.time()
            response = self.api.client.patch(
                f"{GROUP_PATH}/namespaces/{PROBES}/modeldeployments/{name}",
                json={"spec": {"version": version}},
                headers={"Content-Type": "application/merge-patch+json"},
                timeout=60,
            )
            response.raise_for_status()
            changes[kind].append((name, version, at))

        def run() -> None:
            for name in breach:
                patch(name, f"bad{self.round}", BAD, "breach")
            for name in spec:
                patch(name, f"good{self.round}", GOOD, "spec")
                time.sleep(gap)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(window / 2)
        return changes


def source_of(ref: str, workdir: Path) -> Path:
    """The operator package of git `ref`, extracted (no worktree, nothing changed in the repo)."""
    target = workdir / f"src-{ref}"
    if not (target / "operator").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "operator"], capture_output=True, check=True
        )
        with tempfile.TemporaryFile() as handle:
            handle.write(archive.stdout)
            handle.seek(0)
            with tarfile.open(fileobj=handle) as tar:
                tar.extractall(target, filter="data")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="100,1000,3000", help="ModelDeployments, comma-separated (ascending)"
    )
    parser.add_argument(
        "--before", default=BEFORE_REF, help="git ref of the 'before' operator; '' to skip it"
    )
    parser.add_argument("--operator-src", type=Path, default=ROOT, help="checkout of the 'after' operator")
    parser.add_argument("--interval", type=int, default=INTERVAL_SECONDS, help="analysis interval, seconds")
    parser.add_argument("--window", type=int, default=60, help="seconds of steady state measured")
    parser.add_argument("--settle-timeout", type=int, default=180, help="seconds (plus 0.3 per object)")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".work" / "bench-scale")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=args.workdir))
    operators = [("after", args.operator_src.resolve())]
    if args.before:
        operators.append(("before", source_of(args.before, workdir)))
    bench = Bench(args, workdir)
    results: list[Result] = []
    started = time.monotonic()
    failure = None
    try:
        bench.start()
        for size in sizes:
            print(f"size {size}:", flush=True)
            bench.grow_to(size)
            for label, source in operators:
                result = bench.measure(label, source, size)
                results.append(result)
                print(table([result]).splitlines()[-1], flush=True)
    except (RuntimeError, OSError, httpx.HTTPError, subprocess.SubprocessError, KeyboardInterrupt) as error:
        failure = f"{type(error).__name__}: {error}"  # the table still shows what was measured
    finally:
        bench.stop()
    (args.workdir / "results.json").write_text(
        json.dumps([asdict(r) | {"spec_p50": r.spec_p50, "spec_p99": r.spec_p99} for r in results], indent=2)
    )
    print(
        f"\nbench-scale: interval {args.interval} s, window {args.window} s, "
        f"{time.monotonic() - started:.0f} s in all"
    )
    print(table(results))
    print(f"(results: {args.workdir / 'results.json'}; logs: {workdir / 'logs'})")
    if failure is not None:
        print(f"bench-scale stopped early: {failure[-2000:]}")
    gated = [r for r in results if r.size == GOALS_AT and r.operator == "after"]
    if not gated:
        print(f"no 'after' run at {GOALS_AT} objects: goals not checked")
        return 1 if failure else 0
    missed = missed_goals(gated[0], args.interval, FAILURE_LIMIT) + ([failure] if failure else [])
    for goal in missed:
        print(f"GOAL MISSED at {GOALS_AT}: {goal}")
    if not missed:
        print(f"every goal at {GOALS_AT} objects met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
