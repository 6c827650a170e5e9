"""A real Prometheus (Debian's package) in a temporary folder, scraping given targets."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from harness.cluster import BIN_DIR
from harness.ports import free_port
from harness.processes import LocalProcess, ProcessGroup
from harness.waiting import wait_for

SCRAPE_INTERVAL = "1s"


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        raise RuntimeError("prometheus not found; run `make prometheus` (installs Debian's package)")
    return path


def prometheus3_binary() -> str:
    """Prometheus 3.x with Kubernetes service discovery (`make node-tools`; Debian's has none)."""
    path = BIN_DIR / "prometheus3"
    if not path.exists():
        raise RuntimeError(f"{path} not found; run `make node-tools` (builds Prometheus 3 from Go modules)")
    return str(path)


def queries_answered(url: str) -> float:
    """Instant queries the Prometheus at `url` has answered, from its own /metrics (no query itself)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "prometheus_http_requests_total" and sample.labels.get("handler") == "/api/v1/query"
    )


@dataclass(frozen=True)
class ScrapeTarget:
    """One host:port to scrape, with the target labels pod discovery would set."""

    address: str
    labels: dict[str, str] = field(default_factory=dict)
    job: str = "vigil-model-servers"


@dataclass
class LocalPrometheus:
    """A running Prometheus; `set_targets` rewrites its config and reloads it."""

    workdir: Path
    port: int
    processes: ProcessGroup
    process: LocalProcess | None = None
    # Where it listens: 127.0.0.1, or the real node's IP so that pods (the operator) reach it.
    host: str = "127.0.0.1"
    # Scrape jobs as written in prometheus.yml (e.g. kubernetes_sd_configs), besides the targets.
    jobs: tuple[dict[str, Any], ...] = ()
    binary: str = ""  # empty: Debian's `prometheus`
    targets: list[ScrapeTarget] = field(default_factory=list)  # as last set

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    @classmethod
    def start(
        cls,
        workdir: Path,
        processes: ProcessGroup,
        targets: tuple[ScrapeTarget, ...] = (),
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        jobs: tuple[dict[str, Any], ...] = (),
        binary: str = "",
    ) -> LocalPrometheus:
        """Start on `host`:`port` (a free port by default) and wait until it is ready."""
        workdir.mkdir(parents=True, exist_ok=True)
        prometheus = cls(
            workdir=workdir,
            port=port or free_port(),
            processes=processes,
            host=host,
            jobs=jobs,
            binary=binary,
        )
        prometheus._write_config(list(targets))
        prometheus._launch()
        return prometheus

    def _launch(self) -> None:
        self.process = self.processes.start(
            "prometheus",
            [
                self.binary or prometheus_binary(),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address={self.host}:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
        )
        wait_for(self._ready, timeout=60, what=f"Prometheus ready on {self.url}")

    def _ready(self) -> bool:
        if self.process is not None and not self.process.alive():
            raise RuntimeError(f"Prometheus exited:\n{self.process.log()[-2000:]}")
        return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200

    def _write_config(self, targets: list[ScrapeTarget]) -> None:
        self.targets = list(targets)
        jobs: dict[str, list[dict]] = {}
        for target in targets:
            jobs.setdefault(target.job, []).append({"targets": [target.address], "labels": target.labels})
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "scrape_configs": [
                {"job_name": job, "scrape_interval": SCRAPE_INTERVAL, "static_configs": static}
                for job, static in jobs.items()
            ]
            + list(self.jobs),
        }
        self.config_path.write_text(yaml.safe_dump(config))

    def set_targets(self, targets: list[ScrapeTarget]) -> None:
        """Replace the scrape targets and reload the configuration."""
        self._write_config(targets)
        response = httpx.post(f"{self.url}/-/reload", timeout=10)
        response.raise_for_status()

    def add_jobs(self, *jobs: dict[str, Any]) -> None:
        """Scrape these jobs too (beside the targets, which stay) and reload the configuration."""
        self.jobs = (*self.jobs, *jobs)
        self.set_targets(self.targets)

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict]:
        """Range query as a dashboard panel runs it; raises when Prometheus rejects the query."""
        response = httpx.get(
            f"{self.url}/api/v1/query_range",
            params={"query": promql, "start": start, "end": end, "step": step},
            timeout=10,
        )
        body = response.json()
        assert body["status"] == "success", f"{promql}: {body}"
        return body["data"]["result"]

    def stop(self) -> None:
        """Stop Prometheus, keeping its data (a later `restart` serves it again)."""
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        self._launch()

    def query(self, promql: str) -> list[dict]:
        """Instant query through the HTTP API; returns the result vector."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def wait_for_value(self, promql: str, predicate, timeout: float = 60) -> float:
        """Wait until the query returns one sample whose value satisfies `predicate`."""

        def current() -> float | None:
            result = self.query(promql)
            if len(result) == 1:
                value = float(result[0]["value"][1])
                return value if predicate(value) else None
            return None

        return wait_for(current, timeout=timeout, what=f"{promql!r} to satisfy the predicate")
