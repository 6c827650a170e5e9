"""A real node in the local cluster: containerd, runc, the CNI bridge, kubelet and kube-proxy.

kwok's fake nodes stay; next to them this module starts one real node on this machine, with
the binaries `make node-tools` put in bin/ (kubelet and kube-proxy v1.36, containerd 2.x) and
Debian's runc and CNI plugins. Pods pinned to it (nodeSelector `vigil.dev/real-node: "true"`
and a toleration of the `vigil.dev/real-node` NoSchedule taint, which keeps every other pod
off it) run in containers; their IPs answer from the host.

Everything it creates is listed in its state file (.work/node/state.json) and `stop()` removes
it, also after a failed or interrupted start:
- processes: containerd, kubelet, kube-proxy (own session each) and the runc shims;
- mounts: the kubelet root dir bound onto itself (rshared, `/` is private here), and what
  kubelet and containerd mount below .work/node (tmpfs volumes, overlay rootfs, /dev/shm,
  network namespaces: containerd pins them under its state dir, so `ip netns` stays empty);
- links: the `vigil0` bridge (the veths go with their network namespaces);
- iptables: kubelet's and kube-proxy's KUBE-* chains (the CNI config makes none);
- cgroups: /sys/fs/cgroup/<controller>/kubepods (cgroupfs driver, hybrid cgroups v1);
- sysctl net.ipv4.ip_forward (the bridge plugin sets it to 1; put back as found);
- files outside .work/node: /run/containerd (shim sockets), /var/log/containers (kubelet's
  symlinks), /var/lib/cni (libcni's cache), when they did not exist before.

The kubelet runs with `protectKernelDefaults: true`, so it never changes kernel settings; it
then refuses to start unless six sysctls have the values it expects (vm.overcommit_memory=1,
kernel.panic=10, ...). Rather than change those machine-wide, the kubelet runs in its own
mount namespace (propagation unchanged, so its volume mounts below the shared root dir reach
containerd) where those six /proc/sys files are covered by files holding the expected values.

Usage (the cluster from `make cluster-up`):  python -m harness.node up|down|status
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import cluster_dns
from harness.cluster import BIN_DIR, CUSTOM_STATUS_ANNOTATION, REPO_ROOT, VENV_BIN, tool_env
from harness.waiting import WaitTimeout, wait_for

NODE_NAME = "vigil-node"
NODE_LABEL = "vigil.dev/real-node"
BRIDGE = "vigil0"
POD_CIDR = "10.244.0.0/24"  # kwok's fake pods use 10.0.0.0/24 (and so do ClusterIPs)
CNI_NETWORK = "vigil-bridge"
CNI_BIN_DIR = Path("/usr/lib/cni")
RUNC = "/usr/sbin/runc"
PAUSE_IMAGE = "localhost/vigil/pause:3.10"
HELLO_IMAGE = "localhost/vigil/hello:0.1"
PORTS = {"kubelet": 10250, "kubelet healthz": 10248, "kube-proxy metrics": 10249, "kube-proxy healthz": 10256}
NODE_BINARIES = ("kubelet", "kube-proxy", "containerd", "ctr", "containerd-shim-runc-v2", "coredns")
# What the kubelet's protectKernelDefaults demands (pkg/kubelet/cm setupKernelTunables).
KERNEL_DEFAULTS = {
    "vm/overcommit_memory": 1,
    "vm/panic_on_oom": 0,
    "kernel/panic": 10,
    "kernel/panic_on_oops": 1,
    "kernel/keys/root_maxkeys": 1000000,
    "kernel/keys/root_maxbytes": 25000000,
}
# Created outside the work folder by containerd or the kubelet; removed when they were absent.
# (/var/lib/kubelet: the device manager's socket path is fixed, whatever --root-dir says.)
OUTSIDE_PATHS = ("/run/containerd", "/var/log/containers", "/var/lib/cni", "/var/lib/kubelet")
CGROUP_ROOT = Path("/sys/fs/cgroup")
# The bridge plugin (isGateway) turns forwarding on: pod -> ClusterIP -> pod goes through the
# host's routing. stop() puts the value found at start back (which also resets accept_redirects).
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
MACHINE_LOCK = Path(tempfile.gettempdir()) / "vigil-real-node.lock"
IMAGES_DIR = REPO_ROOT / ".work" / "node-images"  # kept across node restarts
PAUSE_C = "build/pause/linux/pause.c"  # in the k8s.io/kubernetes module
HELLO_GO = REPO_ROOT / "tools" / "node" / "hello" / "main.go"


class NodeError(RuntimeError):
    """A prerequisite is missing or a component did not start; the message names the fix."""


def log(message: str) -> None:
    print(f"\033[1m[real-node]\033[0m {message}", flush=True)


def run(*argv: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, text=True, capture_output=True, check=False, **kwargs)
    if check and result.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


# --- images: a static pause and a tiny HTTP server, as OCI archives built here --------------


def _oci_archive(path: Path, name: str, files: dict[str, Path], entrypoint: list[str]) -> None:
    """Write a one-layer OCI image archive that `ctr images import` loads under `name`."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, source in files.items():
            info = tar.gettarinfo(str(source.resolve()), arcname)  # bin/ holds symlinks
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            info.mode = 0o755
            with source.open("rb") as handle:
                tar.addfile(info, handle)
    layer_tar = layer.getvalue()
    layer_gz = gzip.compress(layer_tar, mtime=0)
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data), **extra}

    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": "65535:65535", "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
        "history": [{"created_by": "vigil harness.node"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
        "layers": [blob(layer_gz, "application/vnd.oci.image.layer.v1.tar+gzip")],
    }
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            blob(
                json.dumps(manifest).encode(),
                "application/vnd.oci.image.manifest.v1+json",
                platform={"architecture": "amd64", "os": "linux"},
                annotations={
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1],
                },
            )
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        entries = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": json.dumps(index).encode()}
        entries |= {f"blobs/sha256/{d.split(':')[1]}": data for d, data in blobs.items()}
        for arcname, data in entries.items():
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def build_images() -> list[Path]:
    """The pause image (kubernetes' pause.c, static) and the hello HTTP server (static Go)."""
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    hello_hash = hashlib.sha256(HELLO_GO.read_bytes()).hexdigest()[:12]
    pause_archive, hello_archive = IMAGES_DIR / "pause.tar", IMAGES_DIR / f"hello-{hello_hash}.tar"
    if not pause_archive.exists():
        gomodcache = run("go", "env", "GOMODCACHE").stdout.strip()
        source = Path(gomodcache) / "k8s.io" / "kubernetes@v1.36.3" / PAUSE_C
        if not source.exists():
            raise NodeError(f"{source} is missing: run `make node-tools` (it downloads k8s.io/kubernetes)")
        binary = IMAGES_DIR / "pause"
        run("gcc", "-Os", "-static", "-DVERSION=3.10-vigil", "-o", str(binary), str(source))
        run("strip", str(binary))
        _oci_archive(pause_archive, PAUSE_IMAGE, {"pause": binary}, ["/pause"])
        log(f"built {PAUSE_IMAGE} ({pause_archive})")
    if not hello_archive.exists():
        _oci_archive(hello_archive, HELLO_IMAGE, {"hello": _hello_binary()}, ["/hello"])
        log(f"built {HELLO_IMAGE} ({hello_archive})")
    return [pause_archive, hello_archive]


