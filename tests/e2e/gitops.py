"""The GitOps story of tests/e2e/test_gitops.py: Flux on the session's cluster, a git server,
and one ModelDeployment moved through its scenarios by commits (`GitOpsStory`), with the
samplers and the records the tests assert on and the closing note quotes."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from unit.test_argocd_health import evaluate_health

from harness.cluster import REPO_ROOT, VENV_BIN, LocalCluster
from harness.flux import LocalFlux, ready_condition
from harness.gitserver import GitHttpServer, GitWorkspace
from harness.models import TrainedModel
from harness.processes import ProcessGroup
from harness.waiting import wait_for

from .conftest import Stack, condition, model_deployment, promoted

FLUX_MANIFESTS = REPO_ROOT / "manifests" / "gitops" / "flux"
REPORT = REPO_ROOT / ".work" / "gitops"
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
            # --no-wait: the operator is stopped, nobody would confirm it (the plugin waits by default)
            [str(VENV_BIN / "kubectl"), "vigil", "retry", self.name, "-n", self.namespace, "--no-wait"],
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
