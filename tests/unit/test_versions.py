"""One version, written in several places (hack/versions.py lists them): they agree, `set`
rewrites every one of them, and a release without a CHANGELOG.md entry is refused before
anything is touched."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vigil_hack_versions", REPO_ROOT / "hack" / "versions.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


versions = _load()


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The files that hold the version (and CHANGELOG.md), copied where they can be changed."""
    for relative in {place.path for place in versions.PLACES} | {"CHANGELOG.md"}:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / relative, tmp_path / relative)
    return tmp_path


def test_every_place_holds_the_same_version() -> None:
    import vigil_model_server
    import vigil_operator

    version = versions.current()
    assert versions.SEMVER.match(version)
    assert vigil_operator.__version__ == vigil_model_server.__version__ == version


def test_the_current_version_has_a_changelog_entry() -> None:
    assert "- " in versions.changelog_entry(versions.current())


def test_set_rewrites_every_place_and_nothing_else(copy: Path) -> None:
    before = {p: (copy / p).read_text() for p in {place.path for place in versions.PLACES}}
    old = versions.current(copy)
    changed = versions.set_version("12.3.4-rc.1", copy)
    assert sorted(changed) == sorted(before)
    assert versions.current(copy) == "12.3.4-rc.1"
    for path, text in before.items():
        # Only the version changed: putting the old one back gives the files as they were.
        assert (copy / path).read_text().replace("12.3.4-rc.1", old) == text
    assert versions.set_version("12.3.4-rc.1", copy) == []  # a second run changes nothing


def test_a_place_that_disagrees_is_named(copy: Path) -> None:
    chart = copy / "charts" / "vigil" / "Chart.yaml"
    chart.write_text(chart.read_text().replace("\nversion: ", "\nversion: 9.9.9\nold: ", 1))
    with pytest.raises(versions.VersionError, match=r"charts/vigil/Chart.yaml: 9\.9\.9"):
        versions.current(copy)


@pytest.mark.parametrize("bad", ["1.2", "v1.2.3", "1.2.3+build.1", "01.2.3", "1.2.3; rm -rf /"])
def test_set_refuses_what_is_not_a_version(copy: Path, bad: str) -> None:
    with pytest.raises(versions.VersionError, match="not a version"):
        versions.set_version(bad, copy)


def test_changelog_entry_is_required_with_changes(copy: Path) -> None:
    with pytest.raises(versions.VersionError, match=r"no entry for 7\.0\.0"):
        versions.changelog_entry("7.0.0", copy)
    log = copy / "CHANGELOG.md"
    log.write_text(log.read_text().replace("\n## [0.1.0]", "\n## [7.0.0] - 2027-01-01\n\n## [0.1.0]", 1))
    with pytest.raises(versions.VersionError, match="lists no change"):
        versions.changelog_entry("7.0.0", copy)


def test_release_refuses_a_version_without_changelog_entry_before_touching_anything(copy: Path) -> None:
    """`make release` stops at step 1, with a message that says what to add."""
    shutil.copytree(REPO_ROOT / "hack", copy / "hack")
    (copy / "bin").symlink_to(REPO_ROOT / "bin")
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    result = subprocess.run(
        [str(copy / "hack" / "release.sh")],
        env={"PATH": "/usr/bin:/bin", "VERSION": "99.0.0", "PY": sys.executable},
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "CHANGELOG.md has no entry for 99.0.0: add `## [99.0.0] - YYYY-MM-DD`" in result.stderr
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
