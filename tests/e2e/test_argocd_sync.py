"""Argo CD's sync, simulated (Argo CD is not built here: docs/gitops.md says why): a "git"
manifest applied the way Argo CD applies it (server-side apply, field manager argocd-controller,
no --force-conflicts), an automatic rollback, then the same manifest again.

No drift: re-applying changes nothing, does not restart the failed rollout, and
`kubectl diff --server-side` is empty. The Argo CD health script reads the live objects.
Flux, which is built and run, has the real thing: tests/e2e/test_gitops.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from unit.test_argocd_health import evaluate_health

from harness.models import TrainedModel
from harness.waiting import wait_for

from .conftest import Stack, condition, model_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.story]
MANAGER = "argocd-controller"


def sync(stack: Stack, manifest: dict[str, Any]) -> str:
    """What an Argo CD sync with ServerSideApply=true does (no --force-conflicts: a field the
    operator had taken over would fail it)."""
    return stack.cluster.kubectl(
        "apply", "--server-side", f"--field-manager={MANAGER}", "-f", "-", input=yaml.safe_dump(manifest)
    ).stdout


def diff(stack: Stack, manifest: dict[str, Any]):
    return stack.cluster.kubectl(
        "diff",
        "--server-side",
        f"--field-manager={MANAGER}",
        "-f",
        "-",
        input=yaml.safe_dump(manifest),
        check=False,
    )


def managed_spec_fields(stack: Stack, name: str) -> dict[str, Any]:
    """Who owns which part of the spec, per field manager (managedFields, times left out)."""
    owners: dict[str, Any] = {}
    for entry in stack.mdep(name)["metadata"].get("managedFields") or []:
        spec = (entry.get("fieldsV1") or {}).get("f:spec")
        if spec is not None and entry.get("subresource") != "status":
            owners[f"{entry['manager']}/{entry['operation']}"] = spec
    return owners


def test_reapplying_git_after_a_rollback_changes_nothing(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    stack.start_operator()
    url = stack.prometheus.url
    git_v1 = model_deployment("iris", stack.namespace, "v1", models["good"], prometheus_url=url)
    assert "serverside-applied" in sync(stack, git_v1)
    stack.wait_status("iris", lambda s: s.get("phase") == "Promoted", what="v1 promoted")
    assert evaluate_health(stack.mdep("iris"))["status"] == "Healthy"

    git_v2 = model_deployment("iris", stack.namespace, "v2", models["bad"], prometheus_url=url)
    sync(stack, git_v2)
    wait_for(
        lambda: evaluate_health(stack.mdep("iris"))["status"] == "Progressing", timeout=30, what="Progressing"
    )
    status = stack.wait_status("iris", lambda s: s.get("phase") == "RolledBack", what="v2 rolled back")
    assert condition(status, "RolledBack")["reason"] == "AnalysisFailed"
    wait_for(lambda: stack.deployment_version("iris") == "v1", timeout=30, what="Deployment back on v1")
    health = evaluate_health(stack.mdep("iris"))
    assert health["status"] == "Degraded"
    assert "AnalysisFailed" in health["message"]

    before = stack.mdep("iris")
    deployment_before = stack.deployment("iris")
    rollouts_before = stack.wait_reason("iris", "RolledBack").count("RolloutStarted")
    owners_before = managed_spec_fields(stack, "iris")
    assert list(owners_before) == [f"{MANAGER}/Apply"], "only git owns the spec; the operator never writes it"

    sync(stack, git_v2)  # the next sync of the same git revision

    after = stack.mdep("iris")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    assert managed_spec_fields(stack, "iris") == owners_before
    # Give the operator two more checks to (wrongly) react to the sync before judging.
    seen = after["status"]["lastCheck"]["time"]
    once = stack.wait_status("iris", lambda s: s["lastCheck"]["time"] != seen, what="a check after the sync")
    stack.wait_status(
        "iris", lambda s: s["lastCheck"]["time"] != once["lastCheck"]["time"], what="another check"
    )
    status = stack.status("iris")
    assert status["phase"] == "RolledBack"
    assert status["failedVersion"] == "v2"
    assert stack.deployment_version("iris") == "v1"
    deployment_after = stack.deployment("iris")
    assert deployment_after["metadata"]["generation"] == deployment_before["metadata"]["generation"]
    assert stack.reasons("iris").count("RolloutStarted") == rollouts_before
    assert stack.reasons("iris").count("RolledBack") == 1

    no_drift = diff(stack, git_v2)
    assert no_drift.returncode == 0, no_drift.stdout + no_drift.stderr
    assert no_drift.stdout == ""
    # ... and diff does see a real change, so the empty diff above means something.
    changed = json.loads(json.dumps(git_v2))
    changed["spec"]["replicas"] = 2
    drift = diff(stack, changed)
    assert drift.returncode == 1, drift.stderr
    assert "replicas: 2" in drift.stdout
