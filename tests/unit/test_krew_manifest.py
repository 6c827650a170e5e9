"""The krew manifest (plugins/vigil.yaml) and the archive it points at (hack/kubectl-vigil-archive.py)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST = REPO_ROOT / "plugins" / "vigil.yaml"
BUILDER = REPO_ROOT / "hack" / "kubectl-vigil-archive.py"


def manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


def operator_project() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "operator" / "pyproject.toml").read_text())["project"]


def test_the_manifest_has_krews_shape() -> None:
    plugin = manifest()
    assert plugin["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert plugin["kind"] == "Plugin"
    assert plugin["metadata"]["name"] == "vigil"  # `kubectl vigil`
    spec = plugin["spec"]
    assert set(spec) >= {"version", "homepage", "shortDescription", "description", "platforms"}
    assert re.fullmatch(r"v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", spec["version"])
    assert len(spec["shortDescription"]) <= 50, "krew's index asks for a short one"
    assert spec["homepage"].startswith("https://")
    for platform in spec["platforms"]:
        assert platform["bin"] == "kubectl-vigil"
        assert re.fullmatch(r"[0-9a-f]{64}", platform["sha256"])
        assert platform["files"] == [{"from": "kubectl-vigil", "to": "."}]
        [expression] = platform["selector"]["matchExpressions"]
        assert expression["key"] == "os"
        assert expression["operator"] == "In"
        assert set(expression["values"]) <= {"linux", "darwin", "windows"}


def test_the_manifest_points_at_the_release_of_the_operators_version() -> None:
    version = manifest()["spec"]["version"]
    assert version == f"v{operator_project()['version']}"
    for platform in manifest()["spec"]["platforms"]:
        assert platform["uri"] == (
            f"https://github.com/vigil-dev/vigil/releases/download/{version}/kubectl-vigil-{version[1:]}.tar.gz"
        )
    # The binary krew links is the console script the operator package installs.
    assert operator_project()["scripts"]["kubectl-vigil"] == "vigil_operator.cli:main"


def build(out: Path, *args: str) -> tuple[Path, str]:
    done = subprocess.run(
        [sys.executable, str(BUILDER), "--out", str(out), *args],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "operator")},
        text=True,
        capture_output=True,
        timeout=120,
        check=True,
    )
    path, _, sha256 = done.stdout.splitlines()[0].split()
    return Path(path), sha256


def test_the_archive_is_reproducible_and_runs_on_the_standard_library_alone(tmp_path: Path) -> None:
    copy = tmp_path / "vigil.yaml"
    copy.write_text(MANIFEST.read_text().replace(manifest()["spec"]["version"], "v9.9.9"))
    first, sha256 = build(tmp_path / "one", "--version", "1.2.3", "--manifest", str(copy))
    _, again = build(tmp_path / "two", "--version", "1.2.3")
    assert first.name == "kubectl-vigil-1.2.3.tar.gz"
    assert sha256 == hashlib.sha256(first.read_bytes()).hexdigest()
    assert again == sha256, "two builds of the same tree give the same archive"
    updated = yaml.safe_load(copy.read_text())["spec"]
    assert updated["version"] == "v1.2.3"
    assert updated["platforms"][0]["sha256"] == sha256
    assert updated["platforms"][0]["uri"].endswith("/download/v1.2.3/kubectl-vigil-1.2.3.tar.gz")
    assert copy.read_text().startswith("# The krew manifest"), "comments are kept"

    with tarfile.open(first) as archive:
        assert archive.getnames() == ["kubectl-vigil"]
        archive.extractall(tmp_path / "x", filter="data")
    plugin = tmp_path / "x" / "kubectl-vigil"
    assert os.access(plugin, os.X_OK)
    # -I -S: no site-packages, no PYTHONPATH: only the standard library and what the zipapp holds.
    usage = subprocess.run(
        [sys.executable, "-I", "-S", str(plugin), "describe", "--help"],
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert usage.returncode == 0, usage.stderr
    assert "usage: kubectl vigil describe" in usage.stdout
