#!/usr/bin/env bash
# `make cosign`: builds (or reuses) cosign, which `make release` signs the pushed images with
# when COSIGN_KEY is set (docs/release.md, "Supply chain"). From the Go module proxy, pinned,
# cached in ~/.cache/vigil/cosign-<version>-<go>; bin/cosign links to it.
#
# Not part of `make deps`: the build took 27 min 35 s on a busy 2-core machine here, more than
# the test suite may spend on a tool it does not need (releases are signed by whoever cuts them).
# --check: exit 0 only when bin/cosign is in place.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
COSIGN_VERSION=v3.0.6
log() { echo "[cosign] $*"; }
# shellcheck source=hack/lib/go-tools.sh
. "$root/hack/lib/go-tools.sh"

cache=${XDG_CACHE_HOME:-$HOME/.cache}/vigil/cosign-$COSIGN_VERSION-$go_version
link=$root/bin/cosign
if [ "${1:-}" = "--check" ]; then
  [ -x "$cache/cosign" ] && [ "$(readlink "$link" 2>/dev/null)" = "$cache/cosign" ]
  exit
fi
if [ ! -x "$cache/cosign" ]; then
  mkdir -p "$cache"
  build() {
    GOBIN="$cache" go install -ldflags "-s -w -X sigs.k8s.io/release-utils/version.gitVersion=$COSIGN_VERSION" \
      "github.com/sigstore/cosign/v3/cmd/cosign@$COSIGN_VERSION"
  }
  build_step "cosign $COSIGN_VERSION" "$cache/build.log" build
fi
mkdir -p "$root/bin"
ln -sfn "$cache/cosign" "$link"
log "cosign $COSIGN_VERSION -> $link"
