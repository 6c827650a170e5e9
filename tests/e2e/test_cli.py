"""`kubectl vigil`, the plugin, through the project's kubectl against the local cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from harness.cluster import REPO_ROOT, VENV_BIN, LocalCluster
from harness.models import TrainedModel
from harness.waiting import wait_for

from .conftest import Stack, kubectl_vigil_watch, model_deployment, promoted

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus]


def kubectl_vigil(stack: Stack, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """kubectl finds `kubectl-vigil` on PATH (the virtualenv's bin) and passes KUBECONFIG on."""
    return subprocess.run(
        [str(VENV_BIN / "kubectl"), "vigil", *args, "-n", stack.namespace],
        env=stack.cluster.env(),
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def test_actions_wait_for_the_operator_and_say_what_it_did(
    stack: Stack, models: dict[str, TrainedModel]
) -> None:
    stack.start_operator()
    url = stack.prometheus.url
    stack.apply(model_deployment("iris", stack.namespace, "v1", models["good"], prometheus_url=url))
    stack.wait_status("iris", promoted("v1"), what="v1 promoted")
    stack.apply(
        model_deployment(
            "iris", stack.namespace, "v2", models["good-too"], prometheus_url=url, successLimit=50
        )
    )
    stack.wait_status("iris", lambda s: s.get("phase") == "Analyzing", what="v2 under analysis")

    rollback = kubectl_vigil(stack, "rollback", "iris")
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    lines = rollback.stdout.splitlines()
    assert lines[0] == f"rollback requested for modeldeployment {stack.namespace}/iris"
    assert lines[1].startswith("the operator handled rollback in ")
    assert any(
        line.split()[0] == "RolledBack" and "rolled back from v2 to v1: rollback requested" in line
        for line in lines[2:]
    )
    # The status the round left: v1 rolling back out (a kwok pod becomes ready within a round or two).
    assert lines[-1] in (
        "now: Progressing  rolling out v1",
        "now: RolledBack  v2 was rolled back (ManualRollback); v1 serves.",
    )

    print(f"\n$ kubectl vigil rollback iris -n {stack.namespace}\n{rollback.stdout}")
    stack.wait_status("iris", lambda s: s.get("phase") == "RolledBack", what="back on v1")
    retry = kubectl_vigil(stack, "retry", "iris")
    assert retry.returncode == 0, retry.stdout + retry.stderr
    reasons = [line.split()[0] for line in retry.stdout.splitlines()[2:-1]]
    assert "RetryRequested" in reasons
    assert "RolloutStarted" in reasons
    stack.wait_status("iris", lambda s: s.get("phase") == "Analyzing", what="v2 under analysis again")

    promote = kubectl_vigil(stack, "promote", "iris")
    assert promote.returncode == 0, promote.stdout + promote.stderr
    assert "v2 promoted to stable: promotion requested by annotation" in promote.stdout
    assert promote.stdout.splitlines()[-1] == "now: Promoted  v2 is stable and serving"
    assert stack.status("iris")["stableVersion"] == "v2"

    again = kubectl_vigil(stack, "promote", "iris")
    assert again.returncode == 1, "an action the operator ignored is a failure"
    assert "ActionIgnored" in again.stdout
    assert "promote: nothing under analysis in phase Promoted" in again.stdout

    # The watch's first check comes on the next tick of the analysis interval.
    stack.wait_status("iris", lambda s: s.get("lastCheck"), what="the first check after promotion")
    table = kubectl_vigil(stack, "get")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split()[:8] == ["NAME", "VERSION", "STABLE", "PHASE", "STAGE", "SHARE", "ACCURACY", "STEP"]
    assert row.split()[:4] == ["iris", "v2", "v2", "Promoted"]
    assert row.split()[8] in ("pass", "inconclusive")  # LAST CHECK: the watch after promotion
    as_json = json.loads(kubectl_vigil(stack, "get", "iris", "-o", "json").stdout)
    assert (as_json["name"], as_json["phase"], as_json["stable"]) == ("iris", "Promoted", "v2")

    missing = kubectl_vigil(stack, "describe", "nope")
    assert missing.returncode == 1
    assert "error: 404" in missing.stderr


def test_watch_follows_a_rollback_and_describe_tells_the_story(
    stack: Stack, models: dict[str, TrainedModel], tmp_path: Path
) -> None:
    screen = tmp_path / "watch.txt"
    # Started with SIGINT ignored, as a shell's `&` or a CI job starts it: Ctrl-C must still end it.
    with kubectl_vigil_watch(stack, screen, sigint_ignored=True) as watching:
        wait_for(
            lambda: "not found; waiting for it" in screen.read_text(), timeout=30, what="watch's first frame"
        )
        stack.start_operator()
        url = stack.prometheus.url
        stack.apply(model_deployment("iris", stack.namespace, "v1", models["good"], prometheus_url=url))
        stack.wait_status("iris", promoted("v1"), what="v1 promoted")
        wait_for(
            lambda: "Phase:       Promoted  v1 is stable and serving" in screen.read_text(),
            timeout=30,
            what="watch showing v1 promoted",
        )
        stack.apply(model_deployment("iris", stack.namespace, "v2", models["bad"], prometheus_url=url))
        stack.wait_status("iris", lambda s: s.get("phase") == "RolledBack", what="v2 rolled back")
        stack.wait_reason("iris", "RolledBack")
        wait_for(
            lambda: "Phase:       RolledBack  v2 was rolled back (AnalysisFailed)" in screen.read_text(),
            timeout=30,
            what="watch showing the rollback",
        )
    assert watching.returncode == 0, "Ctrl-C ends watch without an error"
    frames = screen.read_text().split("\n--- ")
    assert len(frames) >= 3, "a frame per change, not one at the end"

    story = kubectl_vigil(stack, "describe", "iris")
    assert story.returncode == 0, story.stderr
    (tmp_path / "describe.txt").write_text(story.stdout)
    print(f"\n$ kubectl vigil describe iris -n {stack.namespace}\n{story.stdout}")
    lines = story.stdout.splitlines()
    assert lines[0] == "Name:        iris"
    assert lines[2].startswith("Phase:       RolledBack  v2 was rolled back (AnalysisFailed); v1 serves.")
    assert lines[3] == "Versions:    spec v2  serving v1  stable v1  failed v2"
    assert "Stalled=True (AnalysisFailed)" in lines[4]
    assert lines[5].startswith("Analysis:    every 2s, built-in accuracy, threshold 0.9")
    next_line = next(line for line in lines if line.startswith("Next:"))
    assert "v2 is not rolled out again until you change spec.version" in next_line
    checks = lines[lines.index(next(line for line in lines if line.startswith("Checks (every 2s"))) + 2 :]
    failed = [line for line in checks if line.split()[2:3] == ["fail"]]
    assert len(failed) >= 3, "the failed checks that rolled v2 back, from its events"
    assert all(float(line.split()[3]) < 0.9 for line in failed)
    history = lines[lines.index("History (newest first):") + 1 :]
    assert [line.split()[:2] for line in history[:2]] == [["v2", "failed"], ["v1", "promoted"]]
    assert any("RolledBack" in line and "rolled back from v2 to v1" in line for line in lines)

    described = json.loads(kubectl_vigil(stack, "describe", "iris", "-o", "json").stdout)
    assert described["versions"] == {"spec": "v2", "serving": "v1", "stable": "v1", "failed": "v2"}
    assert [check["verdict"] for check in described["checks"]].count("fail") >= 3


def test_the_krew_archive_runs_against_the_cluster(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    """The release's plugin (a zipapp of pure Python) talks to a real API server with the standard
    library alone: the dependencies' pure-Python fallbacks (aiohttp, yarl, multidict) work."""
    built = subprocess.run(
        [sys.executable, str(REPO_ROOT / "hack" / "kubectl-vigil-archive.py"), "--out", str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "operator")},
        text=True,
        capture_output=True,
        timeout=120,
        check=True,
    )
    with tarfile.open(built.stdout.split()[0]) as archive:
        archive.extractall(tmp_path / "plugin", filter="data")
    manifest = {
        "apiVersion": "vigil.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": namespace},
        "spec": {"version": "v1", "model": {"uri": "file:///models/iris.joblib"}},
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    shown = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(tmp_path / "plugin" / "kubectl-vigil"),
            "get",
            "iris",
            "-n",
            namespace,
        ],
        env={"KUBECONFIG": str(cluster.kubeconfig), "PATH": os.environ["PATH"]},
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[1].split()[:3] == ["iris", "v1", "<none>"]
