"""bin/helm against one local cluster, with its cache, config and data folders in a given place.

Helm gets the cluster's kubeconfig explicitly, so nothing touches ~/.kube or ~/.config/helm.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from harness.cluster import BIN_DIR, REPO_ROOT, LocalCluster

CHART = REPO_ROOT / "charts" / "vigil"
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"


def kube_prometheus_stack_values() -> str:
    """The values block docs/operations.md gives kube-prometheus-stack users ("With
    kube-prometheus-stack"), verbatim: the tests install with it, so the docs cannot drift."""
    section = OPERATIONS_DOC.read_text().split("### With kube-prometheus-stack", 1)[1]
    block = re.search(r"```yaml\n(# values-kube-prometheus-stack\.yaml\n.*?)```", section, re.DOTALL)
    assert block is not None, "the values block is gone from docs/operations.md"
    return block.group(1)


class Helm:
    """bin/helm against the cluster's kubeconfig, with its folders below `home`."""

    def __init__(self, cluster: LocalCluster, home: Path) -> None:
        self.cluster = cluster
        self.env = {
            **cluster.env(),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(BIN_DIR / "helm"), "--kubeconfig", str(self.cluster.kubeconfig), *args],
            env=self.env,
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def template(self, release: str, namespace: str, *sets: str, chart: Path = CHART) -> str:
        args = ["template", release, str(chart), "--namespace", namespace]
        for value in sets:
            args += ["--set", value]
        return self(*args).stdout