def _hello_binary() -> Path:
    """tools/node/hello, static, built once per version of its source."""
    binary = IMAGES_DIR / f"hello-{hashlib.sha256(HELLO_GO.read_bytes()).hexdigest()[:12]}"
    if not binary.exists():
        env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-trimpath"}
        out = binary.with_suffix(".tmp")
        run("go", "build", "-ldflags", "-s -w", "-o", str(out), str(HELLO_GO), env=env, cwd=HELLO_GO.parent)
        out.rename(binary)
    return binary


def binary_image(image: str, binaries: dict[str, Path], entrypoint: list[str]) -> Path:
    """An image of static binaries alone (they need no libc, no shell), archived once per build of
    them: the archive is named by the binaries' resolved paths (their versioned cache folders),
    sizes and times, so a rebuilt binary makes a new one."""
    key = hashlib.sha256(image.encode())
    for arcname, path in sorted(binaries.items()):
        stat = path.stat()
        key.update(f"{arcname}={path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    name = image.rsplit("/", 1)[1].replace(":", "-")
    archive = IMAGES_DIR / f"{name}-{key.hexdigest()[:12]}.tar"
    if not archive.exists():
        missing = [str(p) for p in binaries.values() if not p.exists()]
        if missing:
            raise NodeError(f"{', '.join(missing)} missing: run `make node-tools`")
        started = time.monotonic()
        _oci_archive(archive, image, binaries, entrypoint)
        log(f"built {image} ({archive.name}, {time.monotonic() - started:.0f}s)")
    return archive


def model_store_image(files: dict[str, Path]) -> tuple[str, Path]:
    """An image that serves `files` (name -> local file) over HTTP on :8080 at /<name>.

    The in-cluster model store: `hello files /models` with the files in its one layer, named by
    its content, so each set of models is its own image. Returns (image name, archive).
    """
    digest = hashlib.sha256()
    for name, path in sorted(files.items()):
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    digest.update(HELLO_GO.read_bytes())
    tag = digest.hexdigest()[:12]
    image, archive = f"localhost/vigil/model-store:{tag}", IMAGES_DIR / f"model-store-{tag}.tar"
    if not archive.exists():
        layer = {"hello": _hello_binary(), **{f"models/{name}": path for name, path in files.items()}}
        _oci_archive(archive, image, layer, ["/hello", "files", "/models"])
    return image, archive


# --- the node ------------------------------------------------------------------------------


@dataclass
class RealNode:
    """The real node of one local cluster; `start()` then `stop()` (idempotent)."""

    workdir: Path
    cluster_kubeconfig: Path
    cluster_pki: Path
    # Beside kwok's nodes the real node is tainted, so only pods that ask for it land there; in a
    # cluster of its own (harness.realstack) every pod runs on it.
    taint: bool = True
    # Image archives (docker-archive or OCI) to load into containerd besides pause and hello.
    images: tuple[Path, ...] = ()
    # Registries (host:port) on this machine that containerd pulls from over plain http, such as
    # harness.registry's: one hosts.toml each below <workdir>/containerd/certs.d.
    plain_http_registries: tuple[str, ...] = ()

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd" / "containerd.sock"

    @property
    def node_ip(self) -> str:
        """The machine's address the node registers with (its pods reach the host there)."""
        return str(self._state()["node_ip"])

    @property
    def kubelet_root(self) -> Path:
        return self.workdir / "kubelet"

    # state: what exists so far, written before each step so that stop() can undo a half start
    def _state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else {}

    def _save(self, **changes: Any) -> None:
        state = self._state() | changes
        self.state_file.write_text(json.dumps(state, indent=2))

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = tool_env()
        env["KUBECACHEDIR"] = str(self.workdir / "kube-cache")
        argv = [str(VENV_BIN / "kubectl"), "--kubeconfig", str(self.cluster_kubeconfig), *args]
        result = subprocess.run(argv, text=True, capture_output=True, env=env, input=input, check=False)
        if check and result.returncode != 0:
            raise NodeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(str(BIN_DIR / "ctr"), "--address", str(self.socket), "-n", "k8s.io", *args, check=check)

    # -- preflight
    def preflight(self) -> None:
        problems = []
        if os.geteuid() != 0:
            problems.append("the real node needs root (mounts, cgroups, network namespaces)")
        missing = [n for n in NODE_BINARIES if not (BIN_DIR / n).exists()]
        if missing:
            problems.append(f"missing {', '.join(missing)} in bin/: run `make node-tools`")
        for path, package in ((RUNC, "runc"), (str(CNI_BIN_DIR / "bridge"), "containernetworking-plugins")):
            if not os.access(path, os.X_OK):
                problems.append(f"missing {path}: run `make node-tools` (installs Debian's {package})")
        if not shutil.which("iptables"):
            problems.append("missing iptables: run `make node-tools` (installs Debian's iptables)")
        if not (self.cluster_pki / "ca.key").exists():
            problems.append(
                f"no cluster CA key at {self.cluster_pki}: is the local cluster up (`make cluster-up`)?"
            )
        if not (CGROUP_ROOT / "memory").is_dir():
            problems.append(
                "cgroup v1 memory controller not found: this node setup expects hybrid cgroups (v1)"
            )
        taken = [f"{what} port {port}" for what, port in PORTS.items() if _port_taken(port)]
        if taken:
            problems.append(f"{', '.join(taken)} already in use: stop the other kubelet/kube-proxy")
        leftovers = sorted(str(p) for p in CGROUP_ROOT.glob("*/kubepods"))
        if leftovers:
            problems.append(f"{leftovers[0]} exists: another kubelet runs here (or `make node-down`)")
        if problems:
            raise NodeError("cannot start the real node:\n  - " + "\n  - ".join(problems))

    # -- start
    def start(self) -> None:
        if self.state_file.exists():
            raise NodeError(f"a real node is already up ({self.state_file}); `make node-down` stops it")
        self._hold_the_machine()
        try:
            self.preflight()
        except NodeError:
            self._release_the_machine()
            raise
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._save(
            outside_absent=[p for p in OUTSIDE_PATHS if not os.path.lexists(p)],
            pids={},
            ip_forward=IP_FORWARD.read_text().strip(),
        )
        try:
            self._start()
        except BaseException:
            log("start failed or interrupted: tearing down what was made")
            self.stop()
            raise

    def _start(self) -> None:
        started = time.monotonic()
        node_ip = _node_ip()
        self._save(node_ip=node_ip)
        # kubelet root: a shared mount, so volume mounts propagate to containerd's mount namespace
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        self._save(mounts=[str(self.kubelet_root)])
        run("mount", "--bind", str(self.kubelet_root), str(self.kubelet_root))
        run("mount", "--make-rshared", str(self.kubelet_root))

        self._write_cni_config()
        self._start_containerd()
        self.import_images(*build_images(), *self.images)
        self._write_credentials(node_ip)
        self._register_node()
        self._start_kubelet(node_ip)
        wait_for(self._node_ready, timeout=120, interval=1, what=f"node {NODE_NAME} Ready")
        log(f"node {NODE_NAME} is Ready ({time.monotonic() - started:.0f}s)")
        self._start_kube_proxy(node_ip)
        self._start_cluster_dns()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{name}.log").open("ab") as log_file:
            popen = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env or os.environ.copy(),
                start_new_session=True,  # Ctrl-C in the terminal reaches us, not them; stop() ends them
            )
        self._save(pids=self._state()["pids"] | {name: popen.pid})
        time.sleep(0.5)
        if popen.poll() is not None:
            raise NodeError(f"{name} exited at once: {self.log_tail(name)}")
        return popen.pid

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = self.workdir / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _alive(self, name: str) -> bool:
        pid = self._state().get("pids", {}).get(name)
        return bool(pid) and _pid_alive(pid)

    def _write_cni_config(self) -> None:
        conf_dir = self.workdir / "cni" / "net.d"
        conf_dir.mkdir(parents=True, exist_ok=True)
        self._save(bridge=BRIDGE)
        config = {
            "cniVersion": "1.0.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # pods talk to the host and to each other; nothing outside
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.workdir / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (conf_dir / "10-vigil.conflist").write_text(json.dumps(config, indent=2))

    def _start_containerd(self) -> None:
        base = self.workdir / "containerd"
        base.mkdir(parents=True, exist_ok=True)
        config = f"""\
version = 3  # containerd 2.4 migrates it in memory (one warning)
root = "{base}/root"
state = "{base}/state"
[grpc]
  address = "{self.socket}"
[plugins.'io.containerd.internal.v1.opt']
  path = "{base}/opt"
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{base}/certs.d"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true  # this VM refuses negative oom_score_adj
  cdi_spec_dirs = ["{base}/cdi"]
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{RUNC}"
        Root = "{base}/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{self.workdir}/cni/net.d"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""
        (base / "config.toml").write_text(config)
        self._write_registry_hosts(base / "certs.d")
        env = tool_env()  # bin/ first: containerd finds containerd-shim-runc-v2 on PATH
        self._spawn("containerd", [str(BIN_DIR / "containerd"), "--config", str(base / "config.toml")], env)

        def answers() -> bool:
            if not self._alive("containerd"):
                raise NodeError(f"containerd exited: {self.log_tail('containerd')}")
            return self.ctr("version", check=False).returncode == 0

        wait_for(answers, timeout=30, interval=0.5, what="containerd to answer")
        log(f"containerd {self.ctr('version').stdout.split('Version:')[-1].split()[0]} is up ({self.socket})")

    def _write_registry_hosts(self, certs_d: Path) -> None:
        """containerd's per-registry configuration (hosts.toml): plain http, pull and resolve."""
        for host in self.plain_http_registries:
            (certs_d / host).mkdir(parents=True, exist_ok=True)
            (certs_d / host / "hosts.toml").write_text(
                f'server = "http://{host}"\n\n[host."http://{host}"]\n  capabilities = ["pull", "resolve"]\n'
            )

    def import_images(self, *archives: Path) -> None:
        """Load image archives into containerd's k8s.io namespace, where the kubelet finds them."""
        for archive in archives:
            if not archive.exists():
                raise NodeError(f"image archive {archive} is missing: run `make images`")
            started = time.monotonic()
            self.ctr("images", "import", str(archive))
            if archive.stat().st_size > 50_000_000:
                log(f"loaded {archive.name} into containerd ({time.monotonic() - started:.0f}s)")

    def _write_credentials(self, node_ip: str) -> None:
        """Client certificates signed by the cluster CA, and kubeconfigs for kubelet and kube-proxy."""
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        cluster = yaml.safe_load(self.cluster_kubeconfig.read_text())
        server = cluster["clusters"][0]["cluster"]["server"]
        ca = self.cluster_pki / "ca.crt"
        for user, subject in (
            ("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}"),
            ("kube-proxy", "/CN=system:kube-proxy"),
        ):
            key, csr, crt = pki / f"{user}.key", pki / f"{user}.csr", pki / f"{user}.crt"
            run(
                "openssl",
                "req",
                "-new",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(csr),
                "-subj",
                subject,
            )
            ca_key = self.cluster_pki / "ca.key"
            sign = ["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key)]
            run(*sign, "-CAcreateserial", "-CAserial", str(pki / "ca.srl"), "-days", "30", "-out", str(crt))
            kubeconfig = {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}
                ],
                "users": [{"name": user, "user": {"client-certificate": str(crt), "client-key": str(key)}}],
                "contexts": [{"name": user, "context": {"cluster": "local", "user": user}}],
                "current-context": user,
            }
            (self.workdir / f"{user}.kubeconfig").write_text(yaml.safe_dump(kubeconfig))

    def _register_node(self) -> None:
        """Create the Node before the kubelet does, with kwok's hands-off annotation.

        kwokctl starts kwok with --manage-all-nodes: it would play the kubelet for this node too
        (fake status, fake pod IPs). kwok skips a node, and the pods on it, when the node carries
        the annotation the harness configures as `disregardStatusWithAnnotationSelector` (and only
        if it does when kwok first sees it). The kubelet adopts an existing Node, but applies
        `registerWithTaints` only to a Node it creates, so the taint is set here too.
        """
        self.kubectl("delete", "node", NODE_NAME, "--ignore-not-found", check=False)
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE_NAME,
                "annotations": {CUSTOM_STATUS_ANNOTATION: "custom"},
                "labels": {
                    NODE_LABEL: "true",
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                },
            },
            "spec": {"taints": self._taints()},
        }
        self.kubectl("create", "-f", "-", input=json.dumps(node))

    def _taints(self) -> list[dict[str, str]]:
        return [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}] if self.taint else []

    def _start_kubelet(self, node_ip: str) -> None:
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "protectKernelDefaults": True,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": node_ip,
            "port": PORTS["kubelet"],
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": PORTS["kubelet healthz"],
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.cluster_pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "podLogsDir": str(self.workdir / "pod-logs"),
            "registerWithTaints": self._taints(),
            "maxPods": 30,
            "failSwapOn": False,
            "resolvConf": "",  # pods ask the cluster DNS only (nothing outside answers here)
            "clusterDNS": [cluster_dns.CLUSTER_DNS_IP],
            "clusterDomain": cluster_dns.CLUSTER_DOMAIN,
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
        }
        config_path = self.workdir / "kubelet-config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        # The values protectKernelDefaults wants, visible to the kubelet only (see the module docstring).
        fake = self.workdir / "kernel-defaults"
        fake.mkdir(exist_ok=True)
        binds = []
        for key, value in KERNEL_DEFAULTS.items():
            (fake / key.replace("/", ".")).write_text(f"{value}\n")
            binds.append(f'mount --bind "{fake / key.replace("/", ".")}" /proc/sys/{key}')
        kubelet = [
            str(BIN_DIR / "kubelet"),
            f"--config={config_path}",
            f"--kubeconfig={self.workdir / 'kubelet.kubeconfig'}",
            f"--root-dir={self.kubelet_root}",
            f"--cert-dir={self.workdir / 'pki' / 'kubelet-serving'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={node_ip}",
            f"--node-labels={NODE_LABEL}=true",
            "--oom-score-adj=0",  # no CAP_SYS_RESOURCE: negative values are refused
            "--v=2",
        ]
        script = " && ".join(["mount --make-rslave /proc", *binds, 'exec "$@"'])
        argv = ["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", script, "kubelet", *kubelet]
        self._spawn("kubelet", argv, tool_env())

    def _node_ready(self) -> bool:
        if not self._alive("kubelet"):
            raise NodeError(f"the kubelet exited: {self.log_tail('kubelet')}")
        result = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _start_kube_proxy(self, node_ip: str) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",  # no IPVS here, no module loading
            "clientConnection": {"kubeconfig": str(self.workdir / "kube-proxy.kubeconfig")},
            "hostnameOverride": NODE_NAME,
            "bindAddress": node_ip,
            "clusterCIDR": POD_CIDR,
            "nodePortAddresses": [f"{node_ip}/32"],
            "metricsBindAddress": f"127.0.0.1:{PORTS['kube-proxy metrics']}",
            "healthzBindAddress": f"127.0.0.1:{PORTS['kube-proxy healthz']}",
            "oomScoreAdj": 0,
            # 0: leave the machine's conntrack sysctls as they are
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "iptables": {"localhostNodePorts": False},  # else it sets route_localnet machine-wide
        }
        config_path = self.workdir / "kube-proxy-config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self._spawn("kube-proxy", [str(BIN_DIR / "kube-proxy"), f"--config={config_path}", "--v=2"])

        def synced() -> bool:
            if not self._alive("kube-proxy"):
                raise NodeError(f"kube-proxy exited: {self.log_tail('kube-proxy')}")
            return "KUBE-SERVICES" in run("iptables-save", "-t", "nat").stdout

        wait_for(synced, timeout=60, interval=1, what="kube-proxy's iptables rules")
        log("kube-proxy is up (iptables mode)")

    def _start_cluster_dns(self) -> None:
        """CoreDNS behind the Service the kubelet names to every pod (harness.cluster_dns)."""
        started = time.monotonic()
        self.import_images(binary_image(cluster_dns.IMAGE, {"coredns": BIN_DIR / "coredns"}, ["/coredns"]))
        node_selector = {NODE_LABEL: "true"}
        tolerations = [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}]
        manifests = cluster_dns.objects(node_selector, tolerations)
        self.kubectl(
            "apply",
            "--server-side",
            "-f",
            "-",
            input=json.dumps({"kind": "List", "apiVersion": "v1", "items": manifests}),
        )

        def available() -> bool:
            out = self.kubectl(
                "get",
                "deployment",
                cluster_dns.NAME,
                "-n",
                cluster_dns.NAMESPACE,
                "-o",
                "jsonpath={.status.availableReplicas}",
                check=False,
            )
            return out.stdout.strip() == "1"

        try:
            wait_for(available, timeout=60, interval=0.5, what="CoreDNS available")
        except WaitTimeout as timeout:
            pods = self.kubectl(
                "describe", "pods", "-n", cluster_dns.NAMESPACE, "-l", "k8s-app=kube-dns", check=False
            )
            raise NodeError(f"{timeout}\n{pods.stdout[-3000:]}") from timeout
        seconds = time.monotonic() - started
        log(f"cluster DNS: CoreDNS {cluster_dns.VERSION} at {cluster_dns.CLUSTER_DNS_IP} ({seconds:.0f}s)")

    # -- stop
    def stop(self) -> None:
        """Remove everything start() made; safe to call twice and after a half start."""
        state = self._state()
        if not state:
            return
        pids: dict[str, int] = state.get("pids", {})
        if pids.get("kubelet") and _pid_alive(pids["kubelet"]):
            self._drain()
        for name in ("kube-proxy", "kubelet"):
            _terminate(pids.get(name))
        if pids.get("kube-proxy"):
            run(str(BIN_DIR / "kube-proxy"), "--cleanup", check=False)
        if pids.get("containerd") and _pid_alive(pids["containerd"]):
            self._remove_containers()
        _terminate(pids.get("containerd"))
        for pid in self._shim_pids():
            _terminate(pid)
        self._kill_cgroup_tasks()
        for mount in reversed(_mounts_under(self.workdir)):
            run("umount", "--lazy", mount, check=False)
        if state.get("bridge") and run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
            run("ip", "link", "delete", BRIDGE, check=False)
        _remove_iptables_chains()
        _remove_cgroups()
        if state.get("ip_forward") == "0" and IP_FORWARD.read_text().strip() != "0":
            IP_FORWARD.write_text("0\n")
        for path in state.get("outside_absent", []):
            if os.path.lexists(path):
                shutil.rmtree(path, ignore_errors=True)
        if NODE_NAME and self.cluster_kubeconfig.exists():
            self.kubectl("delete", "node", NODE_NAME, "--ignore-not-found", "--wait=false", check=False)
        last_logs = self.workdir.parent / "node-last-logs"  # for a start that failed
        shutil.rmtree(last_logs, ignore_errors=True)
        with contextlib.suppress(OSError):
            shutil.move(self.workdir / "logs", last_logs)
        shutil.rmtree(self.workdir, ignore_errors=True)
        log("real node stopped; its mounts, network, iptables chains and cgroups are removed")
        self._release_the_machine()

    def _hold_the_machine(self) -> None:
        """One real node per machine (its kubelet's ports are fixed): a second run in this or another
        process waits here for the first to stop instead of failing on taken ports. The lock lives as
        long as this process; `make node-up`'s node outlives it and is caught by preflight instead."""
        handle = MACHINE_LOCK.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another run on this machine has the real node; waiting for it to stop ({MACHINE_LOCK})")
            fcntl.flock(handle, fcntl.LOCK_EX)
        self._machine_lock = handle

    def _release_the_machine(self) -> None:
        handle = self.__dict__.pop("_machine_lock", None)
        if handle is not None:
            handle.close()  # closing the file releases the flock

    def _drain(self) -> None:
        """Delete the node's pods while the kubelet still runs, so it tears their sandboxes down."""
        if not self.cluster_kubeconfig.exists():
            return
        selector = f"spec.nodeName={NODE_NAME}"
        # Unschedulable first: the pods' controllers replace them, and the replacements must not
        # land here again.
        self.kubectl("cordon", NODE_NAME, check=False)
        self.kubectl(
            "delete",
            "pods",
            "-A",
            "--field-selector",
            selector,
            "--grace-period=2",
            "--wait=false",
            check=False,
        )

        def gone() -> bool:
            out = self.kubectl("get", "pods", "-A", "--field-selector", selector, "-o", "name", check=False)
            return out.returncode == 0 and not out.stdout.strip()

        with contextlib.suppress(AssertionError):
            wait_for(gone, timeout=60, interval=1, what="the node's pods to go")
        with contextlib.suppress(AssertionError):
            wait_for(
                lambda: not self.ctr("tasks", "ls", "-q").stdout.strip(), timeout=30, interval=1, what="tasks"
            )

    def _remove_containers(self) -> None:
        """Whatever the kubelet left: kill and delete its tasks and containers through containerd."""
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", task, check=False)
            self.ctr("tasks", "delete", "--force", task, check=False)
        for container in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def _shim_pids(self) -> list[int]:
        """Our runc shims: they outlive containerd by design; found by our containerd's socket."""
        pids = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError):
                    cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                    if (
                        cmdline[0].endswith(b"containerd-shim-runc-v2")
                        and str(self.socket).encode() in cmdline
                    ):
                        pids.append(int(proc.name))
        return pids

    def _kill_cgroup_tasks(self) -> None:
        """Containers still running in the kubepods cgroups (only after a crash): SIGKILL them."""
        for tasks in CGROUP_ROOT.glob("*/kubepods/**/cgroup.procs"):
            with contextlib.suppress(OSError):
                for pid in tasks.read_text().split():
                    os.kill(int(pid), signal.SIGKILL)


