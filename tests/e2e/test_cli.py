"""`kubectl vigil`, the plugin, through the project's kubectl against the local cluster."""

from __future__ import annotations

import subprocess

from harness.cluster import VENV_BIN
from harness.models import TrainedModel

from .conftest import Stack, model_deployment, promoted


def kubectl_vigil(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl finds `kubectl-vigil` on PATH (the virtualenv's bin) and passes KUBECONFIG on."""
    return subprocess.run(
        [str(VENV_BIN / "kubectl"), "vigil", *args, "-n", stack.namespace],
        env=stack.cluster.env(),
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_kubectl_vigil_promotes_and_tells_the_rollout_story(
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

    promote = kubectl_vigil(stack, "promote", "iris")
    assert promote.returncode == 0, promote.stderr
    assert promote.stdout.strip() == f"promote requested for modeldeployment {stack.namespace}/iris"
    stack.wait_status("iris", promoted("v2"), what="v2 promoted by kubectl vigil")
    stack.wait_reason("iris", "Promoted", count=2)

    story = kubectl_vigil(stack, "get", "iris")
    assert story.returncode == 0, story.stderr
    lines = story.stdout.splitlines()
    assert lines[0] == "Name:        iris"
    assert lines[2].startswith("Phase:       Promoted  v2 is stable and serving")
    assert lines[3] == "Versions:    spec v2  serving v2  stable v2"
    assert "Ready=True" in lines[4]
    assert "Stalled=False" in lines[4]
    history = lines[lines.index("History (newest first):") + 1 :]
    assert [line.split()[:2] for line in history[:2]] == [["v2", "promoted"], ["v1", "promoted"]]
    assert "promotion requested by annotation" in history[0]
    assert any("Promoted" in line and "v2 promoted to stable" in line for line in lines)

    missing = kubectl_vigil(stack, "get", "nope")
    assert missing.returncode == 1
    assert "error: 404" in missing.stderr
