#!/usr/bin/env bash
# Builds (or reuses) Flux's controllers for the GitOps tests (`make flux-tools`), the versions of
# one Flux release, Flux v2.9.5 (its manifests/bases name them):
#   source-controller v1.9.5, kustomize-controller v1.9.5, helm-controller v1.6.4
# from their Go modules, through the wrapper module tools/flux (one build: the three share
# client-go, controller-runtime and helm, which then compile once). Their CRDs are copied from the
# same modules' config/crd/bases into the cache, next to the binaries (bin/flux-crds).
#
# Built binaries live in a versioned cache outside the clone
# (${XDG_CACHE_HOME:-~/.cache}/vigil/flux-tools/<versions>); bin/ holds symlinks to them.
# Overrides per binary, as in cluster-tools.sh: VIGIL_SOURCE_CONTROLLER, VIGIL_KUSTOMIZE_CONTROLLER,
# VIGIL_HELM_CONTROLLER (the CRDs then still come from the pinned modules).
#
# Usage: hack/flux-tools.sh [--check]
set -euo pipefail

FLUX_VERSION=v2.9.5
SOURCE_CONTROLLER_VERSION=v1.9.5
KUSTOMIZE_CONTROLLER_VERSION=v1.9.5
HELM_CONTROLLER_VERSION=v1.6.4

root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="$root/bin"
module_dir="$root/tools/flux"
# shellcheck source=hack/lib/go-tools.sh
. "$root/hack/lib/go-tools.sh"

BINARIES=(source-controller kustomize-controller helm-controller)
log() { printf '\033[1m[flux-tools]\033[0m %s\n' "$*"; }

if [ "${1:-}" = "--check" ]; then
  for name in "${BINARIES[@]}"; do [ -x "$bin_dir/$name" ] || exit 1; done
  [ -f "$bin_dir/flux-crds/kustomize.toolkit.fluxcd.io_kustomizations.yaml" ] || exit 1
  exit 0
fi

for pin in "source-controller $SOURCE_CONTROLLER_VERSION" "kustomize-controller $KUSTOMIZE_CONTROLLER_VERSION" \
  "helm-controller $HELM_CONTROLLER_VERSION"; do
  grep -Eq "^\s+github.com/fluxcd/$pin( //.*)?$" "$module_dir/go.mod" ||
    { echo "error: tools/flux/go.mod does not require github.com/fluxcd/$pin" >&2; exit 1; }
done

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/vigil/flux-tools"
modules_hash=$(cat "$module_dir/go.mod" "$module_dir/go.sum" | sha256sum | cut -c1-12)
cache_dir="$cache_root/flux-$FLUX_VERSION-$go_version-$modules_hash"

build_flux() {
  mkdir -p "$cache_dir.tmp/crds"
  (cd "$module_dir" && go build -ldflags "-s -w" -o "$cache_dir.tmp/" \
    github.com/fluxcd/source-controller github.com/fluxcd/kustomize-controller github.com/fluxcd/helm-controller)
  local module
  for module in source-controller kustomize-controller helm-controller; do
    cp "$(cd "$module_dir" && go list -m -f '{{.Dir}}' "github.com/fluxcd/$module")"/config/crd/bases/*.yaml \
      "$cache_dir.tmp/crds/"
  done
  chmod -R u+w "$cache_dir.tmp/crds"
  rm -rf "$cache_dir" && mv "$cache_dir.tmp" "$cache_dir"
}

mkdir -p "$bin_dir" "$cache_root"
if [ ! -x "$cache_dir/helm-controller" ] || [ ! -d "$cache_dir/crds" ]; then
  build_step "Flux $FLUX_VERSION controllers" "$cache_root/build-flux-$FLUX_VERSION.log" build_flux
fi
for name in "${BINARIES[@]}"; do
  source_path=$(override_for "$name")
  if [ -n "$source_path" ]; then log "using $name from $source_path"; else source_path="$cache_dir/$name"; fi
  ln -sfn "$source_path" "$bin_dir/$name"
done
ln -sfn "$cache_dir/crds" "$bin_dir/flux-crds"
log "ready: Flux $FLUX_VERSION: source-controller $SOURCE_CONTROLLER_VERSION, kustomize-controller" \
  "$KUSTOMIZE_CONTROLLER_VERSION, helm-controller $HELM_CONTROLLER_VERSION, $(ls "$cache_dir/crds" | wc -l) CRDs"
log "binaries: $bin_dir -> $cache_dir"
