"""What one tick of checks costs a real Prometheus, batched and one query per object.

Starts the label stream (`bench/label_stream.py`) with N models, a real Prometheus scraping it,
and runs the operator's own check path (`reconcile.run_check`) for N objects at a few ticks: with
the batcher (one query per tick) and without (one query per object). Prints queries per tick as
Prometheus counts them, the time a tick's checks take, and the batched answer's size.

    .venv/bin/python bench/batched_query.py --objects 1000 --ticks 5

Exits non-zero when a batched tick takes more than one query.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402

from harness.ports import free_port  # noqa: E402
from harness.processes import ProcessGroup  # noqa: E402
from harness.prometheus import LocalPrometheus, queries_answered  # noqa: E402
from harness.waiting import wait_for  # noqa: E402
from vigil_operator import prometheus as adapter  # noqa: E402
from vigil_operator.batcher import Batcher  # noqa: E402
from vigil_operator.batching import CheckRequest, batch_query, tick_floor  # noqa: E402
from vigil_operator.decisions import QueryPlan  # noqa: E402
from vigil_operator.queries import Target  # noqa: E402
from vigil_operator.reconcile import run_check  # noqa: E402
from vigil_operator.releases import AnalysisSpec, ModelDeploymentSpec, Release  # noqa: E402

NAMESPACE = "bench"
# Scraping thousands of series takes a while on a busy machine; a scrape that overruns its
# interval fails and marks every series stale, so this scrapes every 5 s and checks every 10 s.
SCRAPE_SECONDS = 5
INTERVAL = 10.0


async def tick(url: str, targets: list[Target], at: datetime, batcher: Batcher | None) -> float:
    """Seconds for every object's check of one tick, all started at once (as supervisors do)."""
    spec = ModelDeploymentSpec(
        release=Release("v1", "/m.joblib", "img"),
        analysis=AnalysisSpec(prometheus_url=url, interval=INTERVAL, query_timeout=60.0),
    )
    plan = QueryPlan(cumulative=False, range_seconds=INTERVAL, window_seconds=300.0)
    started = time.perf_counter()
    results = await asyncio.gather(*(run_check(spec, t, plan, at=at, batcher=batcher) for t in targets))
    errors = [m.error for m, _ in results if m.error]
    if errors:
        raise SystemExit(f"{len(errors)} checks failed, e.g. {errors[0]}")
    return time.perf_counter() - started


async def measure(url: str, targets: list[Target], ticks: int) -> dict[str, list[float]]:
    last = tick_floor(datetime.now(UTC) - timedelta(seconds=2 * SCRAPE_SECONDS), INTERVAL)
    moments = [last - timedelta(seconds=INTERVAL * back) for back in range(ticks - 1, -1, -1)]
    found: dict[str, list[float]] = {"batched": [], "batched_queries": [], "single": [], "single_queries": []}
    try:
        for kind, batcher in (("batched", Batcher()), ("single", None)):
            for moment in moments:
                before = queries_answered(url)
                found[kind].append(await tick(url, targets, moment, batcher))
                found[f"{kind}_queries"].append(queries_answered(url) - before)
    finally:
        await adapter.close()
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=5)
    args = parser.parse_args()
    targets = [Target(f"model-{index:04d}", NAMESPACE, "v1") for index in range(args.objects)]
    with tempfile.TemporaryDirectory(prefix="vigil-batched-") as workdir:
        processes = ProcessGroup(log_dir=Path(workdir) / "logs")
        try:
            port = free_port()
            argv = [sys.executable, str(ROOT / "bench" / "label_stream.py"), "--port", str(port)]
            argv += ["--models", str(args.objects), "--namespace", NAMESPACE, "--labels-per-second", "5"]
            processes.start("label-stream", argv)
            stream = {
                "job_name": "label-stream",
                "scrape_interval": f"{SCRAPE_SECONDS}s",
                "scrape_timeout": f"{SCRAPE_SECONDS}s",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
            }
            prometheus = LocalPrometheus.start(Path(workdir) / "prometheus", processes, jobs=(stream,))
            span = (args.ticks + 1) * INTERVAL + 2 * SCRAPE_SECONDS
            scrapes = int(span / SCRAPE_SECONDS) - 1
            series = f'vigil_model_feedback_total{{namespace="{NAMESPACE}"}}'
            wanted = f"count(count_over_time({series}[{span:g}s]) >= {scrapes})"
            wait_for(
                lambda: (
                    prometheus.query(wanted)
                    and float(prometheus.query(wanted)[0]["value"][1]) == args.objects
                ),
                timeout=span + 120,
                what=f"{args.objects} streams scraped for {span:g} s",
            )
            found = asyncio.run(measure(prometheus.url, targets, args.ticks))
            query = batch_query([CheckRequest(t, INTERVAL) for t in targets]).query
            answer = httpx.post(f"{prometheus.url}/api/v1/query", data={"query": query}, timeout=60)
        finally:
            processes.close()
    print(f"{args.objects} objects, {args.ticks} ticks, one Prometheus scraping the label stream")
    print("| path | queries per tick | seconds per tick (median, max) |")
    print("| --- | --- | --- |")
    for kind in ("batched", "single"):
        queries = found[f"{kind}_queries"]
        print(
            f"| {kind} | {statistics.median(queries):g} (max {max(queries):g}) | "
            f"{statistics.median(found[kind]):.3f}, {max(found[kind]):.3f} |"
        )
    print(f"batched query: {len(query)} characters; answer: {len(answer.content)} bytes")
    return 0 if max(found["batched_queries"]) <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
