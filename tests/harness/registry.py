"""A local OCI registry: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1, a port of
its own, storage in a temporary folder, plain http. `make release REGISTRY=127.0.0.1:PORT/vigil`
pushes images and the chart to it; helm and containerd pull from it.

Installed by hack/install-debian-tools.sh when missing (the package's own service is not used).
Usage by hand:  python -m harness.registry  (runs until Ctrl-C or SIGTERM, prints its address)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.cluster import REPO_ROOT
from harness.ports import free_port
from harness.processes import LocalProcess, ProcessGroup
from harness.waiting import wait_for

BINARY = Path("/usr/bin/docker-registry")
# The manifest types a client may be answered with (a docker v2 schema 2 image, an OCI image or
# artifact such as a Helm chart, and their indexes).
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


def install() -> Path:
    """The registry binary, installed from Debian when missing."""
    if not BINARY.exists():
        subprocess.run([str(REPO_ROOT / "hack" / "install-debian-tools.sh"), "docker-registry"], check=True)
    return BINARY


@dataclass
class LocalRegistry:
    """One running registry; `start()`, then `stop()` (which removes its storage too)."""

    workdir: Path
    processes: ProcessGroup
    port: int = 0
    process: LocalProcess | None = None

    @property
    def host(self) -> str:
        """host:port, as image references and `oci://` URLs name it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @classmethod
    def start(cls, workdir: Path, processes: ProcessGroup) -> LocalRegistry:
        registry = cls(workdir, processes, port=free_port())
        binary = install()
        storage = workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
            "http": {"addr": registry.host, "headers": {"X-Content-Type-Options": ["nosniff"]}},
        }
        config_path = workdir / "config.yml"
        config_path.write_text(yaml.safe_dump(config))
        registry.process = processes.start("docker-registry", [str(binary), "serve", str(config_path)])
        wait_for(registry._answers, timeout=30, what=f"docker-registry on {registry.host}")
        return registry

    def _answers(self) -> bool:
        assert self.process is not None
        if not self.process.alive():
            raise RuntimeError(f"docker-registry exited: {self.process.log()[-2000:]}")
        with urllib.request.urlopen(f"{self.url}/v2/", timeout=5) as answer:
            return bool(answer.status == 200)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.workdir / "storage", ignore_errors=True)

    # -- what it holds (the Distribution API)
    def _get(self, path: str, accept: str = "application/json") -> tuple[dict[str, str], bytes]:
        request = urllib.request.Request(f"{self.url}{path}", headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return dict(answer.headers), answer.read()

    def repositories(self) -> list[str]:
        return list(json.loads(self._get("/v2/_catalog")[1])["repositories"])

    def tags(self, repository: str) -> list[str]:
        return list(json.loads(self._get(f"/v2/{repository}/tags/list")[1])["tags"] or [])

    def manifest(self, repository: str, reference: str) -> tuple[str, dict[str, object]]:
        """(digest, manifest) of a tag or digest, as a client pulling it is answered."""
        headers, body = self._get(f"/v2/{repository}/manifests/{reference}", accept=MANIFEST_TYPES)
        return headers["Docker-Content-Digest"], json.loads(body)

    def blob(self, repository: str, digest: str) -> bytes:
        return self._get(f"/v2/{repository}/blobs/{digest}", accept="*/*")[1]


def main() -> int:
    import signal
    import tempfile

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    # Ctrl-C, and SIGTERM, stop it; a shell's `&` leaves SIGINT ignored, so set both.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="vigil-registry-"))
    processes = ProcessGroup(workdir / "logs")
    registry = LocalRegistry.start(workdir, processes)
    print(f"registry at {registry.host} (storage {workdir / 'storage'}); Ctrl-C stops it", flush=True)
    try:
        assert registry.process is not None
        registry.process.popen.wait()
    except KeyboardInterrupt:
        pass
    finally:
        registry.stop()
        processes.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
