"""Every relative link in README.md and docs/*.md points to a file that exists.

A link with a fragment into a Markdown file (`concepts.md#manual-actions`, or `#phases` within the
page) must also name a heading of that file, slugged the way GitHub does.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
# [text](target) or [text](target "title"); images too. Targets have no spaces or parentheses here.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def _prose_lines(path: Path) -> list[str]:
    """The lines of a Markdown file outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def links(path: Path) -> list[str]:
    """Link targets in the prose of `path` (not in code blocks or inline code)."""
    return [
        match.group(1) for line in _prose_lines(path) for match in LINK.finditer(INLINE_CODE.sub("", line))
    ]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: formatting dropped, lower case, punctuation removed, '-' for spaces."""
    text = re.sub(r"`([^`]*)`", r"\1", heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[*_]{1,2}([^*_]+)[*_]{1,2}", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, repeated headings numbered as GitHub does."""
    seen: Counter[str] = Counter()
    result = set()
    for line in _prose_lines(path):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        result.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return result


def relative_links() -> list[tuple[Path, str]]:
    return [(page, target) for page in PAGES for target in links(page) if not EXTERNAL.match(target)]


LINKS = relative_links()


def test_the_pages_have_links_to_check() -> None:
    """Guards the parser: a broken regex would make the link test pass vacuously."""
    targets = {target for page, target in LINKS if page.name == "README.md"}
    assert "docs/concepts.md" in targets
    assert len(LINKS) > 30


def test_the_slugs_follow_github() -> None:
    assert slug("RBAC: every permission, and why") == "rbac-every-permission-and-why"
    assert slug("Loading, and what a model file may do") == "loading-and-what-a-model-file-may-do"
    assert slug("No series: the `namespace` label") == "no-series-the-namespace-label"
    assert slug("kind (for machines with Docker)") == "kind-for-machines-with-docker"


@pytest.mark.parametrize(
    ("page", "target"),
    LINKS,
    ids=[f"{page.relative_to(REPO_ROOT)}->{target}" for page, target in LINKS],
)
def test_every_relative_link_points_to_an_existing_file(page: Path, target: str) -> None:
    file_part, _, fragment = target.partition("#")
    destination = (page.parent / unquote(file_part)).resolve() if file_part else page
    assert destination.exists(), f"{page.relative_to(REPO_ROOT)}: {target} points to a missing file"
    assert destination.is_relative_to(REPO_ROOT), (
        f"{page.relative_to(REPO_ROOT)}: {target} leaves the repository"
    )
    if fragment and destination.suffix == ".md":
        assert fragment in anchors(destination), (
            f"{page.relative_to(REPO_ROOT)}: {target}: no heading with anchor #{fragment} "
            f"in {destination.relative_to(REPO_ROOT)}"
        )
