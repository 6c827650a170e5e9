"""A real local Kubernetes control plane, started with `kwokctl --runtime binary`.

kube-apiserver, kube-controller-manager, kube-scheduler and etcd are the upstream
binaries that `make cluster-tools` built into bin/; kwok's controller plays the kubelet
for fake nodes. Everything lives in one work folder with its own kubeconfig: nothing
reads or writes ~/.kube or ~/.kwok, and nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.ports import free_port
from harness.waiting import WaitTimeout, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = REPO_ROOT / "bin"
VENV_BIN = REPO_ROOT / ".venv" / "bin"
CRDS_DIR = REPO_ROOT / "crds"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kwok", "kwokctl")

# kwok's controller leaves the status of pods with this annotation alone, so a test can
# mirror a real model server's readiness into the pod (see harness.pods).
CUSTOM_STATUS_ANNOTATION = "kwok.x-k8s.io/status"
# Services get ClusterIPs from here (not kube-apiserver's default 10.0.0.0/24, where kwok puts its
# fake pod IPs); the `kubernetes` Service is its first address, which the API server's certificate
# names so that pods on the real node (harness.node) reach the API through it.
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
KWOK_CONFIG = f"""\
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  disregardStatusWithAnnotationSelector: {CUSTOM_STATUS_ANNOTATION}=custom
  # A partial KwokConfiguration is not defaulted field by field: give the usual values.
  cidr: 10.0.0.0/24
  nodeLeaseDurationSeconds: 40
  nodeLeaseParallelism: 4
  podPlayStageParallelism: 4
  nodePlayStageParallelism: 4
  podsOnNodeSyncParallelism: 1
---
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  kubeApiserverCertSANs: [{KUBERNETES_SERVICE_IP}]
componentsPatches:
# A throw-away cluster needs no durable writes: without an fsync per write, several clusters on
# one machine (test workers, the soak, the real node) stop waiting on the disk.
- name: etcd
  extraArgs:
  - {{key: unsafe-no-fsync, value: "true"}}
# Its default client rate (20 requests/s) makes ReplicaSets and pods for 3,000 Deployments take
# minutes: bench-scale measures the operator, not the controller-manager's throttle.
- name: kube-controller-manager
  extraArgs:
  - {{key: kube-api-qps, value: "200"}}
  - {{key: kube-api-burst, value: "400"}}
- name: kube-apiserver
  extraArgs:
  - {{key: service-cluster-ip-range, value: {SERVICE_CIDR}}}
  # `kubectl logs`/`exec` on the real node: the API server reaches its kubelet by the node's IP
  # (its host name resolves nowhere) with the admin client certificate (kubelet x509 authn).
  - {{key: kubelet-preferred-address-types, value: InternalIP}}
  - {{key: kubelet-client-certificate, value: "{{pki}}/admin.crt"}}
  - {{key: kubelet-client-key, value: "{{pki}}/admin.key"}}
"""


# One kwokctl create at a time on this machine: kwokctl picks some ports itself, and clusters
# started at once (the session's of each test worker, the soak's, the real node's) race for them.
CREATE_LOCK = Path(tempfile.gettempdir()) / "vigil-kwokctl-create.lock"


@contextlib.contextmanager
def _creating() -> Iterator[None]:
    """An exclusive lock across threads and processes (flock on a fresh open file each time)."""
    with CREATE_LOCK.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class ClusterToolsMissing(RuntimeError):
    """bin/ lacks a control-plane binary: run `make cluster-tools`."""


def tool_env() -> dict[str, str]:
    """The environment for project tools: our kubectl and bin/ first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), str(BIN_DIR), env.get("PATH", "")])
    env.pop("KUBECONFIG", None)
    return env


def check_binaries() -> None:
    missing = [name for name in BINARIES if not (BIN_DIR / name).exists()]
    if missing or not (VENV_BIN / "kubectl").exists():
        raise ClusterToolsMissing(
            f"missing {', '.join(missing) or 'kubectl'} in {BIN_DIR}; "
            "run `make cluster-tools` (and `make venv`)"
        )


NODE_MANIFEST = """\
apiVersion: v1
kind: Node
metadata:
  name: {name}
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: {name}
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    type: kwok
status:
  allocatable: {{cpu: "32", memory: 256Gi, pods: "110"}}
  capacity: {{cpu: "32", memory: 256Gi, pods: "110"}}
"""


