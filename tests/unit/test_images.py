"""The image build inputs, read as text (no image is built here: `make images` does that).

The Dockerfiles take their base as `BASE` (so `make images` can pass a local Debian base where
python:3.11-slim-bookworm cannot be pulled), their ignore files keep every path they copy, and
`make images` tags the images the chart runs by default.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ("operator", "model-server")
FROM = re.compile(r"^FROM\s+(\S+)", re.MULTILINE)
# COPY sources from the build context (not --from=stage): every word but the destination.
COPY = re.compile(r"^COPY\s+(?!--from)(.+)$", re.MULTILINE)


def _makefile_default(name: str) -> str:
    """A `NAME ?= value` default of the Makefile, with $(IMAGE_TAG) expanded."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    (value,) = re.findall(rf"^{name} \?= (\S+)$", makefile, re.MULTILINE)
    (tag,) = re.findall(r"^IMAGE_TAG \?= (\S+)$", makefile, re.MULTILINE)
    return value.replace("$(IMAGE_TAG)", tag)


@pytest.mark.parametrize("component", COMPONENTS)
def test_dockerfile_builds_on_the_base_argument(component: str) -> None:
    text = (REPO_ROOT / component / "Dockerfile").read_text()
    declared = text.index("ARG BASE=python:3.11-slim-bookworm\n")
    assert declared < text.index("\nFROM "), "BASE must be declared before the first FROM"
    assert FROM.findall(text), "no FROM line"
    assert all(image == "${BASE}" for image in FROM.findall(text))


@pytest.mark.parametrize("component", COMPONENTS)
def test_ignore_file_keeps_what_the_dockerfile_copies(component: str) -> None:
    text = (REPO_ROOT / component / "Dockerfile").read_text()
    ignore = (REPO_ROOT / component / "Dockerfile.dockerignore").read_text().splitlines()
    sources = [source for line in COPY.findall(text) for source in line.split()[:-1]]
    assert sources
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert f"!{source}" in ignore, f"{source} is copied but ignored"


def test_make_images_tags_the_images_the_chart_runs() -> None:
    values = yaml.safe_load((REPO_ROOT / "charts" / "vigil" / "values.yaml").read_text())
    chart = yaml.safe_load((REPO_ROOT / "charts" / "vigil" / "Chart.yaml").read_text())
    registry, tag = values["image"]["registry"], chart["appVersion"]
    assert not values["image"]["tag"]
    assert not values["defaultImage"]
    assert not values["modelServerImage"]["registry"]
    assert not values["modelServerImage"]["tag"]
    assert _makefile_default("OPERATOR_IMAGE") == f"{registry}/{values['image']['repository']}:{tag}"
    assert _makefile_default("SERVER_IMAGE") == f"{registry}/{values['modelServerImage']['repository']}:{tag}"
