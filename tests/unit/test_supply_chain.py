"""The pure parts of the supply-chain scripts, on small inputs made here: how hack/layer_diff.py
says why two builds' layers differ (what `make check-reproducible` prints), and how
hack/sbom_deb.py turns an image's dpkg status into SBOM components."""

from __future__ import annotations

import importlib.util
import io
import sys
import tarfile
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"vigil_hack_{name}", REPO_ROOT / "hack" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


layer_diff = _load("layer_diff")
sbom_deb = _load("sbom_deb")


def _layer(path: Path, files: dict[str, tuple[bytes, int]]) -> Path:
    """A layer tar: name -> (content, mtime)."""
    with tarfile.open(path, "w") as tar:
        for name, (content, mtime) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), mtime, 0o644
            tar.addfile(info, io.BytesIO(content))
    return path


def test_a_layer_difference_names_each_file_and_what_differs(tmp_path: Path) -> None:
    first = _layer(
        tmp_path / "a.tar",
        {"opt/vigil/a.pyc": (b"same", 0), "opt/vigil/b.py": (b"one", 0), "etc/shadow": (b"x:20000", 0)},
    )
    second = _layer(
        tmp_path / "b.tar",
        {"opt/vigil/a.pyc": (b"same", 1764547200), "opt/vigil/b.py": (b"two", 0), "tmp/new": (b"", 0)},
    )
    lines = "\n".join(layer_diff.compare_layers(first, second))
    assert "only in the first build (1): etc/shadow" in lines
    assert "only in the second build (1): tmp/new" in lines
    assert "opt/vigil/a.pyc: mtime 0 != 1764547200" in lines
    assert "opt/vigil/b.py: content " in lines
    assert "files that differ (2)" in lines


def test_identical_layers_are_said_to_differ_only_in_their_stream(tmp_path: Path) -> None:
    files = {"opt/vigil/a": (b"x", 0)}
    lines = layer_diff.compare_layers(_layer(tmp_path / "a.tar", files), _layer(tmp_path / "b.tar", files))
    assert lines == ["  the same files with the same metadata: the tar streams differ in order or headers"]


DPKG_STATUS = """\
Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc
Version: 2.36-9+deb12u13

Package: python3.11-minimal
Status: install ok installed
Architecture: amd64
Source: python3.11
Version: 3.11.2-6+deb12u6
Description: a description
 that goes on

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""


def test_the_sbom_gets_every_installed_debian_package_and_the_image(tmp_path: Path) -> None:
    (tmp_path / "var" / "lib" / "dpkg").mkdir(parents=True)
    (tmp_path / "var" / "lib" / "dpkg" / "status").write_text(DPKG_STATUS)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
    )
    python = {"bom-ref": "kopf==1.45.2", "name": "kopf", "version": "1.45.2", "purl": "pkg:pypi/kopf@1.45.2"}
    bom = sbom_deb.complete(
        {"components": [python]}, tmp_path, "registry/vigil-operator:1.0.0", "sha256:" + "a" * 64
    )
    names = [c["name"] for c in bom["components"]]
    assert names == ["libc6", "python3.11-minimal", "kopf"]  # sorted by purl; not the removed package
    libc = bom["components"][0]
    assert libc["purl"] == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u13?arch=amd64&distro=debian-12"
    assert libc["properties"] == [{"name": "debian:source", "value": "glibc"}]
    main = bom["metadata"]["component"]
    assert (main["type"], main["name"], main["version"]) == ("container", "registry/vigil-operator", "1.0.0")
    assert main["hashes"] == [{"alg": "SHA-256", "content": "a" * 64}]
    (graph,) = [d for d in bom["dependencies"] if d["ref"] == main["bom-ref"]]
    assert sorted(graph["dependsOn"]) == sorted(c["bom-ref"] for c in bom["components"])