@dataclass
class LocalCluster:
    """One running local cluster; `stop()` deletes it and its work folder."""

    name: str
    workdir: Path

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def kwok_workdir(self) -> Path:
        return self.workdir / "kwok"

    @property
    def pki(self) -> Path:
        """kwokctl's CA and the one admin certificate every component uses."""
        return self.kwok_workdir / "clusters" / self.name / "pki"

    def env(self) -> dict[str, str]:
        """Environment for commands against this cluster, and only this one."""
        env = tool_env()
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["KWOK_WORKDIR"] = str(self.kwok_workdir)
        env["KUBECACHEDIR"] = str(self.workdir / "kube-cache")  # not ~/.kube/cache
        return env

    def _kwokctl(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN_DIR / "kwokctl"), "--name", self.name, "-c", str(self.workdir / "kwok.yaml"), *args],
            env=self.env(),
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    @classmethod
    def start(
        cls, workdir: Path, name: str | None = None, *, nodes: int = 1, attempts: int = 2
    ) -> LocalCluster:
        """Create the cluster, wait until the API answers, and register fake nodes.

        kwokctl picks some ports itself; two runs starting at the same moment can race for
        one, so a failed start is torn down and tried once more under a new name.
        """
        check_binaries()
        for attempt in range(1, attempts + 1):
            cluster = cls(name=name or f"vigil-{uuid.uuid4().hex[:8]}", workdir=workdir / f"try{attempt}")
            try:
                cluster._create(nodes)
                return cluster
            except (RuntimeError, AssertionError, subprocess.SubprocessError) as error:
                logs = cluster.component_logs()
                cluster.stop()
                if attempt == attempts:
                    raise RuntimeError(f"the local cluster did not start: {error}\n{logs}") from None
            except BaseException:  # Ctrl-C while starting: leave nothing running
                cluster.stop()
                raise
        raise AssertionError("unreachable")

    def _create(self, nodes: int) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "kwok.yaml").write_text(KWOK_CONFIG.replace("{pki}", str(self.pki)))
        args = ["create", "cluster", "--runtime", "binary", "--kubeconfig", str(self.kubeconfig)]
        args += ["--wait", "120s", "--kube-apiserver-port", str(free_port())]
        args += [
            "--kube-controller-manager-port",
            str(free_port()),
            "--kube-scheduler-port",
            str(free_port()),
        ]
        args += ["--controller-port", str(free_port()), "--etcd-port", str(free_port())]
        for component, flag in (
            ("kube-apiserver", "--kube-apiserver-binary"),
            ("kube-controller-manager", "--kube-controller-manager-binary"),
            ("kube-scheduler", "--kube-scheduler-binary"),
            ("etcd", "--etcd-binary"),
            ("kwok", "--kwok-controller-binary"),
        ):
            args += [flag, str((BIN_DIR / component).resolve())]
        with _creating():
            result = self._kwokctl(*args)
        if result.returncode != 0:
            raise RuntimeError(f"kwokctl create cluster failed:\n{result.stderr[-4000:]}")
        for index in range(nodes):
            self.kubectl("apply", "-f", "-", input=NODE_MANIFEST.format(name=f"kwok-node-{index}"))
        if nodes:
            wait_for(self._nodes_ready, timeout=90, what="fake nodes Ready")
        wait_for(
            lambda: self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0,
            timeout=60,
            what="the default ServiceAccount (controller-manager running)",
        )

    def _nodes_ready(self) -> bool:
        nodes = yaml.safe_load(self.kubectl("get", "nodes", "-o", "yaml").stdout)["items"]
        return bool(nodes) and all(
            any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
            for n in nodes
        )

    def stop(self) -> None:
        """Delete the cluster (stops every component) and remove its files."""
        self._kwokctl("delete", "cluster", "--kubeconfig", str(self.kubeconfig), timeout=120)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run the project's kubectl against this cluster only."""
        result = subprocess.run(
            [str(VENV_BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            env=self.env(),
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, result.args, result.stdout, result.stderr)
        return result

    def apply_crds(self) -> None:
        """Apply crds/ (idempotent) and wait until every CRD is Established.

        The wait polls each CRD's conditions instead of one `kubectl wait`: on a loaded machine
        that single call once failed after the API server had answered the apply, and said
        nothing about why. A transient error is retried; a timeout reports what was last seen.
        """
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS_DIR))
        names = self.kubectl("get", "-f", str(CRDS_DIR), "-o", "name").stdout.split()

        def established() -> bool:
            missing = []
            for name in names:
                crd = json.loads(self.kubectl("get", name, "-o", "json").stdout)
                conditions = crd.get("status", {}).get("conditions", [])
                if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    missing.append(f"{name}: {conditions}")
            if missing:
                raise AssertionError("not Established yet: " + "; ".join(missing))
            return True

        try:
            wait_for(established, timeout=180, interval=0.5, what="Vigil's CRDs to be Established")
        except WaitTimeout as error:
            raise RuntimeError(f"{error}\n{self.component_logs()}") from None

    def component_logs(self, tail: int = 40) -> str:
        logs_dir = self.kwok_workdir / "clusters" / self.name / "logs"
        parts = []
        for log in sorted(logs_dir.glob("*.log")) if logs_dir.exists() else []:
            lines = log.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {log.name} ---\n" + "\n".join(lines))
        return "\n".join(parts)
