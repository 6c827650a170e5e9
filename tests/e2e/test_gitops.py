"""GitOps for real: Flux (source-, kustomize- and helm-controller, built by `make flux-tools`)
syncs Vigil and a ModelDeployment from a git repository served over smart HTTP on 127.0.0.1
(`git http-backend`); the test commits and pushes to it like a user.

Scenarios (issue 12), one test each:
1. a HelmRelease installs charts/vigil from a GitRepository; a chart upgrade changes the CRD;
2. a Kustomization (the shipped manifests/gitops/flux one: `wait: true`) syncs iris v1 and
   turns Ready when v1 is promoted;
3. a commit to a bad v2: Vigil rolls back; forced reconciliations apply nothing, and the
   Kustomization reports the failure without flapping (Flux names the failed object; the
   reason is on the object's Stalled condition);
6. a `vigil.dev/action=retry` annotation set by hand: with `kubectl annotate` Flux's next apply
   removes it; with `kubectl vigil retry` (field manager vigil-cli) it survives Flux's applies
   until the operator handles it;
4. a commit to a good v3 rolls out, is promoted, and the Kustomization turns Ready;
5. a commit that reverts git to v1 rolls v1 out as an ordinary rollout.

Scenarios 2-5 and 6 are one story on one ModelDeployment (each needs the state the one before
left): `GitOpsStory` plays each step once, in order, whichever test asks for it first, so a test
run alone (or on another xdist worker) still plays the steps before it. `make test` runs this
module in the background pytest beside the soak (marker `gitops`), where it runs in file order.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from unit.test_argocd_health import evaluate_health

from harness.cluster import REPO_ROOT, LocalCluster
from harness.flux import LocalFlux, ready_condition
from harness.gitserver import GitHttpServer, GitWorkspace
from harness.helm import CHART
from harness.kubeapi import KubeApi
from harness.kubelet import LocalKubelet
from harness.models import TrainedModel
from harness.processes import ProcessGroup
from harness.prometheus import LocalPrometheus
from harness.traffic import TrafficGenerator
from harness.waiting import wait_for

from .conftest import Stack, condition
from .gitops import SOURCE_INTERVAL, FluxSite, GitOpsStory, shipped, timed

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.gitops]

CRD_NAME = "modeldeployments.vigil.dev"


@pytest.fixture(scope="module")
def site(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FluxSite]:
    workdir = tmp_path_factory.mktemp("gitops")
    processes = ProcessGroup(log_dir=workdir / "logs")
    git = GitHttpServer.start(workdir / "git")
    try:
        flux = LocalFlux.start(cluster, processes, workdir / "flux")
        yield FluxSite(cluster, flux, git, processes, workdir)
        flux.close()
    finally:
        processes.close()
        git.stop()


@pytest.fixture(scope="module")
def story(
    site: FluxSite,
    cluster: LocalCluster,
    models: dict[str, TrainedModel],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GitOpsStory]:
    """The story's own stack (module-scoped: the steps span tests): namespace, Prometheus, the
    stand-in kubelet, labelled traffic and the operator, as the e2e `stack` fixture builds them."""
    workdir = tmp_path_factory.mktemp("story")
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", namespace)
    processes = ProcessGroup(log_dir=workdir / "logs")
    api = KubeApi(cluster.kubeconfig)
    prometheus = LocalPrometheus.start(workdir / "prometheus", processes)
    kubelet = LocalKubelet(api, namespace, processes, prometheus).start()
    traffic = TrafficGenerator(kubelet).start()
    stack = Stack(cluster, namespace, api, processes, prometheus, kubelet, traffic)
    try:
        stack.start_operator()
        url = site.git.create_repository(f"ml-models-{namespace}")
        repo = GitWorkspace(url, workdir / "ml-models")
        yield GitOpsStory(site, stack, repo, models)
    finally:
        traffic.stop()
        kubelet.stop()
        processes.close()
        api.close()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@pytest.fixture(autouse=True)
def attach_logs(request: pytest.FixtureRequest, site: FluxSite) -> None:
    """A failing test shows Flux's and (when the story ran) the story's process logs."""
    groups = [site.processes]
    if "story" in request.fixturenames:
        groups.append(request.getfixturevalue("story").stack.processes)
    request.node.vigil_process_groups = [*getattr(request.node, "vigil_process_groups", []), *groups]


# --- scenario 1 -------------------------------------------------------------------------------


# The chart's version as `make release` wrote it, and the next patch version for the upgrade.
CHART_VERSION = str(yaml.safe_load((CHART / "Chart.yaml").read_text())["version"])
_major, _minor, _patch = CHART_VERSION.split("-", 1)[0].split(".")
NEXT_VERSION = f"{_major}.{_minor}.{int(_patch) + 1}"


def _chart_with_new_crd_field(chart: Path) -> None:
    """What a chart release with a schema change looks like: one more CRD field, a new version."""
    crd_file = chart / "files" / "modeldeployment.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["owner"] = {"type": "string", "description": "The team that owns this model."}
    crd_file.write_text(yaml.safe_dump(crd, sort_keys=False))
    chart_yaml = yaml.safe_load((chart / "Chart.yaml").read_text())
    chart_yaml["version"] = NEXT_VERSION
    (chart / "Chart.yaml").write_text(yaml.safe_dump(chart_yaml, sort_keys=False))


def _crd_spec_fields(cluster: LocalCluster) -> set[str]:
    crd = json.loads(cluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    return set(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])


def _restore_crd(cluster: LocalCluster) -> None:
    """Put the session's CRD back exactly as crds/ has it (as tests/integration/test_helm.py does)."""
    live = json.loads(cluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
    source = yaml.safe_load((REPO_ROOT / "crds" / "modeldeployment.yaml").read_text())
    source["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
    cluster.kubectl("replace", "-f", "-", input=json.dumps(source))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")


def test_1_helmrelease_installs_the_chart_from_git_then_upgrades_its_crd(
    site: FluxSite, cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    url = site.git.create_repository(f"vigil-{namespace}")
    repo = GitWorkspace(url, tmp_path / "vigil")
    shutil.copytree(CHART, repo.folder / "charts" / "vigil")
    first = repo.commit_and_push(f"vigil chart {CHART_VERSION}")

    repository, release = shipped("vigil-helmrelease.yaml")
    release_name = f"vigil-{namespace[2:8]}"  # cluster-scoped RBAC names derive from it
    repository["metadata"]["namespace"] = namespace
    repository["spec"] = {"interval": SOURCE_INTERVAL, "url": url, "ref": {"branch": "main"}}
    release["metadata"].update(name=release_name, namespace=namespace)
    release["spec"]["chart"]["spec"]["sourceRef"]["namespace"] = namespace
    release["spec"]["chart"]["spec"]["interval"] = SOURCE_INTERVAL
    release["spec"]["interval"] = "10m"
    # No prometheus-operator here: the shipped values' PodMonitor has no CRD to land on.
    release["spec"]["values"]["modelServers"]["podMonitor"]["enabled"] = False
    assert release["spec"]["install"]["crds"] == release["spec"]["upgrade"]["crds"] == "CreateReplace"

    started = time.monotonic()
    try:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all([repository, release]))
        site.flux.wait_ready("HelmRelease", namespace, release_name, timeout=240)

        def installed() -> list[dict[str, Any]] | None:
            # helm-controller may write Ready=True before the release's history (seen in a CI run):
            # wait for both, in whatever order they come.
            obj = site.flux.get("HelmRelease", namespace, release_name)
            history = (obj.get("status") or {}).get("history")
            return history if history and ready_condition(obj).get("status") == "True" else None

        history = wait_for(installed, timeout=60, what="the HelmRelease's history after Ready")
        timed("helmrelease_install", time.monotonic() - started)
        assert history[0]["chartVersion"] == CHART_VERSION
        assert history[0]["status"] == "deployed"
        operator = json.loads(
            cluster.kubectl(
                "get", "deployment", f"{release_name}-operator", "-n", namespace, "-o", "json"
            ).stdout
        )
        assert operator["status"].get("availableReplicas") == 1
        crd = json.loads(cluster.kubectl("get", "crd", CRD_NAME, "-o", "json").stdout)
        assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release_name
        assert "owner" not in _crd_spec_fields(cluster)
        chart = json.loads(
            cluster.kubectl(
                "get", "helmchart", f"{namespace}-{release_name}", "-n", namespace, "-o", "json"
            ).stdout
        )
        # source-controller packaged the chart from the pushed commit.
        assert chart["status"]["artifact"]["revision"] == CHART_VERSION
        assert chart["status"]["observedSourceArtifactRevision"] == f"main@sha1:{first}"

        _chart_with_new_crd_field(repo.folder / "charts" / "vigil")
        repo.commit_and_push(f"vigil chart {NEXT_VERSION}: ModelDeployment gains spec.owner")
        site.flux.request_reconcile("GitRepository", namespace, "vigil")
        started = time.monotonic()

        def upgraded() -> dict[str, Any] | None:
            obj = site.flux.get("HelmRelease", namespace, release_name)
            latest = (obj.get("status") or {}).get("history") or [{}]
            done = (
                latest[0].get("chartVersion") == NEXT_VERSION and ready_condition(obj).get("status") == "True"
            )
            return obj if done else None

        upgraded_release = wait_for(
            upgraded, timeout=240, what=f"HelmRelease upgraded to chart {NEXT_VERSION}"
        )
        timed("helmrelease_upgrade", time.monotonic() - started)
        assert [h["chartVersion"] for h in upgraded_release["status"]["history"][:2]] == [
            NEXT_VERSION,
            CHART_VERSION,
        ]
        assert "owner" in _crd_spec_fields(cluster)
        wait_for(
            lambda: cluster.kubectl("explain", "modeldeployment.spec.owner", check=False).returncode == 0,
            timeout=60,
            what="kubectl explain modeldeployment.spec.owner",
        )
    finally:
        cluster.kubectl("delete", "helmrelease", release_name, "-n", namespace, "--wait=true", check=False)
        _restore_crd(cluster)
    assert cluster.kubectl(
        "get", "deployment", f"{release_name}-operator", "-n", namespace, check=False
    ).returncode
    assert cluster.kubectl("get", "crd", CRD_NAME, check=False).returncode == 0, (
        "helm.sh/resource-policy: keep"
    )


# --- scenarios 2-6: one ModelDeployment's story -------------------------------------------------


def test_2_kustomization_with_wait_turns_ready_when_v1_is_promoted(story: GitOpsStory) -> None:
    v1 = story.reach("v1")
    assert v1["waiting"]["reason"] == "Progressing"
    assert v1["status"]["phase"] == "Promoted"
    assert v1["status"]["stableVersion"] == "v1"
    ready = v1["ready"]
    assert ready["spec"]["wait"] is True, "the shipped Kustomization's health checks"
    assert [e["kind"] for e in ready["spec"]["healthCheckExprs"]] == ["ModelDeployment"]
    assert ready["status"]["lastAppliedRevision"].endswith(v1["revision"])
    # Ready follows promotion, never precedes it.
    assert v1["kustomization_ready_at"] >= v1["promoted_at"]
    inventory = [entry["id"] for entry in ready["status"]["inventory"]["entries"]]
    assert inventory == [f"{story.namespace}_iris_vigil.dev_ModelDeployment"]
    assert evaluate_health(story.stack.mdep("iris"))["status"] == "Healthy", "Argo CD's Lua agrees"


def test_3_bad_v2_is_rolled_back_and_forced_reconciliations_apply_nothing(story: GitOpsStory) -> None:
    bad = story.reach("bad_v2")
    forced = story.reach("forced_reconciliations")
    before, after = forced["before"], forced["after"]
    assert bad["argo_during"]["status"] == "Progressing"
    assert bad["status"]["failedVersion"] == "v2"
    assert condition(bad["status"], "RolledBack")["reason"] == "AnalysisFailed"
    # Flux names the failed object and its kstatus result; Vigil's reason is on that object.
    message = ready_condition(bad["failed"])["message"]
    assert f"ModelDeployment/{story.namespace}/iris status: 'Failed'" in message, message
    assert condition(bad["status"], "Stalled")["reason"] == "AnalysisFailed"

    # Nothing applied: the spec, its generation, Flux's own apply record and the Deployment.
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    assert forced["applied_after"] == forced["applied_before"], "Flux re-applied the ModelDeployment"
    assert forced["deployment_after"] == forced["deployment_before"]
    assert forced["deployment_version"] == "v1"
    assert forced["rollouts_after"] == forced["rollouts_before"], "no new rollout"
    assert forced["rolled_back"] == 1
    # The failure, with its reason, after every reconciliation, and never Ready in between.
    for kustomization in forced["reconciliations"]:
        ready = ready_condition(kustomization)
        assert (ready["status"], ready["reason"]) == ("False", "HealthCheckFailed"), ready
        assert f"ModelDeployment/{story.namespace}/iris status: 'Failed'" in ready["message"]
    samples = forced["samples"]
    assert samples, "the sampler saw the reconciliations"
    assert all(ready != "True" for ready, *_ in samples), "the Kustomization flapped to Ready"
    assert {(phase, stalled) for *_, phase, stalled in samples} == {("RolledBack", "True")}
    assert {reason for ready, reason, *_ in samples if ready == "False"} == {"HealthCheckFailed"}
    health = evaluate_health(after)
    assert health["status"] == "Degraded", "Argo CD's Lua agrees"
    assert "AnalysisFailed" in health["message"]


def test_6_manual_action_annotation_survives_flux_apply_until_handled(story: GitOpsStory) -> None:
    retry = story.reach("manual_retry")
    # `kubectl annotate`: Flux's apply removes fields managed by "kubectl*" Update managers.
    assert retry["by_kubectl"] == ("retry", "kubectl-annotate")
    assert retry["after_flux"] == (None, None), "Flux removed the annotation set with kubectl annotate"
    # `kubectl vigil retry` (manager vigil-cli): still there after two more reconciliations.
    assert retry["after_plugin_and_flux"] == ("retry", "vigil-cli")
    for kustomization in retry["reconciled"]:
        assert ready_condition(kustomization)["reason"] == "HealthCheckFailed"
    # The operator, once back, retried v2 (the Deployment to v2 and back) and rolled it back again.
    assert retry["reasons"].count("RetryRequested") == 1
    assert retry["deployment_after"] == retry["deployment_before"] + 2
    assert retry["status"]["failedVersion"] == "v2"
    assert story.stack.deployment_version("iris") == "v1"


def test_4_good_v3_from_git_is_promoted_and_the_kustomization_turns_ready(story: GitOpsStory) -> None:
    good = story.reach("good_v3")
    assert good["status"]["stableVersion"] == "v3"
    assert good["status"].get("failedVersion") is None
    assert story.stack.deployment_version("iris") == "v3"
    assert good["ready"]["status"]["lastAppliedRevision"].endswith(good["revision"])
    assert "Promoted" in story.stack.wait_reason("iris", "Promoted", count=2)


def test_5_revert_to_v1_in_git_is_an_ordinary_rollout(story: GitOpsStory) -> None:
    revert = story.reach("revert_to_v1")
    status = revert["status"]
    assert status["stableVersion"] == status["currentVersion"] == "v1"
    assert story.stack.deployment_version("iris") == "v1"
    reasons = story.stack.wait_reason("iris", "Promoted", count=3)
    assert reasons.count("RolloutStarted") == revert["rollouts_before"] + 1
    assert reasons.count("RolledBack") == revert["rolled_back_before"], "a rollout, not a rollback"
    assert [h["version"] for h in status["history"] if h["outcome"] == "promoted"][:2] == ["v1", "v3"]
    spec = yaml.safe_load(story.repo.git("show", "HEAD:deploy/production/iris.yaml"))
    assert spec["spec"]["version"] == "v1"
    assert story.repo.git("log", "--format=%s", "-3").splitlines()[:2] == [
        'Revert "iris v2: retrained (bad)"',
        'Revert "iris v3: retrained (good)"',
    ]
