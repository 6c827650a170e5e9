#!/usr/bin/env bash
# Builds (or reuses) the local control-plane binaries that the tests and the demo run:
# kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok, kwokctl, helm, and
# kstatus (tools/kstatus: what kstatus, as Flux's `wait` uses it, computes for an object).
#
# Built binaries live in a versioned cache outside the clone
# (${XDG_CACHE_HOME:-~/.cache}/vigil/cluster-tools/<versions>), so a fresh clone on the same
# machine reuses them; bin/ holds symlinks to them (the kubebuilder convention).
#
# Overrides, for users who already have binaries:
#   KUBEBUILDER_ASSETS=/dir      a folder with kube-apiserver and etcd (envtest layout)
#   VIGIL_<NAME>=/path/to/binary per binary, NAME upper-cased with '-' -> '_'
#                                (VIGIL_KUBE_APISERVER, VIGIL_ETCD, VIGIL_KWOKCTL, ...)
set -euo pipefail

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
CLI_UTILS_VERSION=v0.37.2 # kstatus; pinned in tools/kstatus/go.mod

root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="$root/bin"
# shellcheck source=hack/lib/go-tools.sh
. "$root/hack/lib/go-tools.sh"

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/vigil/cluster-tools"
# The control plane is keyed by its own wrapper modules only, so a change to the small kstatus
# tool never throws away a 12-minute control-plane build.
modules_hash=$(cat "$root"/tools/{etcd,k8s}/go.mod "$root"/tools/{etcd,k8s}/go.sum 2>/dev/null | sha256sum | cut -c1-12)
cache_dir="$cache_root/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION-$go_version-$modules_hash"
kstatus_hash=$(cat "$root"/tools/kstatus/{go.mod,go.sum,main.go} | sha256sum | cut -c1-12)
kstatus_cache_dir="$cache_root/kstatus-cli-utils-$CLI_UTILS_VERSION-$go_version-$kstatus_hash"
grep -q "sigs.k8s.io/cli-utils $CLI_UTILS_VERSION" "$root/tools/kstatus/go.mod" ||
  { echo "error: tools/kstatus/go.mod does not require cli-utils $CLI_UTILS_VERSION" >&2; exit 1; }
mkdir -p "$bin_dir" "$cache_dir" "$kstatus_cache_dir"

log() { printf '\033[1m[cluster-tools]\033[0m %s\n' "$*"; }

build_k8s() {
  (cd "$root/tools/k8s" && go build -ldflags "$(k8s_ldflags)" -o "$cache_dir/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler)
}
build_etcd() { (cd "$root/tools/etcd" && go build -ldflags "-s -w" -o "$cache_dir/etcd" .); }
build_kwok() {
  GOBIN="$cache_dir" go install -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
}
build_helm() {
  GOBIN="$cache_dir" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}
build_kstatus() { (cd "$root/tools/kstatus" && go build -ldflags "-s -w" -o "$kstatus_cache_dir/kstatus" .); }

# `--check`: exit 0 only when every binary is already in place (bin/ links resolve).
if [ "${1:-}" = "--check" ]; then
  for name in kube-apiserver kube-controller-manager kube-scheduler etcd kwok kwokctl helm kstatus; do
    [ -x "$bin_dir/$name" ] || exit 1
  done
  exit 0
fi

# kstatus is small (30 s cold) and shares nothing with the rest: build it alongside.
kstatus_path=$(override_for kstatus)
kstatus_build=
if [ -n "$kstatus_path" ]; then
  log "using kstatus from $kstatus_path"
else
  kstatus_path="$kstatus_cache_dir/kstatus"
  if [ ! -x "$kstatus_path" ]; then
    build_step kstatus "$kstatus_cache_dir/build-kstatus.log" build_kstatus &
    kstatus_build=$!
  fi
fi

# name:builder, in the order they are needed
for entry in etcd:build_etcd kwok:build_kwok kwokctl:build_kwok helm:build_helm \
  kube-apiserver:build_k8s kube-controller-manager:build_k8s kube-scheduler:build_k8s; do
  name=${entry%%:*}; builder=${entry#*:}
  source_path=$(override_for "$name")
  if [ -z "$source_path" ]; then
    source_path="$cache_dir/$name"
    [ -x "$source_path" ] || build_step "${builder#build_}" "$cache_dir/build-${builder#build_}.log" "$builder"
  else
    log "using $name from $source_path"
  fi
  ln -sfn "$source_path" "$bin_dir/$name"
done
if [ -n "$kstatus_build" ]; then wait "$kstatus_build" || exit 1; fi
ln -sfn "$kstatus_path" "$bin_dir/kstatus"

log "ready: $("$bin_dir/kube-apiserver" --version), etcd $("$bin_dir/etcd" --version | awk '/etcd Version/ {print $3}'), kwokctl $KWOK_VERSION, helm $HELM_VERSION, kstatus (cli-utils $CLI_UTILS_VERSION)"
log "binaries: $bin_dir -> $cache_dir"