def host_problems(ports: bool = True) -> list[str]:
    """Why this machine cannot run the real node at all (empty when it can), before any build:
    what `make node-tools` and `make images` install is not checked here. `ports=False` for a
    caller that waits for another run's node to stop (RealNode.start does) rather than failing."""
    problems = []
    if os.geteuid() != 0:
        problems.append("it needs root (mounts, cgroups, network namespaces); run as root")
    if not (CGROUP_ROOT / "memory").is_dir():
        problems.append("no cgroup v1 memory controller: this node setup expects hybrid cgroups (v1)")
    if not shutil.which("unshare") or not shutil.which("ip"):
        problems.append("util-linux's unshare and iproute2's ip are needed")
    taken = [f"{what} port {port}" for what, port in PORTS.items() if ports and _port_taken(port)]
    if taken:
        problems.append(f"{', '.join(taken)} in use: another kubelet runs here (`make node-down`?)")
    return problems


def _port_taken(port: int) -> bool:
    return f":{port} " in run("ss", "-Htln", f"sport = :{port}", check=False).stdout + " "


def _node_ip() -> str:
    for line in run("ip", "-4", "-o", "addr", "show", "scope", "global").stdout.splitlines():
        address = line.split()[3].split("/")[0]
        if not address.startswith("10.244."):
            return address
    raise NodeError("no global IPv4 address on this machine for the node IP")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def _terminate(pid: int | None, timeout: float = 15) -> None:
    if not pid or not _pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not _pid_alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, in mount order (unmount in reverse)."""
    prefix = str(root.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return points


def _remove_iptables_chains() -> None:
    """Delete every KUBE-* chain (and the jumps to them) in every table, v4 and v6.

    Only the kubelet and kube-proxy make KUBE-* chains; the node's CNI config makes no chains
    (no ipMasq, no portmap), so chains of other CNI users on the machine (podman) stay alone.
    """
    for tool in ("iptables", "ip6tables"):
        if not shutil.which(f"{tool}-save"):
            continue
        table = ""
        jumps, chains = [], []
        for line in run(f"{tool}-save", check=False).stdout.splitlines():
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":") and line[1:].startswith("KUBE-"):
                chains.append((table, line[1:].split()[0]))
            elif line.startswith("-A ") and not line.split()[1].startswith("KUBE-"):
                words = line.split()
                if "-j" in words and words[words.index("-j") + 1].startswith("KUBE-"):
                    jumps.append((table, words[1:]))
        for table, rule in jumps:
            run(tool, "-t", table, "-D", *rule, check=False)
        for table, chain in chains:
            run(tool, "-t", table, "-F", chain, check=False)
        for table, chain in chains:
            run(tool, "-t", table, "-X", chain, check=False)


def _pids_running(workdir: Path) -> list[int]:
    """Processes whose command line names the node's work folder (containerd, kubelet, shims)."""
    marker = str(workdir.resolve()).encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
    return pids


