"""Build the krew archive of `kubectl vigil`: kubectl-vigil-VERSION.tar.gz, one Python zipapp.

The zipapp holds the operator's package and the pure-Python code of what the plugin imports
(kubernetes_asyncio and its dependencies, as installed in this virtualenv), without compiled
extensions: aiohttp, multidict, yarl, frozenlist, propcache and PyYAML fall back to their Python
implementations, so one archive runs on any OS and CPU with python3 >= 3.11. The build is
reproducible (sorted entries, fixed timestamps and owners), so a release's sha256 can be checked
by building again.

    .venv/bin/python hack/kubectl-vigil-archive.py [--version X.Y.Z] [--out DIR] [--manifest FILE]

`--manifest` writes the version, the archive's URL and its sha256 into the krew manifest.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import re
import sys
import tarfile
import tomllib
import zipfile
from importlib.metadata import Distribution, distribution
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "kubectl-vigil"
ROOTS = ("kubernetes_asyncio",)  # what cli.py imports from outside the standard library
FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say
LEFT_OUT = re.compile(r"(^|/)(__pycache__|tests?)/|\.(so|pyd|pyc|c|h|pyx|pxd)$")
MAIN = "import sys\n\nfrom vigil_operator.cli import main\n\nsys.exit(main())\n"
URL = "https://github.com/vigil-dev/vigil/releases/download/v{version}/kubectl-vigil-{version}.tar.gz"


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dependencies(roots: tuple[str, ...]) -> list[Distribution]:
    """The installed distributions `roots` need on this Python, transitively (markers evaluated)."""
    found: dict[str, Distribution] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if _key(name) in found:
            continue
        dist = distribution(name)
        found[_key(name)] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return [found[key] for key in sorted(found)]


def files_of(dist: Distribution) -> dict[str, bytes]:
    """The importable pure-Python files (and data) of an installed distribution, by path in the zip."""
    files = {}
    for path in dist.files or []:
        name = path.as_posix()
        top_level_other = "/" not in name and not name.endswith(".py")  # six.py is a module; RECORD is not
        if name.startswith("..") or ".dist-info/" in name or top_level_other or LEFT_OUT.search(name):
            continue
        files[name] = Path(str(dist.locate_file(path))).read_bytes()
    return files


def operator_files() -> dict[str, bytes]:
    package = ROOT / "operator" / "vigil_operator"
    return {f"vigil_operator/{path.name}": path.read_bytes() for path in sorted(package.glob("*.py"))}


def zipapp(files: dict[str, bytes]) -> bytes:
    """A zipapp: `#!/usr/bin/env python3`, then a zip whose `__main__.py` runs the plugin."""
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted({**files, "__main__.py": MAIN.encode()}):
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files.get(name, MAIN.encode()))
    return buffer.getvalue()


def tarball(executable: bytes) -> bytes:
    """kubectl-vigil in a .tar.gz with no timestamps, owners or names that vary between builds."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(ENTRY)
        info.size, info.mode, info.mtime = len(executable), 0o755, 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        archive.addfile(info, io.BytesIO(executable))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as compressed:
        compressed.write(raw.getvalue())
    return packed.getvalue()


def build(version: str, out: Path) -> Path:
    files = operator_files()
    for dist in dependencies(ROOTS):
        files.update(files_of(dist))
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"kubectl-vigil-{version}.tar.gz"
    target.write_bytes(tarball(zipapp(files)))
    return target


def update_manifest(manifest: Path, version: str, sha256: str) -> None:
    """Set `version`, the archive's URL and its sha256 in the krew manifest, keeping its comments."""
    text = manifest.read_text()
    text = re.sub(r"(?m)^(  version: )v\S+$", rf"\g<1>v{version}", text)
    text = re.sub(r"(?m)^(      uri: )\S+$", rf"\g<1>{URL.format(version=version)}", text)
    text = re.sub(r'(?m)^(      sha256: )"?[0-9a-f]{64}"?$', rf'\g<1>"{sha256}"', text)
    manifest.write_text(text)


def operator_version() -> str:
    with (ROOT / "operator" / "pyproject.toml").open("rb") as project:
        return str(tomllib.load(project)["project"]["version"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--version", default=None, help="default: the operator package's version")
    parser.add_argument("--out", type=Path, default=ROOT / ".work" / "release")
    parser.add_argument("--manifest", type=Path, help="the krew manifest to update (plugins/vigil.yaml)")
    args = parser.parse_args(argv)
    version = args.version or operator_version()
    archive = build(version, args.out)
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    print(f"{archive}  sha256 {sha256}")
    if args.manifest:
        update_manifest(args.manifest, version, sha256)
        print(f"{args.manifest}: version v{version}, sha256 {sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
