"""Start real `vigil-model-server` processes and talk to them (used by this directory's tests)."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness.ports import free_port
from harness.processes import LocalProcess, ProcessGroup
from harness.waiting import wait_for

# The console script installed in the same virtualenv as pytest: the image's entry point.
SERVER = Path(sys.executable).parent / "vigil-model-server"
MODEL_NAME, MODEL_VERSION = "iris", "3"
STARTUP_TIMEOUT = 60


@dataclass
class ModelServer:
    """One running server and an HTTP client for it."""

    process: LocalProcess
    port: int
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def wait_live(self) -> ModelServer:
        """Wait until GET /v2/health/live answers 200."""
        return self._wait_for_200("/v2/health/live")

    def wait_ready(self) -> ModelServer:
        """Wait until GET /v2/health/ready answers 200."""
        return self._wait_for_200("/v2/health/ready")

    def _wait_for_200(self, path: str) -> ModelServer:
        def answers_200() -> bool:
            assert self.process.alive(), f"the server exited:\n{self.process.log()}"
            return self.client.get(path).status_code == 200

        wait_for(answers_200, timeout=STARTUP_TIMEOUT, interval=0.05, what=f"GET {path} to answer 200")
        return self

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of sample `name` with the model's labels (and `labels`) in /metrics, if present."""
        wanted = {"model": MODEL_NAME, "version": MODEL_VERSION, **labels}
        for family in text_string_to_metric_families(self.client.get("/metrics").text):
            for sample in family.samples:
                if sample.name == name and sample.labels == wanted:
                    return sample.value
        return None


def pinned(model_file: Path | str) -> tuple[str, str]:
    """The flags pinning `model_file` by its sha256: a joblib file loads only when pinned."""
    return ("--sha256", hashlib.sha256(Path(model_file).read_bytes()).hexdigest())


def server_argv(model_uri: str, port: int, *flags: str) -> list[str]:
    """The command line serving `model_uri` as iris version 3 on 127.0.0.1:`port`."""
    argv = [str(SERVER), "--model-uri", model_uri, "--model-name", MODEL_NAME]
    return [*argv, "--model-version", MODEL_VERSION, "--host", "127.0.0.1", "--port", str(port), *flags]


def start_server(processes: ProcessGroup, model_uri: str, *flags: str) -> ModelServer:
    """Start `vigil-model-server` for `model_uri` on a free port of 127.0.0.1, with extra `flags`."""
    port = free_port()
    return ModelServer(processes.start("model-server", server_argv(model_uri, port, *flags)), port)
