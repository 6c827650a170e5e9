"""GitOps for real: Flux (source-, kustomize- and helm-controller, built by `make flux-tools`)
syncs Vigil and a ModelDeployment from a git repository served over smart HTTP on 127.0.0.1
(`git http-backend`); the test commits and pushes to it like a user.

Scenarios (issue 12), one test each:
1. a HelmRelease installs charts/vigil from a GitRepository; a chart upgrade changes the CRD;
2. a Kustomization (the shipped manifests/gitops/flux one: `wait: true`) syncs iris v1 and
   turns Ready when v1 is promoted;
3. a commit to a bad v2: Vigil rolls back; forced reconciliations apply nothing, and the
   Kustomization reports the failure, with the reason, without flapping;
6. a `vigil.dev/action=retry` annotation set by hand survives Flux's server-side apply until
   the operator handles it;
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
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from unit.test_argocd_health import evaluate_health

from harness.cluster import REPO_ROOT, VENV_BIN, LocalCluster
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

from .conftest import Stack, condition, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.gitops]

FLUX_MANIFESTS = REPO_ROOT / "manifests" / "gitops" / "flux"
REPORT = REPO_ROOT / ".work" / "gitops"
CRD_NAME = "modeldeployments.vigil.dev"
KUSTOMIZE_MANAGER = "kustomize-controller"
# Short Flux intervals: the source is polled every 2 s besides the reconcile requests the story
# makes after each push; a failing Kustomization retries every 3 s (the "without flapping" check
# watches several of those); the health check waits at most 3 minutes for a rollout to settle.
SOURCE_INTERVAL = "2s"
RETRY_INTERVAL = "3s"
HEALTH_TIMEOUT = "3m"


def shipped(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((FLUX_MANIFESTS / name).read_text()) if doc]


def timed(name: str, seconds: float) -> None:
    """Timings for docs/gitops.md (printed and kept in .work/gitops/timings.json, never asserted)."""
    REPORT.mkdir(parents=True, exist_ok=True)
    path = REPORT / "timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = round(seconds, 1)
    path.write_text(json.dumps(data, indent=2))
    print(f"timing {name}: {seconds:.1f}s")


@dataclass
class FluxSite:
    """Flux and the git server of this module, on the session's cluster."""

    cluster: LocalCluster
    flux: LocalFlux
    git: GitHttpServer
    processes: ProcessGroup
    workdir: Path

    def source_and_kustomization(self, namespace: str, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """manifests/gitops/flux/models-kustomization.yaml for this repository and namespace: its
        `wait`, `prune` and `path` as shipped; intervals short; no timeout longer than a rollout."""
        repository, kustomization = shipped("models-kustomization.yaml")
        repository["metadata"]["namespace"] = namespace
        repository["spec"].update(url=url, interval=SOURCE_INTERVAL)
        kustomization["metadata"]["namespace"] = namespace
        kustomization["spec"].update(
            targetNamespace=namespace, interval="10m", retryInterval=RETRY_INTERVAL, timeout=HEALTH_TIMEOUT
        )
        kustomization["spec"]["sourceRef"]["namespace"] = namespace
        return repository, kustomization


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


@dataclass
class GitOpsStory:
    """iris in one namespace, synced by a Kustomization from a repository the story commits to.
    Each step runs once; `reach(step)` runs the steps before it first."""

    site: FluxSite
    stack: Stack
    repo: GitWorkspace
    models: dict[str, TrainedModel]
    name: str = "iris"
    kustomization: str = "models"
    done: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    STEPS = ("v1", "bad_v2", "forced_reconciliations", "manual_retry", "good_v3", "revert_to_v1")

    @property
    def namespace(self) -> str:
        return self.stack.namespace

    def reach(self, step: str) -> Any:
        for earlier in self.STEPS[: self.STEPS.index(step) + 1]:
            if earlier in self.failed:
                pytest.fail(f"the story's step {earlier!r} failed in an earlier test: {self.failed[earlier]}")
            if earlier not in self.done:
                started = time.monotonic()
                try:
                    self.done[earlier] = getattr(self, f"_{earlier}")()
                except BaseException as error:
                    self.failed[earlier] = str(error).splitlines()[0] if str(error) else repr(error)
                    raise
                timed(f"story_{earlier}", time.monotonic() - started)
        return self.done[step]

    # --- git --------------------------------------------------------------------------------
    def commit_model(self, version: str, model: str, message: str, *, notify: bool = True) -> str:
        manifest = model_deployment(
            self.name, self.namespace, version, self.models[model], prometheus_url=self.stack.prometheus.url
        )
        del manifest["metadata"]["namespace"]  # the Kustomization's targetNamespace sets it
        self.repo.write(f"deploy/production/{self.name}.yaml", yaml.safe_dump(manifest, sort_keys=False))
        return self.push(lambda: self.repo.commit_and_push(message), notify=notify)

    def push(self, change: Callable[[], str], *, notify: bool = True) -> str:
        """Push, then tell Flux as a webhook receiver would (its 2 s poll would find it too)."""
        revision = change()
        if notify:
            self.site.flux.request_reconcile("GitRepository", self.namespace, "ml-models")
        return revision

    # --- Flux -------------------------------------------------------------------------------
    def kustomization_obj(self) -> dict[str, Any]:
        return self.site.flux.get("Kustomization", self.namespace, self.kustomization)

    def wait_kustomization(
        self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 240
    ):
        def current() -> dict[str, Any] | None:
            obj = self.kustomization_obj()
            return obj if predicate(obj) else None

        try:
            return wait_for(current, timeout=timeout, what=f"Kustomization {what}")
        except AssertionError as error:
            status = self.kustomization_obj().get("status")
            raise AssertionError(f"{error}\nKustomization status: {yaml.safe_dump(status)}") from None

    def reconciliations_of(self, *, revision: str) -> int:
        """How many times Flux reconciled `revision` (status.history counts them per revision)."""
        history = (self.kustomization_obj().get("status") or {}).get("history") or []
        return sum(
            entry["totalReconciliations"]
            for entry in history
            if entry.get("metadata", {}).get("revision", "").endswith(revision)
        )

    def applied(self, revision: str) -> Callable[[dict[str, Any]], bool]:
        return lambda obj: (obj.get("status") or {}).get("lastAttemptedRevision", "").endswith(revision)

    # --- steps ------------------------------------------------------------------------------
    def _v1(self) -> dict[str, Any]:
        """Scenario 2: v1 from git; the Kustomization is Ready only once v1 is promoted."""
        revision = self.commit_model("v1", "good", "iris v1", notify=False)
        repository, kustomization = self.site.source_and_kustomization(self.namespace, self.repo.url)
        started = time.monotonic()
        self.stack.apply(repository)
        self.stack.apply(kustomization)
        # While v1 rolls out and is analysed, the Kustomization waits (Ready Unknown, Progressing).
        seen_waiting = self.wait_kustomization(
            lambda obj: (
                ready_condition(obj).get("status") == "Unknown"
                and self.stack.status(self.name).get("phase") in ("Progressing", "Analyzing")
            ),
            "waiting for v1's health while v1 is analysed",
        )
        ready = self.site.flux.wait_ready(
            "Kustomization", self.namespace, self.kustomization, revision=revision
        )
        ready_at = time.monotonic() - started
        status = self.stack.status(self.name)
        promoted_at = condition(status, "Ready")["lastTransitionTime"]
        kustomization_ready_at = ready_condition(ready)["lastTransitionTime"]
        timed("v1_commit_to_kustomization_ready", ready_at)
        return {
            "revision": revision,
            "waiting": ready_condition(seen_waiting),
            "ready": ready,
            "status": status,
            "promoted_at": promoted_at,
            "kustomization_ready_at": kustomization_ready_at,
        }

    def _bad_v2(self) -> dict[str, Any]:
        """Scenario 3, first half: a bad v2 from git, rolled back by Vigil; Flux reports it."""
        deployment_v1 = self.stack.deployment(self.name)
        started = time.monotonic()
        revision = self.commit_model("v2", "bad", "iris v2: retrained (bad)")
        wait_for(
            lambda: self.stack.deployment_version(self.name) == "v2", timeout=120, what="Deployment on v2"
        )
        argo_during = evaluate_health(self.stack.mdep(self.name))
        status = self.stack.wait_status(
            self.name, lambda s: s.get("phase") == "RolledBack", what="v2 rolled back"
        )
        wait_for(
            lambda: self.stack.deployment_version(self.name) == "v1", timeout=60, what="Deployment back on v1"
        )
        failed = self.wait_kustomization(
            lambda obj: (
                self.applied(revision)(obj)
                and ready_condition(obj).get("status") == "False"
                and ready_condition(obj).get("reason") == "HealthCheckFailed"
            ),
            "failing its health check on v2",
        )
        timed("bad_v2_commit_to_kustomization_failed", time.monotonic() - started)
        return {
            "revision": revision,
            "status": status,
            "failed": failed,
            "argo_during": argo_during,
            "deployment_v1_generation": deployment_v1["metadata"]["generation"],
        }

    def _forced_reconciliations(self) -> dict[str, Any]:
        """Scenario 3, second half: three forced reconciliations of the same revision, sampled
        throughout; recorded in .work/gitops/scenario-3.txt beside the repository's git log."""
        stack = self.stack
        before = stack.mdep(self.name)
        deployment_before = stack.deployment(self.name)["metadata"]["generation"]
        rollouts_before = stack.reasons(self.name).count("RolloutStarted")
        counted_before = self.reconciliations_of(revision=self.done["bad_v2"]["revision"])
        sampler = Sampler(self)
        reconciliations = [
            self.site.flux.reconcile("Kustomization", self.namespace, self.kustomization) for _ in range(3)
        ]
        # ... and two of Flux's own retries (retryInterval) after them, still sampled.
        counted_after = wait_for(
            lambda: (
                (n := self.reconciliations_of(revision=self.done["bad_v2"]["revision"])) >= counted_before + 5
                and n
            ),
            timeout=60,
            what="two more retries of the failing Kustomization",
        )
        samples = sampler.stop()
        after = stack.mdep(self.name)
        result = {
            "before": before,
            "after": after,
            "applied_before": applied_time(before),
            "applied_after": applied_time(after),
            "deployment_before": deployment_before,
            "deployment_after": stack.deployment(self.name)["metadata"]["generation"],
            "deployment_version": stack.deployment_version(self.name),
            "rollouts_before": rollouts_before,
            "rollouts_after": stack.reasons(self.name).count("RolloutStarted"),
            "rolled_back": stack.reasons(self.name).count("RolledBack"),
            "reconciliations": reconciliations,
            "samples": samples,
            "counted": (counted_before, counted_after),
        }
        record_scenario_3(self, result)
        return result

    def _manual_retry(self) -> dict[str, Any]:
        """Scenario 6, with the operator stopped so that only Flux acts on the annotation:
        `kubectl annotate` (field manager kubectl-annotate) is undone by Flux's next apply;
        `kubectl vigil retry` (field manager vigil-cli) survives forced reconciliations, and the
        operator, started again, handles it."""
        assert self.stack.operator is not None
        self.stack.operator.stop()
        mdep = f"modeldeployment/{self.name}"
        self.site.cluster.kubectl("annotate", "-n", self.namespace, mdep, "vigil.dev/action=retry")
        by_kubectl = action_and_managers(self.stack.mdep(self.name))
        self.site.flux.reconcile("Kustomization", self.namespace, self.kustomization)
        after_flux = action_and_managers(self.stack.mdep(self.name))

        deployment_before = self.stack.deployment(self.name)["metadata"]["generation"]
        plugin = subprocess.run(
            [str(VENV_BIN / "kubectl"), "vigil", "retry", self.name, "-n", self.namespace],
            env=self.site.cluster.env(),
            text=True,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert plugin.returncode == 0, plugin.stderr
        reconciled = [
            self.site.flux.reconcile("Kustomization", self.namespace, self.kustomization) for _ in range(2)
        ]
        after_plugin_and_flux = action_and_managers(self.stack.mdep(self.name))
        self.stack.start_operator()
        wait_for(
            lambda: action_and_managers(self.stack.mdep(self.name))[0] is None,
            timeout=60,
            what="the operator handled the retry (annotation removed)",
        )
        reasons = self.stack.wait_reason(self.name, "RetryRequested")
        status = self.stack.wait_status(
            self.name,
            lambda s: (
                s.get("phase") == "RolledBack" and self.stack.reasons(self.name).count("RolledBack") >= 2
            ),
            what="the retried v2 rolled back again",
        )
        return {
            "by_kubectl": by_kubectl,
            "after_flux": after_flux,
            "after_plugin_and_flux": after_plugin_and_flux,
            "reconciled": reconciled,
            "reasons": reasons,
            "status": status,
            "deployment_before": deployment_before,
            "deployment_after": self.stack.deployment(self.name)["metadata"]["generation"],
        }

    def _good_v3(self) -> dict[str, Any]:
        """Scenario 4: a good v3 from git is rolled out and promoted; Kustomization Ready."""
        started = time.monotonic()
        revision = self.commit_model("v3", "good-too", "iris v3: retrained (good)")
        status = self.stack.wait_status(self.name, promoted("v3"), timeout=180, what="v3 promoted")
        ready = self.site.flux.wait_ready(
            "Kustomization", self.namespace, self.kustomization, revision=revision
        )
        timed("good_v3_commit_to_kustomization_ready", time.monotonic() - started)
        return {"revision": revision, "status": status, "ready": ready}

    def _revert_to_v1(self) -> dict[str, Any]:
        """Scenario 5: `git revert` of v3 and v2: git names v1 again, an ordinary rollout."""
        v2, v3 = self.done["bad_v2"]["revision"], self.done["good_v3"]["revision"]
        rolled_back_before = self.stack.reasons(self.name).count("RolledBack")
        rollouts_before = self.stack.reasons(self.name).count("RolloutStarted")
        started = time.monotonic()

        def revert() -> str:
            self.repo.git("revert", "--no-edit", v3, v2)
            return self.repo.push()

        revision = self.push(revert)
        status = self.stack.wait_status(self.name, promoted("v1"), timeout=180, what="v1 promoted again")
        ready = self.site.flux.wait_ready(
            "Kustomization", self.namespace, self.kustomization, revision=revision
        )
        timed("revert_to_v1_commit_to_kustomization_ready", time.monotonic() - started)
        return {
            "revision": revision,
            "status": status,
            "ready": ready,
            "rolled_back_before": rolled_back_before,
            "rollouts_before": rollouts_before,
        }


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


def _chart_with_new_crd_field(chart: Path) -> None:
    """What a chart release with a schema change looks like: one more CRD field, a new version."""
    crd_file = chart / "files" / "modeldeployment.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["owner"] = {"type": "string", "description": "The team that owns this model."}
    crd_file.write_text(yaml.safe_dump(crd, sort_keys=False))
    chart_yaml = yaml.safe_load((chart / "Chart.yaml").read_text())
    chart_yaml["version"] = "0.1.1"
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
    first = repo.commit_and_push("vigil chart 0.1.0")

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
        installed = site.flux.wait_ready("HelmRelease", namespace, release_name, timeout=240)
        timed("helmrelease_install", time.monotonic() - started)
        history = installed["status"]["history"]
        assert history[0]["chartVersion"] == "0.1.0"
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
        assert (
            first in chart["status"]["artifact"]["revision"]
            or chart["status"]["artifact"]["revision"] == "0.1.0"
        )

        _chart_with_new_crd_field(repo.folder / "charts" / "vigil")
        repo.commit_and_push("vigil chart 0.1.1: ModelDeployment gains spec.owner")
        site.flux.request_reconcile("GitRepository", namespace, "vigil")
        started = time.monotonic()

        def upgraded() -> dict[str, Any] | None:
            obj = site.flux.get("HelmRelease", namespace, release_name)
            latest = (obj.get("status") or {}).get("history") or [{}]
            done = latest[0].get("chartVersion") == "0.1.1" and ready_condition(obj).get("status") == "True"
            return obj if done else None

        upgraded_release = wait_for(upgraded, timeout=240, what="HelmRelease upgraded to chart 0.1.1")
        timed("helmrelease_upgrade", time.monotonic() - started)
        assert [h["chartVersion"] for h in upgraded_release["status"]["history"][:2]] == ["0.1.1", "0.1.0"]
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


@dataclass
class Sampler:
    """Samples the Kustomization's Ready condition and the ModelDeployment's phase and Stalled
    condition in a thread, so a flap between two reconciliations cannot slip by."""

    story: GitOpsStory
    samples: list[tuple[str, str, str, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            ready = ready_condition(self.story.kustomization_obj())
            status = self.story.stack.status(self.story.name)
            stalled = condition(status, "Stalled")
            self.samples.append(
                (
                    ready.get("status", ""),
                    ready.get("reason", ""),
                    status.get("phase", ""),
                    stalled.get("status", ""),
                )
            )

    def stop(self) -> list[tuple[str, str, str, str]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def action_and_managers(mdep: dict[str, Any]) -> tuple[str | None, str | None]:
    """The `vigil.dev/action` annotation and the field manager that owns it, if any."""
    action = (mdep["metadata"].get("annotations") or {}).get("vigil.dev/action")
    owner = next(
        (
            entry["manager"]
            for entry in mdep["metadata"].get("managedFields") or []
            if "f:vigil.dev/action" in json.dumps(entry.get("fieldsV1", {}))
        ),
        None,
    )
    return action, owner


def applied_time(mdep: dict[str, Any]) -> str:
    """When Flux last changed the ModelDeployment (its managedFields entry's time)."""
    return next(e["time"] for e in mdep["metadata"]["managedFields"] if e["manager"] == KUSTOMIZE_MANAGER)


def record_scenario_3(story: GitOpsStory, forced: dict[str, Any]) -> None:
    """The closing note's record: git log, ModelDeployment and Deployment before/after."""
    samples = forced["samples"]
    lines = [
        "# Scenario 3: a bad v2 from git, rolled back by Vigil, then 3 forced Flux reconciliations",
        "## git log of the test repository",
        story.repo.log(),
        "## ModelDeployment before the forced reconciliations",
        mdep_summary(forced["before"]),
        "## ModelDeployment after",
        mdep_summary(forced["after"]),
        f"Flux's last apply to the ModelDeployment (managedFields time): before {forced['applied_before']}, "
        f"after {forced['applied_after']}",
        f"Deployment generation before: {forced['deployment_before']}, after: {forced['deployment_after']}; "
        f"serves {forced['deployment_version']}",
        f"RolloutStarted events before: {forced['rollouts_before']}, after: {forced['rollouts_after']}; "
        f"RolledBack events: {forced['rolled_back']}",
        "Reconciliations of the v2 revision (Kustomization status.history): before "
        f"{forced['counted'][0]}, after {forced['counted'][1]} (3 forced, the rest Flux's retries)",
        "## Kustomization Ready after each forced reconciliation",
        *(
            f"- requestedAt {k['status']['lastHandledReconcileAt']}: {ready_condition(k)['status']} "
            f"{ready_condition(k)['reason']}: {ready_condition(k)['message']}"
            for k in forced["reconciliations"]
        ),
        f"## {len(samples)} samples, every 0.2 s, of (Kustomization Ready, its reason, "
        "ModelDeployment phase, its Stalled)",
        *sorted({f"- {sample}: {samples.count(sample)}" for sample in samples}),
    ]
    REPORT.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    (REPORT / "scenario-3.txt").write_text(text)
    print(text)


def mdep_summary(mdep: dict[str, Any]) -> str:
    status = mdep.get("status") or {}
    keep = {k: status.get(k) for k in ("phase", "currentVersion", "stableVersion", "failedVersion")}
    conditions = {c["type"]: f"{c['status']} {c.get('reason', '')}" for c in status.get("conditions") or []}
    return yaml.safe_dump(
        {
            "generation": mdep["metadata"]["generation"],
            "spec.version": mdep["spec"]["version"],
            **keep,
            "conditions": conditions,
        },
        sort_keys=False,
    )


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
