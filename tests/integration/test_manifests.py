"""The plain install (manifests/): the chart's default render, object for object, and a real
`kubectl apply --server-side -k manifests/` into the local cluster.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cluster import BIN_DIR, REPO_ROOT, VENV_BIN, LocalCluster, tool_env

MANIFESTS = REPO_ROOT / "manifests"
SAMPLES = MANIFESTS / "samples"
CRD_SOURCE = REPO_ROOT / "crds" / "modeldeployment.yaml"
CRD_NAME = "modeldeployments.vigil.dev"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("vigil_manifests_generate", MANIFESTS / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _generator()


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", ""), meta["name"]


def kustomize_build() -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(VENV_BIN / "kubectl"), "kustomize", str(MANIFESTS)],
        env=tool_env(),
        text=True,
        capture_output=True,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def restore_crd(cluster: LocalCluster) -> None:
    """Put the session's CRD back exactly as crds/ has it (other tests share the cluster)."""
    live = json.loads(cluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    source = yaml.safe_load(CRD_SOURCE.read_text())
    source["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
    cluster.kubectl("replace", "-f", "-", input=json.dumps(source))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")


@pytest.mark.skipif(not (BIN_DIR / "helm").exists(), reason="bin/helm missing: run `make cluster-tools`")
def test_manifests_are_the_chart_default_render_object_by_object() -> None:
    chart = {
        _key(obj): generate.without_helm_metadata(obj)
        for obj in yaml.safe_load_all(generate.render(str(BIN_DIR / "helm")))
        if obj
    }
    plain = {_key(obj): obj for obj in kustomize_build()}
    namespace = plain.pop(("Namespace", "", "vigil-system"))
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert sorted(plain) == sorted(chart), "run `make manifests`"
    for key, obj in chart.items():
        assert plain[key] == obj, f"{key} differs from the chart's render: run `make manifests`"


def test_manifests_carry_no_helm_metadata() -> None:
    text = "\n".join(yaml.safe_dump(obj) for obj in kustomize_build())
    assert "helm.sh/" not in text
    assert "app.kubernetes.io/managed-by: Helm" not in text


def test_kustomization_lists_every_file() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml"
    )


def test_prometheus_scrape_config_discovers_model_servers_with_a_namespace_label() -> None:
    config = yaml.safe_load((SAMPLES / "prometheus-scrape-config.yaml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "vigil-model-servers")
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    relabels = job["relabel_configs"]
    assert {
        "source_labels": ["__meta_kubernetes_namespace"],
        "action": "replace",
        "target_label": "namespace",
    } in relabels
    keep = [r for r in relabels if r.get("action") == "keep"]
    assert {tuple(r["source_labels"]) for r in keep} == {
        ("__meta_kubernetes_pod_label_app_kubernetes_io_managed_by",),
        ("__meta_kubernetes_pod_container_port_name",),
    }
    assert {r["regex"] for r in keep} == {"vigil", "http"}


def test_promtool_accepts_the_scrape_job(tmp_path: Path) -> None:
    promtool = Path("/usr/bin/promtool")
    if not promtool.exists():
        pytest.skip("promtool (Debian's prometheus package) missing: run `make prometheus`")
    config = yaml.safe_load((SAMPLES / "prometheus-scrape-config.yaml").read_text())
    # Debian builds Prometheus without Kubernetes discovery: promtool checks everything else
    # (the relabel rules above all) with a static target in its place.
    for job in config["scrape_configs"]:
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump({"global": {"scrape_interval": "15s"}, **config}))
    result = subprocess.run([str(promtool), "check", "config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def plain_install(cluster: LocalCluster) -> Iterator[None]:
    """Cleans the plain install up, except the CRD, which every other test shares."""
    yield
    for kind in ("clusterrolebinding", "clusterrole"):
        for name in ("vigil-operator", "vigil-operator-cluster"):
            cluster.kubectl("delete", kind, name, "--ignore-not-found", check=False)
    cluster.kubectl("delete", "namespace", "vigil-system", "--wait=false", "--ignore-not-found", check=False)
    restore_crd(cluster)


@pytest.mark.cluster
def test_kubectl_apply_k_installs_a_running_operator(cluster: LocalCluster, plain_install: None) -> None:
    result = cluster.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(MANIFESTS))
    assert "deployment.apps/vigil-operator serverside-applied" in result.stdout
    # The namespace enforces the restricted Pod Security Standard, so the operator's pod is
    # admitted (and made Ready by kwok) only if its security context passes it.
    cluster.kubectl("rollout", "status", "deployment/vigil-operator", "-n", "vigil-system", "--timeout=90s")
    pods = json.loads(cluster.kubectl("get", "pods", "-n", "vigil-system", "-o", "json").stdout)["items"]
    assert [p["spec"]["serviceAccountName"] for p in pods] == ["vigil-operator"]
    allowed = cluster.kubectl(
        "auth",
        "can-i",
        "patch",
        "modeldeployments.vigil.dev/status",
        "-n",
        "default",
        "--as=system:serviceaccount:vigil-system:vigil-operator",
        check=False,
    )
    assert allowed.stdout.strip() == "yes"
    denied = cluster.kubectl(
        "auth",
        "can-i",
        "list",
        "secrets",
        "-n",
        "default",
        "--as=system:serviceaccount:vigil-system:vigil-operator",
        check=False,
    )
    assert denied.stdout.strip() == "no"


@pytest.mark.cluster
def test_sample_model_deployment_is_valid(cluster: LocalCluster, namespace: str) -> None:
    sample = yaml.safe_load((SAMPLES / "modeldeployment.yaml").read_text())
    sample["metadata"]["namespace"] = namespace
    result = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(sample))
    created = json.loads(result.stdout)
    assert created["spec"]["version"] == sample["spec"]["version"]
    assert created["spec"]["analysis"]["threshold"] == sample["spec"]["analysis"]["threshold"]
