"""Completes an image's SBOM (hack/sbom.sh): adds the Debian packages its dpkg status lists to the
CycloneDX document cyclonedx-py wrote for its Python environment, and names the image as the
main component. Standard library only; prints the document (sorted: the same image, the same file).

Usage: python3 hack/sbom_deb.py PYTHON.cdx.json ROOTFS IMAGE IMAGE_ID
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote


def dpkg_packages(rootfs: Path) -> list[dict[str, str]]:
    """The installed packages of /var/lib/dpkg/status (stanzas whose Status ends in `installed`)."""
    status = (rootfs / "var" / "lib" / "dpkg" / "status").read_text(errors="replace")
    packages = []
    for stanza in status.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Package") and fields.get("Status", "").endswith(" installed"):
            packages.append(fields)
    return packages


def os_release(rootfs: Path) -> dict[str, str]:
    path = rootfs / "etc" / "os-release"
    if not path.exists():
        path = rootfs / "usr" / "lib" / "os-release"
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value.strip('"') for key, value in pairs}


def deb_component(fields: dict[str, str], distro: str) -> dict[str, Any]:
    name, version, arch = fields["Package"], fields["Version"], fields.get("Architecture", "all")
    purl = f"pkg:deb/debian/{quote(name, safe='')}@{quote(version, safe='')}?arch={arch}&distro={distro}"
    component: dict[str, Any] = {
        "type": "library",
        "bom-ref": purl,
        "name": name,
        "version": version,
        "purl": purl,
    }
    if fields.get("Source"):
        component["properties"] = [{"name": "debian:source", "value": fields["Source"].split()[0]}]
    return component


def complete(bom: dict[str, Any], rootfs: Path, image: str, image_id: str) -> dict[str, Any]:
    """The Python SBOM plus the Debian packages, with the image as the main component."""
    release = os_release(rootfs)
    distro = f"{release.get('ID', 'debian')}-{release.get('VERSION_ID', 'unknown')}"
    python_refs = {c["bom-ref"] for c in bom.get("components", [])}
    debs = [deb_component(p, distro) for p in dpkg_packages(rootfs)]
    bom["components"] = sorted(
        [*bom.get("components", []), *(d for d in debs if d["bom-ref"] not in python_refs)],
        key=lambda c: (c.get("purl", ""), c["name"]),
    )
    name, _, tag = image.rpartition(":")
    main = {
        "type": "container",
        "bom-ref": f"{name}@{image_id}",
        "name": name,
        "version": tag,
        "hashes": [{"alg": "SHA-256", "content": image_id.removeprefix("sha256:")}],
        "properties": [{"name": "os", "value": release.get("PRETTY_NAME", distro)}],
    }
    metadata = bom.setdefault("metadata", {})
    metadata["component"] = main
    # The image depends on every component; cyclonedx-py's own dependency graph stays beside it.
    dependencies = [d for d in bom.get("dependencies", []) if d.get("ref") != main["bom-ref"]]
    dependencies.append({"ref": main["bom-ref"], "dependsOn": [c["bom-ref"] for c in bom["components"]]})
    bom["dependencies"] = sorted(dependencies, key=lambda d: d["ref"])
    return bom


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    source, rootfs, image, image_id = argv
    bom = json.loads(Path(source).read_text())
    print(json.dumps(complete(bom, Path(rootfs), image, image_id), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
