#!/usr/bin/env bash
# Installs (or reuses) the SBOM tool `make release` runs: cyclonedx-bom (CycloneDX's Python SBOM
# generator, `cyclonedx-py`) from PyPI, pinned with every dependency (hack/sbom-constraints.txt),
# in a virtualenv of its own under ~/.cache/vigil/cyclonedx-bom-<version>-<pins>; bin/cyclonedx-py
# links to it.
#
# Why not syft (anchore/syft, which reads dpkg and Python packages from an image in one pass):
# building it from the Go module proxy takes well over the 6 minutes allowed here on 2 cores
# (docs/release.md, "Supply chain"); cyclonedx-bom installs in seconds. hack/sbom.sh adds the
# image's Debian packages (dpkg status) to what cyclonedx-py finds in its Python environment.
#
# --check: exit 0 only when bin/cyclonedx-py is in place.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
VERSION=7.5.0
PYTHON=${PYTHON:-python3.11}
pins=$(sha256sum "$root/hack/sbom-constraints.txt" | cut -c1-12)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/vigil/cyclonedx-bom-$VERSION-$pins
link=$root/bin/cyclonedx-py

log() { echo "[sbom-tools] $*"; }

if [ "${1:-}" = "--check" ]; then
  [ -f "$cache/.installed" ] && [ "$(readlink "$link" 2>/dev/null)" = "$cache/bin/cyclonedx-py" ]
  exit
fi
grep -qx "cyclonedx-bom==$VERSION" "$root/hack/sbom-constraints.txt" \
  || { echo "error: hack/sbom-constraints.txt does not pin cyclonedx-bom==$VERSION" >&2; exit 1; }
if [ ! -f "$cache/.installed" ]; then
  command -v "$PYTHON" >/dev/null || { echo "error: $PYTHON not found" >&2; exit 1; }
  log "installing cyclonedx-bom $VERSION into $cache (about 20 s)"
  rm -rf "$cache"
  if ! { "$PYTHON" -m venv "$cache" && "$cache/bin/pip" install --disable-pip-version-check -q \
    -c "$root/hack/sbom-constraints.txt" "cyclonedx-bom==$VERSION"; }; then
    rm -rf "$cache"
    echo "error: installing cyclonedx-bom $VERSION failed (PyPI reachable?)" >&2
    exit 1
  fi
  touch "$cache/.installed"
fi
mkdir -p "$root/bin"
ln -sfn "$cache/bin/cyclonedx-py" "$link"
log "cyclonedx-py $("$link" --version 2>/dev/null | head -1) -> $link"
