"""Every place Vigil's version is written, in one list: `make release` sets them all, and
tests/unit/test_versions.py checks that they agree (so a place missed by hand fails a test).

Usage: python hack/versions.py get | check | set X.Y.Z | changelog X.Y.Z
The generated install (manifests/) follows from the chart: `make manifests` after `set`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Semantic versioning 2.0's core plus an optional pre-release (no build metadata: OCI tags
# cannot hold '+').
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$")
V = r"(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)"


@dataclass(frozen=True)
class Place:
    """A file and a pattern whose one group is the version (matched once or more)."""

    path: str
    pattern: str

    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.MULTILINE)


PLACES = (
    Place("operator/pyproject.toml", rf'^version = "{V}"$'),
    Place("model-server/pyproject.toml", rf'^version = "{V}"$'),
    Place("operator/vigil_operator/__init__.py", rf'^__version__ = "{V}"$'),
    Place("model-server/vigil_model_server/__init__.py", rf'^__version__ = "{V}"$'),
    Place(
        "operator/vigil_operator/config.py", rf'^DEFAULT_IMAGE = "ghcr\.io/vigil-dev/vigil-model-server:{V}"$'
    ),
    Place("charts/vigil/Chart.yaml", rf"^version: {V}$"),
    Place("charts/vigil/Chart.yaml", rf'^appVersion: "{V}"$'),
    Place("Makefile", rf"^IMAGE_TAG \?= {V}$"),
    Place("README.md", rf"^version {V}, API"),
    Place("docs/install.md", rf"--version {V}\b"),
    Place("docs/install.md", rf"for chart {V}\)"),
    Place("docs/install.md", rf"ghcr\.io/vigil-dev/vigil-(?:operator|model-server):{V}\b"),
    Place("docs/reference.md", rf"`ghcr\.io/vigil-dev/vigil-model-server:{V}`"),
    Place("manifests/gitops/argocd/application-vigil.yaml", rf"^    targetRevision: v{V}$"),
    Place("manifests/gitops/flux/vigil-helmrelease.yaml", rf"^    tag: v{V}$"),
    Place("plugins/vigil.yaml", rf"^  version: v{V}$"),
    Place("plugins/vigil.yaml", rf"/releases/download/v{V}/"),
    Place("plugins/vigil.yaml", rf"/kubectl-vigil-{V}\.tar\.gz$"),
)


class VersionError(Exception):
    """A place is gone or disagrees; the message names it."""


def found(root: Path = ROOT) -> list[tuple[Place, list[str]]]:
    """Each place with the versions written there; a place that matches nothing fails."""
    result = []
    for place in PLACES:
        versions = place.regex().findall((root / place.path).read_text())
        if not versions:
            raise VersionError(
                f"{place.path}: nothing matches {place.pattern!r} (moved? update hack/versions.py)"
            )
        result.append((place, versions))
    return result


def current(root: Path = ROOT) -> str:
    """The one version written everywhere; VersionError naming the places that disagree."""
    versions = {(p.path, v) for p, vs in found(root) for v in vs}
    distinct = {v for _, v in versions}
    if len(distinct) != 1:
        listing = "\n".join(f"  {path}: {version}" for path, version in sorted(versions))
        raise VersionError(f"the version differs between places:\n{listing}")
    return distinct.pop()


def set_version(version: str, root: Path = ROOT) -> list[str]:
    """Write `version` into every place; returns the files that changed."""
    if not SEMVER.match(version):
        raise VersionError(f"{version!r} is not a version like 1.2.3 or 1.2.3-rc.1")
    found(root)  # every place is there before any file is touched
    changed: dict[str, str] = {}
    for place in PLACES:
        path = root / place.path
        text = changed.get(place.path, path.read_text())
        changed[place.path] = place.regex().sub(lambda m: _replace_group(m, version), text)
    written = []
    for relative, text in changed.items():
        path = root / relative
        if path.read_text() != text:
            path.write_text(text)
            written.append(relative)
    return written


def _replace_group(match: re.Match[str], version: str) -> str:
    start, end = match.span(1)
    offset = match.start()
    whole = match.group(0)
    return whole[: start - offset] + version + whole[end - offset :]


def changelog_entry(version: str, root: Path = ROOT) -> str:
    """The CHANGELOG.md section of `version` (keep-a-changelog: `## [X.Y.Z] - YYYY-MM-DD`)."""
    text = (root / "CHANGELOG.md").read_text()
    if not re.search(r"^## \[Unreleased\]$", text, re.MULTILINE):
        raise VersionError("CHANGELOG.md has no `## [Unreleased]` section (keep-a-changelog)")
    heading = re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", text, re.MULTILINE)
    if heading is None:
        raise VersionError(
            f"CHANGELOG.md has no entry for {version}: add `## [{version}] - YYYY-MM-DD` with what"
            " changed (move it from `## [Unreleased]`), then run the release again"
        )
    rest = text[heading.end() :]
    following = re.search(r"^## ", rest, re.MULTILINE)
    body = rest[: following.start() if following else len(rest)].strip()
    if not re.search(r"^- ", body, re.MULTILINE):
        raise VersionError(f"CHANGELOG.md's entry for {version} lists no change")
    return body


def main(argv: list[str]) -> int:
    try:
        match argv:
            case ["get"]:
                print(current())
            case ["check"]:
                print(f"version {current()} in all {len(PLACES)} places")
            case ["set", version]:
                for path in set_version(version):
                    print(f"[release] version {version}: {path}")
            case ["changelog", version]:
                changelog_entry(version)
                print(f"[release] CHANGELOG.md has an entry for {version}")
            case _:
                print(__doc__, file=sys.stderr)
                return 2
    except VersionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
