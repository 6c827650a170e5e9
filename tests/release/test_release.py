"""`make release` as a maintainer runs it, against a registry of our own: Debian's docker-registry
on 127.0.0.1 (harness.registry). From a fresh clone of HEAD it pushes both images and the chart;
then helm pulls the chart from the registry, and the real node's containerd pulls the images from
it when the chart is installed (`helm install oci://...`). The digests go to
.work/release-report.json for the closing note.

Runs in `make test`'s background run (marker `release`); warm, the images come from buildah's
layer cache, so the release costs its labels, SBOMs and pushes (about a minute).
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cluster import BIN_DIR, REPO_ROOT, LocalCluster
from harness.node import RealNode, host_problems, leftovers
from harness.processes import ProcessGroup
from harness.registry import LocalRegistry
from harness.waiting import wait_for

pytestmark = [pytest.mark.release]

REPORT = REPO_ROOT / ".work" / "release-report.json"
IMAGES = ("vigil-operator", "vigil-model-server")
SOURCE = "https://github.com/vigil-dev/vigil"


def _versions() -> Any:
    spec = importlib.util.spec_from_file_location("vigil_hack_versions", REPO_ROOT / "hack" / "versions.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Released:
    """One `make release` into the local registry, and what it wrote."""

    clone: Path
    registry: LocalRegistry
    version: str
    revision: str
    commit_time: int
    out: Path
    output: str
    seconds: float

    @property
    def path(self) -> str:
        """REGISTRY as given to `make release`: the registry and a path below it."""
        return f"{self.registry.host}/vigil"

    @property
    def summary(self) -> dict[str, Any]:
        return dict(json.loads((self.out / "release.json").read_text()))

    def helm(self, *args: str) -> str:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.out / "test-helm" / "cache"),
            "HELM_CONFIG_HOME": str(self.out / "test-helm" / "config"),
            "HELM_DATA_HOME": str(self.out / "test-helm" / "data"),
        }
        result = subprocess.run(
            [str(BIN_DIR / "helm"), *args], env=env, text=True, capture_output=True, timeout=300, check=False
        )
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout


def _git(clone: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=clone, text=True, capture_output=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Released]:
    work = tmp_path_factory.mktemp("release")
    processes = ProcessGroup(work / "logs")
    registry = LocalRegistry.start(work / "registry", processes)
    clone = work / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO_ROOT), str(clone)], check=True)
    for shared in ("bin", ".venv"):
        (clone / shared).symlink_to(REPO_ROOT / shared)
    version = _versions().current(clone)
    out = work / "out"
    started = time.monotonic()
    result = subprocess.run(
        ["make", "--no-print-directory", "release", f"VERSION={version}", f"REGISTRY={registry.host}/vigil"],
        cwd=clone,
        env={**os.environ, "RELEASE_OUT": str(out)},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=1500,
        check=False,
    )
    release = Released(
        clone=clone,
        registry=registry,
        version=version,
        revision=_git(clone, "rev-parse", "HEAD"),
        commit_time=int(_git(clone, "log", "-1", "--format=%ct")),
        out=out,
        output=result.stdout,
        seconds=round(time.monotonic() - started, 1),
    )
    try:
        assert result.returncode == 0, f"make release failed:\n{result.stdout[-6000:]}"
        yield release
    finally:
        registry.stop()
        processes.close()
        for name in IMAGES:  # the tags this run made; their layers stay in buildah's cache
            subprocess.run(
                ["buildah", "--log-level=error", "rmi", f"{release.path}/{name}:{version}"],
                capture_output=True,
                check=False,
            )


def _report(**facts: Any) -> None:
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    REPORT.write_text(json.dumps(known | facts, indent=2) + "\n")


def test_release_shows_its_steps_and_says_what_it_pushed(released: Released) -> None:
    for step in range(1, 7):
        assert f"[release] step {step}/6: " in released.output
    assert f"[release] pushed chart {released.path}/vigil:{released.version}@sha256:" in released.output
    assert f"helm install vigil oci://{released.path}/vigil --version {released.version}" in released.output
    _report(release_seconds=released.seconds, version=released.version, revision=released.revision)


def test_images_and_chart_are_in_the_registry_with_the_digests_release_reported(released: Released) -> None:
    summary = released.summary
    assert summary["pushed"] is True
    assert summary["version"] == released.version
    assert summary["revision"] == released.revision
    assert sorted(released.registry.repositories()) == [
        "vigil/vigil",
        "vigil/vigil-model-server",
        "vigil/vigil-operator",
    ]
    digests = {}
    for name in IMAGES:
        assert released.registry.tags(f"vigil/{name}") == [released.version]
        digest, manifest = released.registry.manifest(f"vigil/{name}", released.version)
        assert digest == summary["images"][name]["digest"]
        # The image pushed is the image built: its config digest is buildah's image ID.
        assert manifest["config"]["digest"] == "sha256:" + summary["images"][name]["id"]  # type: ignore[index]
        digests[name] = digest
    chart_digest, chart_manifest = released.registry.manifest("vigil/vigil", released.version)
    assert chart_manifest["config"]["mediaType"] == "application/vnd.cncf.helm.config.v1+json"  # type: ignore[index]
    assert chart_digest == summary["chart"]["digest"]
    digests["chart vigil"] = chart_digest
    _report(digests=digests)


def test_images_carry_oci_labels_from_the_commit(released: Released) -> None:
    created = datetime.datetime.fromtimestamp(released.commit_time, datetime.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    for name in IMAGES:
        _, manifest = released.registry.manifest(f"vigil/{name}", released.version)
        config_digest = manifest["config"]["digest"]  # type: ignore[index]
        config = json.loads(released.registry.blob(f"vigil/{name}", config_digest))
        labels = config["config"]["Labels"]
        assert labels["org.opencontainers.image.title"] == name
        assert labels["org.opencontainers.image.source"] == SOURCE
        assert labels["org.opencontainers.image.version"] == released.version
        assert labels["org.opencontainers.image.revision"] == released.revision
        assert labels["org.opencontainers.image.created"] == created
        # Nothing dated by the build's clock: every history entry and the config carry IMAGE_EPOCH.
        assert config["created"] == "1970-01-01T00:00:00Z"
        own = [h for h in config["history"] if h["created"] != config["history"][0]["created"]]
        assert {h["created"] for h in own} == {"1970-01-01T00:00:00Z"}


def test_the_pulled_chart_runs_the_released_images(released: Released, tmp_path: Path) -> None:
    ref = f"oci://{released.path}/vigil"
    released.helm("pull", ref, "--version", released.version, "--plain-http", "--destination", str(tmp_path))
    pulled = tmp_path / f"vigil-{released.version}.tgz"
    assert pulled.exists()
    rendered = released.helm("template", "vigil", str(pulled), "--namespace", "vigil-system")
    (deployment,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{released.path}/vigil-operator:{released.version}"
    assert f"--default-image={released.path}/vigil-model-server:{released.version}" in container["args"]
    chart = yaml.safe_load(released.helm("show", "chart", str(pulled)))
    assert chart["version"] == chart["appVersion"] == released.version


def test_each_image_has_an_sbom_of_its_python_and_debian_packages(released: Released) -> None:
    constraints = dict(
        line.split("==", 1)
        for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    wanted = {
        "vigil-operator": ("kopf", "vigil-operator"),
        "vigil-model-server": ("scikit-learn", "vigil-model-server"),
    }
    for name, packages in wanted.items():
        sbom = json.loads((released.out / "sbom" / f"{name}.cdx.json").read_text())
        assert sbom["bomFormat"] == "CycloneDX"
        components = {c["name"].lower(): c for c in sbom["components"]}
        for package in packages:
            assert package in components, f"{package} missing from {name}'s SBOM"
        kopf_or_sklearn = components[packages[0]]
        assert kopf_or_sklearn["version"] == constraints[packages[0]].strip()
        assert kopf_or_sklearn["purl"].startswith(f"pkg:pypi/{packages[0]}@")
        assert components[packages[1]]["version"] == released.version
        debian = [c for c in sbom["components"] if c.get("purl", "").startswith("pkg:deb/debian/")]
        assert any(c["name"].startswith("python3.11") for c in debian), (
            f"no Debian python3.11 in {name}'s SBOM"
        )
        assert any(c["name"] == "libc6" for c in debian)


@pytest.fixture
def node_cluster(released: Released, tmp_path: Path) -> Iterator[tuple[LocalCluster, RealNode]]:
    """A cluster whose one node is real and pulls from the release's registry over plain http."""
    problems = host_problems(ports=False)
    assert not problems, f"this machine cannot run the real node: {'; '.join(problems)}"
    cluster = LocalCluster.start(tmp_path / "cluster", nodes=0)
    node = RealNode(
        tmp_path / "node",
        cluster.kubeconfig,
        cluster.pki,
        taint=False,
        plain_http_registries=(released.registry.host,),
    )
    try:
        node.start()
        yield cluster, node
    finally:
        try:
            node.stop()
        finally:
            cluster.stop()
        assert leftovers(tmp_path / "node") == []