def _remove_cgroups() -> None:
    """rmdir the kubelet's cgroup trees, deepest first, in every v1 hierarchy."""
    for top in CGROUP_ROOT.glob("*/kubepods"):
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def leftovers(workdir: Path) -> list[str]:
    """What teardown should have removed and did not (empty when clean)."""
    found = [f"mount {m}" for m in _mounts_under(workdir)]
    found += [f"cgroup {p}" for p in CGROUP_ROOT.glob("*/kubepods")]
    if run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        found.append(f"link {BRIDGE}")
    found += [f"process {pid}" for pid in _pids_running(workdir)]
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool):
            lines = [line for line in run(tool, check=False).stdout.splitlines() if "KUBE-" in line]
            if lines:
                found.append(f"{tool}: {len(lines)} KUBE-* lines, first: {lines[0]}")
    return found


# --- CLI: the node of the cluster `make cluster-up` started ---------------------------------


def node_for_local_cluster() -> RealNode:
    state_file = REPO_ROOT / ".work" / "cluster" / "cluster.json"
    if not state_file.exists():
        raise NodeError("no local cluster is up: run `make cluster-up` first")
    state = json.loads(state_file.read_text())
    pki = Path(state["workdir"]) / "kwok" / "clusters" / state["name"] / "pki"
    # The project's images (`make images`) when built, so that pods can run them at once.
    images = tuple(sorted((REPO_ROOT / ".work" / "images").glob("vigil-*.tar")))
    return RealNode(REPO_ROOT / ".work" / "node", Path(state["kubeconfig"]), pki, images=images)


