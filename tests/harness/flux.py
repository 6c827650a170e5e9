"""Flux's source-controller, kustomize-controller and helm-controller (built by
`make flux-tools`, hack/flux-tools.sh) as local processes against one local cluster, through its
kubeconfig: out of cluster, as `make run` runs them in Flux's own repositories.

source-controller serves the artifacts it builds (git revisions, packaged charts) over HTTP on
127.0.0.1 and advertises that address in each artifact's URL, which the other two download.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from harness.cluster import BIN_DIR, LocalCluster
from harness.kubeapi import KubeApi
from harness.ports import free_port
from harness.processes import LocalProcess, ProcessGroup
from harness.waiting import wait_for

CONTROLLERS = ("source-controller", "kustomize-controller", "helm-controller")
CRDS_DIR = BIN_DIR / "flux-crds"  # a link to the cache; kubectl -f reads it resolved
# The annotation `flux reconcile` sets: the controller reconciles at once and echoes the value in
# status.lastHandledReconcileAt when it has.
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
# kind: (group, version, plural) of the Flux objects the tests read.
RESOURCES = {
    "GitRepository": ("source.toolkit.fluxcd.io", "v1", "gitrepositories"),
    "HelmChart": ("source.toolkit.fluxcd.io", "v1", "helmcharts"),
    "Kustomization": ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations"),
    "HelmRelease": ("helm.toolkit.fluxcd.io", "v2", "helmreleases"),
}


def missing() -> list[str]:
    """What of Flux bin/ lacks (`make flux-tools` builds it)."""
    absent = [name for name in CONTROLLERS if not (BIN_DIR / name).exists()]
    return absent + ([] if CRDS_DIR.is_dir() else ["flux-crds"])


def ready_condition(obj: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


@dataclass
class LocalFlux:
    """The three controllers, running; their processes belong to `processes`."""

    cluster: LocalCluster
    api: KubeApi
    controllers: dict[str, LocalProcess]
    storage_address: str

    @classmethod
    def start(cls, cluster: LocalCluster, processes: ProcessGroup, workdir: Path) -> LocalFlux:
        """Install Flux's CRDs (pinned: the modules' config/crd/bases) and start the controllers."""
        if absent := missing():
            raise RuntimeError(f"missing {', '.join(absent)} in {BIN_DIR}: run `make flux-tools`")
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS_DIR.resolve()))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS_DIR.resolve()))
        (workdir / "artifacts").mkdir(parents=True, exist_ok=True)
        storage_address = f"127.0.0.1:{free_port()}"
        env = {
            **cluster.env(),
            "HOME": str(workdir),  # helm's and git's caches and configuration stay in the test's folder
            "TMPDIR": str(workdir),
        }
        common = ["--enable-leader-election=false", "--watch-all-namespaces=true", "--log-level=debug"]
        started: dict[str, LocalProcess] = {}
        health: dict[str, str] = {}
        for name in CONTROLLERS:
            health[name] = f"127.0.0.1:{free_port()}"
            argv = [
                str(BIN_DIR / name),
                *common,
                f"--metrics-addr=127.0.0.1:{free_port()}",
                f"--health-addr={health[name]}",
                # A source or dependency not ready yet is looked at again soon, not in 30 s.
                "--requeue-dependency=2s",
            ]
            if name == "source-controller":
                argv += [
                    f"--storage-path={workdir / 'artifacts'}",
                    f"--storage-addr={storage_address}",
                    f"--storage-adv-addr={storage_address}",
                ]
            started[name] = processes.start(name, argv, env=env, cwd=workdir)
        flux = cls(cluster, KubeApi(cluster.kubeconfig), started, storage_address)
        for name, address in health.items():
            wait_for(lambda n=name, a=address: flux._ready(n, a), timeout=60, what=f"{name} ready")
        return flux

    def _ready(self, name: str, address: str) -> bool:
        if not self.controllers[name].alive():
            raise RuntimeError(f"{name} exited:\n{self.controllers[name].log()[-3000:]}")
        return httpx.get(f"http://{address}/readyz", timeout=2).status_code == 200

    def close(self) -> None:
        self.api.close()

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        group, version, plural = RESOURCES[kind]
        return self.api.get(f"/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}")

    def request_reconcile(self, kind: str, namespace: str, name: str) -> str:
        """What `flux reconcile` does: set the requestedAt annotation; returns its value."""
        token = datetime.datetime.now(datetime.UTC).isoformat()
        self.cluster.kubectl(
            "annotate",
            "--overwrite",
            "-n",
            namespace,
            f"{RESOURCES[kind][2]}.{RESOURCES[kind][0]}/{name}",
            f"{REQUESTED_AT}={token}",
        )
        return token

    def reconcile(self, kind: str, namespace: str, name: str, *, timeout: float = 120) -> dict[str, Any]:
        """Request a reconciliation and wait until the controller has finished it (it echoed the
        request and its Ready condition is no longer Unknown); returns the object then."""
        token = self.request_reconcile(kind, namespace, name)

        def handled() -> dict[str, Any] | None:
            obj = self.get(kind, namespace, name)
            status = obj.get("status") or {}
            done = status.get("lastHandledReconcileAt") == token and ready_condition(obj).get("status") in (
                "True",
                "False",
            )
            return obj if done and status.get("observedGeneration") == obj["metadata"]["generation"] else None

        return wait_for(handled, timeout=timeout, what=f"{kind} {namespace}/{name} reconciled ({token})")

    def wait_ready(
        self, kind: str, namespace: str, name: str, *, revision: str | None = None, timeout: float = 180
    ) -> dict[str, Any]:
        """Wait for Ready=True (and, with `revision`, for that revision applied)."""

        def ready() -> dict[str, Any] | None:
            obj = self.get(kind, namespace, name)
            if ready_condition(obj).get("status") != "True":
                return None
            applied = (obj.get("status") or {}).get("lastAppliedRevision", "")
            return obj if revision is None or applied.endswith(revision) else None

        return wait_for(
            ready, timeout=timeout, what=f"{kind} {namespace}/{name} Ready at {revision or 'any'}"
        )