def test_helm_install_from_the_registry_runs_the_released_images_on_the_real_node(
    released: Released, node_cluster: tuple[LocalCluster, RealNode]
) -> None:
    cluster, node = node_cluster
    summary = released.summary
    started = time.monotonic()
    install = subprocess.run(
        [
            str(BIN_DIR / "helm"),
            "--kubeconfig",
            str(cluster.kubeconfig),
            "install",
            "vigil",
            f"oci://{released.path}/vigil",
            "--version",
            released.version,
            "--plain-http",
            "--namespace",
            "vigil-system",
            "--create-namespace",
            "--wait",
            "--timeout",
            "5m",
        ],
        env={
            **cluster.env(),
            "HELM_CONFIG_HOME": str(released.out / "node-helm"),
            "HELM_CACHE_HOME": str(released.out / "node-helm-cache"),
        },
        text=True,
        capture_output=True,
        timeout=400,
        check=False,
    )
    pods = cluster.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
    assert install.returncode == 0, f"{install.stderr}\n{pods}\n{node.log_tail('kubelet')}"
    installed = round(time.monotonic() - started, 1)
    (operator,) = json.loads(cluster.kubectl("get", "pods", "-n", "vigil-system", "-o", "json").stdout)[
        "items"
    ]
    (status,) = operator["status"]["containerStatuses"]
    assert status["ready"]
    assert status["image"] == f"{released.path}/vigil-operator:{released.version}"
    # containerd pulled it from the registry: the digest it resolved is the one pushed.
    assert (
        status["imageID"] == f"{released.path}/vigil-operator@{summary['images']['vigil-operator']['digest']}"
    )

    # The model server image the released chart gives the operator, run as a pod on the node.
    default_image = next(
        a.split("=", 1)[1]
        for a in operator["spec"]["containers"][0]["args"]
        if a.startswith("--default-image=")
    )
    assert default_image == f"{released.path}/vigil-model-server:{released.version}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "model-server-help", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "model-server", "image": default_image, "args": ["--help"]}],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def finished() -> dict[str, Any] | None:
        got = json.loads(cluster.kubectl("get", "pod", "model-server-help", "-o", "json").stdout)
        return got if got["status"].get("phase") in ("Succeeded", "Failed") else None

    done = wait_for(finished, timeout=300, interval=2, what="the model server pod to run --help")
    assert done["status"]["phase"] == "Succeeded", cluster.kubectl(
        "describe", "pod", "model-server-help"
    ).stdout
    (server,) = done["status"]["containerStatuses"]
    assert server["imageID"] == (
        f"{released.path}/vigil-model-server@{summary['images']['vigil-model-server']['digest']}"
    )
    assert "usage" in cluster.kubectl("logs", "model-server-help").stdout.lower()
    _report(
        real_node={
            "helm install --wait (pulls included) seconds": installed,
            "operator imageID": status["imageID"],
            "model server imageID": server["imageID"],
        }
    )
