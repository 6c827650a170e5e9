#!/usr/bin/env bash
# hack/sbom.sh IMAGE OUT.cdx.json: a CycloneDX 1.6 SBOM (JSON) of one image built with buildah:
# every Python distribution in its virtualenv (/opt/vigil), found by cyclonedx-py (cyclonedx-bom,
# hack/sbom-tools.sh), plus every Debian package of its base (dpkg status, hack/sbom_deb.py),
# with the image (name, ID) as the main component. Reproducible: the same image gives the same
# file. Root (buildah mounts the image read-only; its interpreter runs chrooted, network off).
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:?usage: hack/sbom.sh IMAGE OUT.cdx.json}
out=${2:?usage: hack/sbom.sh IMAGE OUT.cdx.json}
VENV=/opt/vigil

log() { echo "[sbom] $*"; }
die() { echo "error: $*" >&2; exit 1; }

hack/sbom-tools.sh --check || hack/sbom-tools.sh
buildah=(buildah --log-level=error)
id=$("${buildah[@]}" inspect --type image -f '{{.FromImageID}}' "$image") || die "no image $image in buildah's storage"
work=$(mktemp -d)
container=
cleanup() {
  if [ -n "$container" ]; then "${buildah[@]}" umount "$container" >/dev/null 2>&1 || true; "${buildah[@]}" rm "$container" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
container=$("${buildah[@]}" from --pull-never --quiet "$image")
rootfs=$("${buildah[@]}" mount "$container")
[ -x "$rootfs$VENV/bin/python" ] || die "$image has no $VENV/bin/python"

# cyclonedx-py asks "the interpreter" for its sys.path, then reads the distributions found there.
# The interpreter asked is the image's own (chrooted into the mounted image, whatever Python this
# machine has); its paths are answered as they are seen from here, below the mount.
cat >"$work/python" <<EOF
#!/bin/sh
exec chroot "$rootfs" $VENV/bin/python -I -c 'import json, sys; json.dump(["$rootfs" + p for p in sys.path if p], sys.stdout)'
EOF
chmod +x "$work/python"
bin/cyclonedx-py environment --sv 1.6 --of JSON --output-reproducible --validate \
  -o "$work/python.cdx.json" "$work/python" 2>"$work/cyclonedx.log" \
  || { cat "$work/cyclonedx.log" >&2; die "cyclonedx-py failed on $image"; }

mkdir -p "$(dirname "$out")"
python3 hack/sbom_deb.py "$work/python.cdx.json" "$rootfs" "$image" "sha256:$id" >"$out.tmp"
mv "$out.tmp" "$out"
log "$image: $out ($(python3 -c 'import json,sys; b=json.load(open(sys.argv[1])); print(len(b["components"]))' "$out") components)"
