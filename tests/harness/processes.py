"""Start and stop local processes (model servers, the operator) with captured logs.

Every process started through a `ProcessGroup` is stopped when the group closes, and
its log is attached to the report of a failing test (see tests/conftest.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LocalProcess:
    """One running process and the file its stdout and stderr go to."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        if self.alive():
            self.popen.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL at once: an abrupt crash, as an OOM kill or a node loss would cause."""
        if self.alive():
            self.popen.kill()
            self.popen.wait()


@dataclass
class ProcessGroup:
    """Processes started for one test (or session); `close()` stops them all."""

    log_dir: Path
    processes: list[LocalProcess] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> LocalProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}-{len(self.processes)}.log"
        full_env = {**os.environ, **(env or {})}
        with log_path.open("wb") as log_file:
            popen = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        process = LocalProcess(name=name, popen=popen, log_path=log_path)
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def logs(self) -> dict[str, str]:
        return {f"{p.name} (pid {p.pid})": p.log() for p in self.processes}
