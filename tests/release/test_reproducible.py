"""Two builds of one commit give the same images (`make check-reproducible`): two fresh clones of
HEAD, each built without the layer cache, compared by image ID; when they differ the check names
the layer, its Dockerfile step and the files that differ (hack/layer_diff.py).

Two full builds cost minutes of CPU, so this runs with `make check-reproducible` or `pytest -m
reproducible`, not in `make test`.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from harness.cluster import REPO_ROOT

pytestmark = [pytest.mark.reproducible]


def test_two_clean_builds_of_head_give_the_same_image_ids() -> None:
    result = subprocess.run(
        [str(REPO_ROOT / "hack" / "check-reproducible.sh")],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=3000,
        check=False,
    )
    report = json.loads((REPO_ROOT / ".work" / "reproducible.json").read_text())
    differences = "\n".join(
        line for line in result.stdout.splitlines() if ": " in line and "build " not in line
    )
    assert result.returncode == 0, f"not reproducible:\n{differences}"
    for name in ("vigil-operator", "vigil-model-server"):
        assert report[name]["identical"] is True
        assert report[name]["first"] == report[name]["second"]
        assert report[name]["first"].startswith("sha256:")
