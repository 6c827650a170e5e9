"""Helm for real, against the local cluster only: lint, template accepted by a server-side
dry-run, the restricted Pod Security Standard, install, an upgrade that changes the CRD
schema, an upgrade to two replicas with leader election, and uninstall (which keeps the CRD).

Helm gets the test cluster's kubeconfig explicitly and its cache/config/data folders in the
test's temporary folder, so nothing touches ~/.kube or ~/.config/helm.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cluster import BIN_DIR, REPO_ROOT, LocalCluster
from harness.helm import CHART, Helm
from harness.waiting import wait_for

CRD_SOURCE = REPO_ROOT / "crds" / "modeldeployment.yaml"
CRD_NAME = "modeldeployments.vigil.dev"

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(not (BIN_DIR / "helm").exists(), reason="bin/helm missing: run `make cluster-tools`"),
]


@pytest.fixture
def helm(cluster: LocalCluster, tmp_path: Path) -> Helm:
    return Helm(cluster, tmp_path / "helm")


@pytest.fixture
def release(cluster: LocalCluster, helm: Helm, namespace: str) -> Iterator[str]:
    """A unique release name (cluster-scoped RBAC names derive from it); uninstalled afterwards
    and the shared CRD put back exactly as crds/ has it."""
    name = f"vigil-{uuid.uuid4().hex[:6]}"
    yield name
    helm("uninstall", name, "--namespace", namespace, "--ignore-not-found", "--wait", check=False)
    restore_crd(cluster)


def restore_crd(cluster: LocalCluster) -> None:
    live = json.loads(cluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    source = yaml.safe_load(CRD_SOURCE.read_text())
    source["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
    cluster.kubectl("replace", "-f", "-", input=json.dumps(source))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")


def get(cluster: LocalCluster, *args: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def test_helm_lint(helm: Helm) -> None:
    result = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    "sets",
    [
        pytest.param([], id="defaults"),
        pytest.param(["watchNamespaces={NAMESPACE}", "metrics.service.enabled=true"], id="namespaced"),
        pytest.param(["replicaCount=2", "podDisruptionBudget.enabled=true"], id="replicas"),
        pytest.param(["replicaCount=2", "watchNamespaces={NAMESPACE}"], id="namespaced-replicas"),
    ],
)
def test_helm_template_is_accepted_by_a_server_side_dry_run(
    cluster: LocalCluster, helm: Helm, namespace: str, sets: list[str]
) -> None:
    rendered = helm.template("vigil-dry", namespace, *[s.replace("NAMESPACE", namespace) for s in sets])
    result = cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-f",
        "-",
        input=rendered,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    kinds = {line.split("/", 1)[0] for line in result.stdout.splitlines()}
    assert "deployment.apps" in kinds
    assert "clusterrole.rbac.authorization.k8s.io" in kinds
    assert all("(server dry run)" in line for line in result.stdout.splitlines())


def test_operator_pod_passes_restricted_pod_security(
    cluster: LocalCluster, helm: Helm, namespace: str
) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    rendered = helm(
        "template",
        "vigil-pss",
        str(CHART),
        "--namespace",
        namespace,
        "--show-only",
        "templates/deployment.yaml",
    )
    deployment = yaml.safe_load(rendered.stdout)
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator", "namespace": namespace, "labels": template["metadata"]["labels"]},
        "spec": {**template["spec"], "serviceAccountName": "default"},
    }
    admitted = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert admitted.returncode == 0, admitted.stderr
    # The same pod without the container's security context is refused: the check has teeth.
    del pod["spec"]["containers"][0]["securityContext"]
    refused = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted' in refused.stderr


def _chart_with_new_crd_field(tmp_path: Path) -> Path:
    """A copy of the chart whose CRD has one more field: what a schema change in a release looks like."""
    chart = tmp_path / "vigil"
    shutil.copytree(CHART, chart)
    crd_file = chart / "files" / "modeldeployment.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["owner"] = {"type": "string", "description": "The team that owns this model."}
    crd_file.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def _explains_owner(cluster: LocalCluster) -> bool:
    return cluster.kubectl("explain", "modeldeployment.spec.owner", check=False).returncode == 0


def test_helm_install_upgrade_with_crd_change_and_uninstall(
    cluster: LocalCluster, helm: Helm, namespace: str, release: str, tmp_path: Path
) -> None:
    operator = f"{release}-operator"
    # The session's cluster applied crds/ with kubectl already: adopt it, as a user would.
    installed = helm(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--take-ownership",
        "--wait",
        "--timeout",
        "2m",
    )
    assert "STATUS: deployed" in installed.stdout
    assert "kubectl apply -f manifests/samples/modeldeployment.yaml" in installed.stdout, "NOTES.txt"
    deployment = get(cluster, "deployment", operator, "-n", namespace)
    assert deployment is not None
    assert deployment["status"].get("availableReplicas") == 1
    assert get(cluster, "clusterrole", operator) is not None
    assert get(cluster, "clusterrolebinding", operator) is not None
    crd = get(cluster, "crd", CRD_NAME)
    assert crd is not None
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
    assert not _explains_owner(cluster)

    helm(
        "upgrade",
        release,
        str(_chart_with_new_crd_field(tmp_path)),
        "--namespace",
        namespace,
        "--wait",
        "--timeout",
        "2m",
    )
    crd = get(cluster, "crd", CRD_NAME)
    assert crd is not None
    assert (
        "owner" in crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    )
    # The API server publishes the new schema (OpenAPI v3) a moment after the update.
    wait_for(lambda: _explains_owner(cluster), timeout=60, what="kubectl explain modeldeployment.spec.owner")
    pruned = cluster.kubectl(
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "vigil.dev/v1alpha1",
                "kind": "ModelDeployment",
                "metadata": {"name": "iris", "namespace": namespace},
                "spec": {
                    "version": "v1",
                    "model": {"uri": "file:///models/iris.joblib"},
                    "owner": "fraud-team",
                },
            }
        ),
    )
    assert json.loads(pruned.stdout)["spec"]["owner"] == "fraud-team", "the new field is kept, not pruned"

    helm(
        "upgrade",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--reuse-values",
        "--set",
        "replicaCount=2",
        "--wait",
        "--timeout",
        "2m",
    )
    deployment = get(cluster, "deployment", operator, "-n", namespace)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 2
    assert "--leader-elect" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert get(cluster, "role", f"{operator}-leader-election", "-n", namespace) is not None

    helm("uninstall", release, "--namespace", namespace, "--wait")
    assert get(cluster, "deployment", operator, "-n", namespace) is None
    assert get(cluster, "serviceaccount", operator, "-n", namespace) is None
    assert get(cluster, "clusterrole", operator) is None
    assert get(cluster, "clusterrolebinding", f"{operator}-cluster") is None
    assert get(cluster, "role", f"{operator}-leader-election", "-n", namespace) is None
    assert get(cluster, "crd", CRD_NAME) is not None, "helm.sh/resource-policy: keep"
