"""Why two builds of one image differ: the first layer whose digest differs, the step that made
it, and the files in it that differ (content, time, owner, mode), read from both layers.

Usage (root, buildah's storage): python hack/layer_diff.py IMAGE_A IMAGE_B
Prints a report; exits 0 when the images are identical, 1 when they differ.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

SHOWN = 15  # files listed per difference


def inspect(image: str) -> dict[str, Any]:
    out = subprocess.run(
        ["buildah", "--log-level=error", "inspect", "--type", "image", image],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out))


def layer_steps(config: dict[str, Any]) -> list[str]:
    """The step (history entry) that made each layer, in layer order."""
    return [h.get("created_by", "?") for h in config["history"] if not h.get("empty_layer")]


def export_layers(image: str, folder: Path) -> list[Path]:
    """The image's layers as uncompressed tar files (`buildah push` to a `dir:`), in order."""
    subprocess.run(
        ["buildah", "--log-level=error", "push", "--quiet", "--disable-compression", image, f"dir:{folder}"],
        check=True,
        capture_output=True,
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    return [folder / layer["digest"].split(":", 1)[1] for layer in manifest["layers"]]


def entries(layer: Path) -> dict[str, tuple[str, ...]]:
    """Each file of a layer: its type, mode, owner, time, size and content hash."""
    result = {}
    with tarfile.open(layer) as tar:
        for member in tar:
            digest = ""
            if member.isfile():
                extracted = tar.extractfile(member)
                assert extracted is not None
                digest = hashlib.sha256(extracted.read()).hexdigest()[:16]
            result[member.name] = (
                member.type.decode(),
                oct(member.mode),
                f"{member.uid}:{member.gid}",
                str(int(member.mtime)),
                str(member.size),
                digest,
                member.linkname,
            )
    return result


FIELDS = ("type", "mode", "owner", "mtime", "size", "content", "link")


def compare_layers(a: Path, b: Path) -> list[str]:
    """Lines saying which files differ between two layers, and in what."""
    first, second = entries(a), entries(b)
    lines = []
    only_a, only_b = sorted(first.keys() - second.keys()), sorted(second.keys() - first.keys())
    if only_a:
        lines.append(f"  only in the first build ({len(only_a)}): {', '.join(only_a[:SHOWN])}")
    if only_b:
        lines.append(f"  only in the second build ({len(only_b)}): {', '.join(only_b[:SHOWN])}")
    changed = [name for name in sorted(first.keys() & second.keys()) if first[name] != second[name]]
    if changed:
        lines.append(f"  files that differ ({len(changed)}):")
        for name in changed[:SHOWN]:
            why = [
                f"{field} {x} != {y}"
                for field, x, y in zip(FIELDS, first[name], second[name], strict=True)
                if x != y
            ]
            lines.append(f"    {name}: {'; '.join(why)}")
    if not lines:
        lines.append("  the same files with the same metadata: the tar streams differ in order or headers")
    return lines


def report(image_a: str, image_b: str) -> tuple[bool, list[str]]:
    """(identical, lines): compares configs, then layer by layer down to the files."""
    a, b = inspect(image_a), inspect(image_b)
    ids = (a["FromImageID"], b["FromImageID"])
    if ids[0] == ids[1]:
        return True, [f"identical: image ID sha256:{ids[0]}"]
    lines = [f"image IDs differ: sha256:{ids[0]} != sha256:{ids[1]}"]
    config_a, config_b = a["OCIv1"], b["OCIv1"]
    diff_a, diff_b = config_a["rootfs"]["diff_ids"], config_b["rootfs"]["diff_ids"]
    steps = layer_steps(config_a)
    differing = [i for i, (x, y) in enumerate(zip(diff_a, diff_b, strict=False)) if x != y]
    if len(diff_a) != len(diff_b):
        lines.append(f"the builds have {len(diff_a)} and {len(diff_b)} layers")
    if not differing and len(diff_a) == len(diff_b):
        for key in ("created", "config", "history"):
            if config_a.get(key) != config_b.get(key):
                lines.append(f"the layers are identical; the configs differ in `{key}`:")
                lines.append(f"  {json.dumps(config_a.get(key))[:600]}")
                lines.append(f"  {json.dumps(config_b.get(key))[:600]}")
        return False, lines
    if not differing:
        return False, lines
    index = differing[0]
    step = steps[index] if index < len(steps) else "?"
    lines.append(f"first differing layer: #{index + 1} of {len(diff_a)}, made by: {step[:200]}")
    with tempfile.TemporaryDirectory(prefix="vigil-layer-diff-") as tmp:
        layers_a = export_layers(image_a, Path(tmp) / "a")
        layers_b = export_layers(image_b, Path(tmp) / "b")
        lines += compare_layers(layers_a[index], layers_b[index])
    return False, lines


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    identical, lines = report(*argv)
    print("\n".join(lines))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