def main() -> int:
    parser = argparse.ArgumentParser(description="The local cluster's real node")
    parser.add_argument("action", choices=["up", "down", "status", "leftovers", "can-run"])
    parser.add_argument("--workdir", type=Path, help="another cluster's node (with --kubeconfig, --pki)")
    parser.add_argument("--kubeconfig", type=Path)
    parser.add_argument("--pki", type=Path, help="the cluster's CA folder (ca.crt, ca.key)")
    args = parser.parse_args()
    action = args.action
    try:
        if action == "can-run":  # exit 0 when the host can run a real node; else say why
            problems = host_problems()
            print("; ".join(problems) or "this machine can run a real node")
            return 1 if problems else 0
        if action == "leftovers":
            found = leftovers(args.workdir or REPO_ROOT / ".work" / "node")
            print("\n".join(found) or "nothing left")
            return 1 if found else 0
        if args.workdir:
            node = RealNode(args.workdir, args.kubeconfig, args.pki, taint=False)
        else:
            node = node_for_local_cluster() if action != "down" else _node_for_down()
        if action == "up":
            _interrupt_on_signals()
            node.start()
            print(node.kubectl("get", "nodes", "-o", "wide").stdout)
        elif action == "down":
            node.stop()
        else:
            print(json.dumps(node._state(), indent=2))
    except (NodeError, WaitTimeout) as error:
        print(f"error: {error} (logs: .work/node-last-logs/)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the half-started node was removed", file=sys.stderr)
        return 130
    return 0


def _interrupt_on_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP during `up` all tear the half-made node down (start() does).

    SIGINT is re-armed too: a shell starts background jobs with it ignored.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


def _node_for_down() -> RealNode:
    """down works without the cluster too (it was stopped first): then it skips the API steps."""
    try:
        return node_for_local_cluster()
    except NodeError:
        return RealNode(REPO_ROOT / ".work" / "node", Path("/nonexistent"), Path("/nonexistent"))


if __name__ == "__main__":
    sys.exit(main())
