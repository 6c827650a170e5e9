"""The demo's own script, run non-interactively as `make demo` runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cluster import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prometheus, pytest.mark.story]


def test_demo_rolls_v2_back_and_leaves_v1_serving(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = subprocess.run(
        # kwok: the real node belongs to the real-node tier, which runs the demo there.
        [sys.executable, str(REPO_ROOT / "hack" / "demo.py"), "--workdir", str(workdir), "--node", "kwok"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["rolled_back"] is True
    assert summary["serving"] == "v1"
    assert summary["accuracy"]["v1"]["accuracy"] > 0.9 > summary["accuracy"]["v2"]["accuracy"]
    plot = Path(summary["plot"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "=== Summary ===" in result.stdout
    assert "rolled back by itself: yes" in result.stdout
    assert not (workdir / "demo-state.json").exists(), "the demo tore everything down"


def test_demo_shadow_rejects_v2_having_answered_no_user(tmp_path: Path) -> None:
    """`make demo STRATEGY=shadow`: the same degraded v2, as a shadow: rejected on its mirrored
    copies and their labels, and its own counters show it answered no user inference."""
    workdir = tmp_path / "demo"
    argv = [sys.executable, str(REPO_ROOT / "hack" / "demo.py"), "--workdir", str(workdir), "--node", "kwok"]
    result = subprocess.run(
        [*argv, "--strategy", "shadow"], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["strategy"] == "shadow"
    assert summary["rolled_back"] is True
    assert summary["serving"] == "v1"
    assert summary["shadow"]["user_inferences"] == 0
    assert summary["shadow"]["mirror_posts"] > 0
    assert summary["accuracy"]["v1"]["accuracy"] > 0.9 > summary["accuracy"]["v2"]["accuracy"]
    assert "rejected as a shadow by itself: yes" in result.stdout
    assert "user inferences v2 answered: 0" in result.stdout
    assert not (workdir / "demo-state.json").exists(), "the demo tore everything down"
