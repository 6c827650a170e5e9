"""The operator with exactly the chart's permissions: a real token of the chart's
ServiceAccount, no admin credentials, through the whole life of a ModelDeployment.

Kubernetes cannot run the operator's pod here (kwok fakes pods), so the operator runs as a
local process with the token and the command-line arguments of the chart's Deployment.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from integration.test_helm import restore_crd

from harness.cluster import VENV_BIN, LocalCluster
from harness.helm import CHART, Helm
from harness.models import TrainedModel
from harness.ports import free_port
from harness.processes import ProcessGroup
from harness.waiting import wait_for

from .conftest import Stack, condition, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.story]


@pytest.fixture
def helm(cluster: LocalCluster, tmp_path: Path) -> Helm:
    return Helm(cluster, tmp_path / "helm")


@pytest.fixture
def operator_namespace(cluster: LocalCluster, namespace: str) -> Iterator[str]:
    """Where the chart's ServiceAccount lives: not the models' namespace, as in a real install."""
    name = f"{namespace}-vigil"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def release(cluster: LocalCluster) -> Iterator[str]:
    """A unique release name; its cluster-scoped RBAC is deleted afterwards."""
    name = f"vigil-{uuid.uuid4().hex[:6]}"
    yield name
    for kind in ("clusterrolebinding", "clusterrole"):
        for suffix in ("-operator", "-operator-cluster"):
            cluster.kubectl("delete", kind, name + suffix, "--ignore-not-found", check=False)


def service_account_kubeconfig(cluster: LocalCluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig holding a real, short-lived token of the ServiceAccount, and nothing else."""
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=1h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    server = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [server],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": server["name"], "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def can_i(cluster: LocalCluster, kubeconfig: Path, *args: str) -> bool:
    """`kubectl auth can-i` as the ServiceAccount (its kubeconfig only)."""
    result = subprocess.run(
        [str(VENV_BIN / "kubectl"), "--kubeconfig", str(kubeconfig), "auth", "can-i", *args],
        env={**cluster.env(), "KUBECONFIG": str(kubeconfig)},
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.stdout.strip() == "yes"


def chart_operator_args(objects: list[dict[str, Any]]) -> list[str]:
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def assert_no_permission_errors(stack: Stack) -> None:
    assert stack.operator is not None
    log = stack.operator.log()
    # RBAC denials, as the API server words them and as Kopf reports them. (Other 403s, e.g. a
    # namespace another test is deleting, are not about permissions.)
    for sign in ("forbidden: User", "Not enough permissions"):
        assert sign not in log, f"permission error in the operator's log:\n{log[-4000:]}"


RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def chart_objects(helm: Helm, release: str, operator_namespace: str, namespace: str) -> list[dict]:
    """The chart's objects, rendered to watch `namespace`."""
    rendered = helm(
        "template", release, str(CHART), "--namespace", operator_namespace,
        "--set", f"watchNamespaces={{{namespace}}}",
    ).stdout  # fmt: skip
    return [o for o in yaml.safe_load_all(rendered) if o]


def test_least_privilege_rollout_and_automatic_rollback(
    stack: Stack,
    models: dict[str, TrainedModel],
    helm: Helm,
    operator_namespace: str,
    release: str,
    tmp_path: Path,
) -> None:
    cluster, namespace = stack.cluster, stack.namespace
    objects = chart_objects(helm, release, operator_namespace, namespace)
    rbac = [o for o in objects if o["kind"] in RBAC_KINDS]
    assert {o["kind"] for o in rbac} == set(RBAC_KINDS)
    cluster.kubectl("apply", "--server-side", "-f", "-", input="\n---\n".join(json.dumps(o) for o in rbac))

    kubeconfig = service_account_kubeconfig(
        cluster, operator_namespace, f"{release}-operator", tmp_path / "operator.kubeconfig"
    )
    # The token is the ServiceAccount's, not an admin's: it may do its job here and nothing else.
    assert can_i(
        cluster, kubeconfig, "patch", "modeldeployments.vigil.dev", "--subresource=status", "-n", namespace
    )
    assert can_i(cluster, kubeconfig, "create", "deployments.apps", "-n", namespace)
    assert not can_i(cluster, kubeconfig, "patch", "deployments.apps", "-n", "default")
    assert not can_i(cluster, kubeconfig, "list", "secrets", "-n", namespace)
    assert can_i(cluster, kubeconfig, "create", "secrets", "-n", namespace)  # the feedback token
    # Namespaced RBAC: no Secret of any other namespace, by name or otherwise.
    assert not can_i(cluster, kubeconfig, "get", "secrets", "-n", "default")
    assert not can_i(cluster, kubeconfig, "create", "secrets", "-n", "default")
    # A Shadow or Canary candidate's Deployment is deleted after it; no Secret ever is.
    assert can_i(cluster, kubeconfig, "delete", "deployments.apps", "-n", namespace)
    assert not can_i(cluster, kubeconfig, "delete", "secrets", "-n", namespace)
    assert not can_i(cluster, kubeconfig, "get", "pods", "-n", namespace)

    args = chart_operator_args(objects)
    assert args[0] == f"--namespace={namespace}"
    stack.start_operator(kubeconfig=kubeconfig, args=args)

    url = stack.prometheus.url
    stack.apply(model_deployment("iris", namespace, "v1", models["good"], prometheus_url=url))
    status = stack.wait_status("iris", promoted("v1"), what="v1 promoted")
    assert condition(status, "Ready")["status"] == "True"
    assert_feedback_token_rotates_without_restarting_pods(stack)
    stack.apply(model_deployment("iris", namespace, "v2", models["bad"], prometheus_url=url))
    status = stack.wait_status("iris", lambda s: s.get("phase") == "RolledBack", what="v2 rolled back")
    assert status["failedVersion"] == "v2"
    assert condition(status, "RolledBack")["reason"] == "AnalysisFailed"
    wait_for(lambda: stack.deployment_version("iris") == "v1", timeout=30, what="Deployment back on v1")
    assert stack.mdep("iris")["spec"]["version"] == "v2"
    reasons = stack.wait_reason("iris", "RolledBack")
    assert reasons.count("RolledBack") == 1
    assert "RolloutStarted" in reasons
    service = stack.api.get(f"/api/v1/namespaces/{namespace}/services/iris")
    assert service["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    # A canary: the candidate's own Deployment is created, then deleted once it is promoted.
    canary = model_deployment("iris", namespace, "v3", models["good-too"], prometheus_url=url)
    canary["spec"]["strategy"] = {"type": "Canary", "canary": {"steps": [{"percent": 50}]}}
    stack.apply(canary)
    stack.wait_status("iris", lambda s: (s.get("strategy") or {}).get("stage") == "Canary", what="canary")
    stack.wait_status("iris", promoted("v3"), what="v3 promoted")
    wait_for(
        lambda: (
            not any(
                d["metadata"]["name"] == "iris-candidate"
                for d in stack.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")["items"]
            )
        ),
        timeout=60,
        what="the candidate's Deployment deleted",
    )
    assert_no_permission_errors(stack)


def assert_feedback_token_rotates_without_restarting_pods(stack: Stack) -> None:
    """The feedback token Secret, written with the chart's permissions only: created with the
    first release, owned by the ModelDeployment, mounted; rotated by annotation, pods untouched."""
    namespace = stack.namespace
    path = f"/api/v1/namespaces/{namespace}/secrets/iris-feedback"
    secret = stack.api.get(path)
    first = base64.b64decode(secret["data"]["token"]).decode()
    assert len(first) >= 43
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    assert secret["metadata"]["ownerReferences"][0]["uid"] == stack.mdep("iris")["metadata"]["uid"]
    pod_spec = stack.deployment("iris")["spec"]["template"]["spec"]
    assert {"name": "feedback-token", "mountPath": "/var/run/vigil/feedback", "readOnly": True} in pod_spec[
        "containers"
    ][0]["volumeMounts"]
    before = stack.deployment("iris")["metadata"]["generation"]

    stack.cluster.kubectl("annotate", "mdep", "iris", "-n", namespace, "vigil.dev/rotate-feedback-token=r1")
    rotated = wait_for(
        lambda: (
            (s := stack.api.get(path))["metadata"]
            .get("annotations", {})
            .get("vigil.dev/feedback-token-rotation")
            == "r1"
            and s
        ),
        timeout=30,
        what="the feedback token rotated",
    )
    second = base64.b64decode(rotated["data"]["token"]).decode()
    assert second != first
    # The same value again (a GitOps re-sync) does not rotate again; the pods were not touched.
    seen = last_check_time(stack)
    stack.cluster.kubectl("annotate", "mdep", "iris", "-n", namespace, "app.example/resync=1")
    stack.wait_status(
        "iris", lambda s: (s.get("lastCheck") or {}).get("time") != seen, what="a round after the re-sync"
    )
    assert base64.b64decode(stack.api.get(path)["data"]["token"]).decode() == second
    assert stack.deployment("iris")["metadata"]["generation"] == before


def last_check_time(stack: Stack) -> str | None:
    return (stack.status("iris").get("lastCheck") or {}).get("time")


def test_helm_install_then_model_deployment_ready(
    stack: Stack,
    models: dict[str, TrainedModel],
    helm: Helm,
    operator_namespace: str,
    release: str,
    tmp_path: Path,
) -> None:
    """`helm install` into the local cluster, then a ModelDeployment reaches Ready, reconciled by an
    operator that has only the installed ServiceAccount's token and the installed Deployment's args."""
    cluster, namespace = stack.cluster, stack.namespace
    try:
        helm(
            "install", release, str(CHART), "--namespace", operator_namespace,
            # The session's cluster applied crds/ with kubectl already: adopt it, as a user would.
            "--take-ownership", "--wait", "--timeout", "2m",
            "--set", "defaultImage=vigil-model-server:test",
            "--set", f"prometheusUrl={stack.prometheus.url}",
        )  # fmt: skip
        installed = json.loads(
            cluster.kubectl(
                "get", "deployment", f"{release}-operator", "-n", operator_namespace, "-o", "json"
            ).stdout
        )
        assert installed["status"]["availableReplicas"] == 1
        args = installed["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--all-namespaces" in args
        assert f"--prometheus-url={stack.prometheus.url}" in args
        account = installed["spec"]["template"]["spec"]["serviceAccountName"]
        kubeconfig = service_account_kubeconfig(
            cluster, operator_namespace, account, tmp_path / "operator.kubeconfig"
        )
        stack.start_operator(kubeconfig=kubeconfig, args=args)

        manifest = model_deployment("iris", namespace, "v1", models["good"], prometheus_url="")
        del manifest["spec"]["analysis"]["prometheusUrl"]  # the chart's --prometheus-url applies
        stack.apply(manifest)
        status = stack.wait_status("iris", promoted("v1"), what="v1 promoted")
        assert status["phase"] == "Promoted"
        assert condition(status, "Ready")["status"] == "True"
        cluster.kubectl("wait", "--for=condition=Ready", "mdep/iris", "-n", namespace, "--timeout=10s")
        assert stack.deployment_version("iris") == "v1"
        assert_no_permission_errors(stack)
    finally:
        helm(
            "uninstall",
            release,
            "--namespace",
            operator_namespace,
            "--ignore-not-found",
            "--wait",
            check=False,
        )
        restore_crd(cluster)


def test_a_missing_permission_fails_loudly(
    cluster: LocalCluster,
    namespace: str,
    processes: ProcessGroup,
    helm: Helm,
    operator_namespace: str,
    release: str,
    tmp_path: Path,
) -> None:
    """The control for the tests above: the chart's RBAC minus one rule (creating Events) is
    caught, so their clean logs mean the permissions suffice."""
    objects = chart_objects(helm, release, operator_namespace, namespace)
    rbac = [o for o in objects if o["kind"] in RBAC_KINDS]
    for role in rbac:
        if role["kind"] in ("ClusterRole", "Role"):
            role["rules"] = [r for r in role["rules"] if r["resources"] != ["events"]]
    cluster.kubectl("apply", "--server-side", "-f", "-", input="\n---\n".join(json.dumps(o) for o in rbac))
    kubeconfig = service_account_kubeconfig(
        cluster, operator_namespace, f"{release}-operator", tmp_path / "operator.kubeconfig"
    )
    port = free_port()
    operator = processes.start(
        "operator",
        [
            str(VENV_BIN / "vigil-operator"),
            *chart_operator_args(objects),
            f"--liveness-port={port}",
            "--metrics-port=0",
        ],
        env={"KUBECONFIG": str(kubeconfig), "PATH": cluster.env()["PATH"]},
    )
    manifest = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": namespace},
        "spec": {"version": "v1", "model": {"uri": "file:///models/iris.joblib"}},
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    denial = re.compile(r'cannot create resource \\?"events')
    wait_for(lambda: denial.search(operator.log()), timeout=60, what="the denied Event in the log")
    assert "forbidden: User" in operator.log()
