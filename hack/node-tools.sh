#!/usr/bin/env bash
# Builds (or reuses) the binaries of the local cluster's real node (`make node-tools`):
#   kubelet, kube-proxy  v1.36.3, from the k8s.io/kubernetes module (tools/k8s-node: the
#                        same wrapper pattern and replace list as tools/k8s; a separate module
#                        so that the control plane's cache key, a hash of tools/k8s, is untouched)
#   containerd, ctr, containerd-shim-runc-v2   2.x, from github.com/containerd/containerd/v2
#   prometheus3          Prometheus 3.x from github.com/prometheus/prometheus, with Kubernetes
#                        service discovery (Debian's 2.42 package leaves kubernetes_sd_configs
#                        out); only that discovery and the static/file ones are compiled in
#   prometheus-operator, prometheus-config-reloader   v0.85.0 (tools/prometheus-operator: a
#                        wrapper module, since the release's go.mod replaces its API modules),
#                        and its CRDs from the same module (prometheus-operator-crds/)
#   coredns              v1.15.0 (tools/coredns: only the plugins a cluster DNS needs), the
#                        real node's cluster DNS
# and installs from Debian: runc, the CNI plugins (containernetworking-plugins, /usr/lib/cni)
# and iptables (kube-proxy's iptables mode and the bridge plugin's masquerading).
#
# Built binaries live in a versioned cache outside the clone
# (${XDG_CACHE_HOME:-~/.cache}/vigil/node-tools/<versions>); bin/ holds symlinks to them.
# Overrides per binary, as in cluster-tools.sh: VIGIL_KUBELET, VIGIL_KUBE_PROXY,
# VIGIL_CONTAINERD, VIGIL_CTR, VIGIL_CONTAINERD_SHIM_RUNC_V2.
#
# Usage: hack/node-tools.sh [--check]
set -euo pipefail

K8S_VERSION=v1.36.3
CONTAINERD_VERSION=v2.4.2
PROMETHEUS_MODULE_VERSION=v0.316.0 # Prometheus 3.16.0 (its Go module is tagged v0.3MM.P)
PROMETHEUS_VERSION=3.16.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0 # pinned in tools/prometheus-operator/go.mod
COREDNS_VERSION=v1.15.0             # pinned in tools/coredns/go.mod

root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="$root/bin"
# shellcheck source=hack/lib/go-tools.sh
. "$root/hack/lib/go-tools.sh"

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/vigil/node-tools"
node_hash=$(cat "$root"/tools/k8s-node/go.mod "$root"/tools/k8s-node/go.sum | sha256sum | cut -c1-12)
k8s_cache_dir="$cache_root/kubelet-$K8S_VERSION-$go_version-$node_hash"
containerd_cache_dir="$cache_root/containerd-$CONTAINERD_VERSION-$go_version"
prometheus_cache_dir="$cache_root/prometheus-$PROMETHEUS_VERSION-$go_version"
module_hash() { cat "$root/tools/$1"/* | sha256sum | cut -c1-12; }
prometheus_operator_cache_dir="$cache_root/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION-$go_version-$(module_hash prometheus-operator)"
coredns_cache_dir="$cache_root/coredns-$COREDNS_VERSION-$go_version-$(module_hash coredns)"
grep -q "k8s.io/kubernetes $K8S_VERSION" "$root/tools/k8s-node/go.mod" ||
  { echo "error: tools/k8s-node/go.mod does not require k8s.io/kubernetes $K8S_VERSION" >&2; exit 1; }
grep -q "github.com/prometheus-operator/prometheus-operator $PROMETHEUS_OPERATOR_VERSION" "$root/tools/prometheus-operator/go.mod" ||
  { echo "error: tools/prometheus-operator/go.mod does not require $PROMETHEUS_OPERATOR_VERSION" >&2; exit 1; }
grep -q "github.com/coredns/coredns $COREDNS_VERSION" "$root/tools/coredns/go.mod" ||
  { echo "error: tools/coredns/go.mod does not require coredns $COREDNS_VERSION" >&2; exit 1; }

K8S_BINARIES=(kubelet kube-proxy)
CONTAINERD_BINARIES=(containerd ctr containerd-shim-runc-v2)
PROMETHEUS_BINARIES=(prometheus3)
# prometheus-operator-crds is a folder: the CRDs of the same release, which the tests install.
PROMETHEUS_OPERATOR_BINARIES=(prometheus-operator prometheus-config-reloader prometheus-operator-crds)
COREDNS_BINARIES=(coredns)

log() { printf '\033[1m[node-tools]\033[0m %s\n' "$*"; }


if [ "${1:-}" = "--check" ]; then
  for name in "${K8S_BINARIES[@]}" "${CONTAINERD_BINARIES[@]}" "${PROMETHEUS_BINARIES[@]}" \
    "${PROMETHEUS_OPERATOR_BINARIES[@]}" "${COREDNS_BINARIES[@]}"; do
    [ -x "$bin_dir/$name" ] || exit 1
  done
  for command in runc iptables /usr/lib/cni/bridge; do command -v "$command" >/dev/null || exit 1; done
  exit 0
fi

# Debian first (seconds): runc, the CNI plugins and iptables.
"$root/hack/install-debian-tools.sh" runc iptables /usr/lib/cni/bridge=containernetworking-plugins

build_kubelet() {
  mkdir -p "$k8s_cache_dir.tmp"
  (cd "$root/tools/k8s-node" && go build -ldflags "$(k8s_ldflags)" -o "$k8s_cache_dir.tmp/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  rm -rf "$k8s_cache_dir" && mv "$k8s_cache_dir.tmp" "$k8s_cache_dir"
}

# Static (CGO off: no btrfs snapshotter, which needs cgo; overlayfs and native remain), with the
# version the CRI reports to the kubelet (`containerd://v2.x.y` in `kubectl get nodes -o wide`).
build_containerd() {
  local pkg=github.com/containerd/containerd/v2
  mkdir -p "$containerd_cache_dir.tmp"
  CGO_ENABLED=0 GOBIN="$containerd_cache_dir.tmp" go install \
    -tags "no_btrfs no_devmapper no_zfs" \
    -ldflags "-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Revision=$CONTAINERD_VERSION -X $pkg/version.Package=$pkg" \
    "$pkg/cmd/containerd@$CONTAINERD_VERSION" "$pkg/cmd/ctr@$CONTAINERD_VERSION" \
    "$pkg/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
  rm -rf "$containerd_cache_dir" && mv "$containerd_cache_dir.tmp" "$containerd_cache_dir"
}

# Static; the UI's assets are not embedded (the API is what the tests and the operator use).
build_prometheus() {
  mkdir -p "$prometheus_cache_dir.tmp"
  CGO_ENABLED=0 GOBIN="$prometheus_cache_dir.tmp" go install -tags "remove_all_sd enable_kubernetes_sd netgo" \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION"
  mv "$prometheus_cache_dir.tmp/prometheus" "$prometheus_cache_dir.tmp/prometheus3"
  rm -rf "$prometheus_cache_dir" && mv "$prometheus_cache_dir.tmp" "$prometheus_cache_dir"
}

# Static, as upstream's images ship them; `--version` reports the release.
build_prometheus_operator() {
  local module=github.com/prometheus-operator/prometheus-operator out="$prometheus_operator_cache_dir.tmp"
  mkdir -p "$out/prometheus-operator-crds"
  (cd "$root/tools/prometheus-operator" &&
    CGO_ENABLED=0 go build -ldflags "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_OPERATOR_VERSION#v}" \
      -o "$out/" "$module/cmd/operator" "$module/cmd/prometheus-config-reloader" &&
    cp "$(go list -m -f '{{.Dir}}' "$module")"/example/prometheus-operator-crd/*.yaml "$out/prometheus-operator-crds/")
  chmod -R u+w "$out/prometheus-operator-crds" # the module cache is read-only
  mv "$out/operator" "$out/prometheus-operator"
  rm -rf "$prometheus_operator_cache_dir" && mv "$out" "$prometheus_operator_cache_dir"
}

build_coredns() {
  mkdir -p "$coredns_cache_dir.tmp"
  (cd "$root/tools/coredns" && CGO_ENABLED=0 go build \
    -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" -o "$coredns_cache_dir.tmp/coredns" .)
  rm -rf "$coredns_cache_dir" && mv "$coredns_cache_dir.tmp" "$coredns_cache_dir"
}

mkdir -p "$bin_dir" "$cache_root"
started=$SECONDS
pids=()
need() { # NAME...: true when one of them has neither an override nor a cached binary
  local dir=$1 name; shift
  for name in "$@"; do
    [ -n "$(override_for "$name")" ] || [ -x "$dir/$name" ] || return 0
  done
  return 1
}
# The two builds share nothing: run them side by side (module downloads overlap compiling).
if need "$containerd_cache_dir" "${CONTAINERD_BINARIES[@]}"; then
  build_step "containerd $CONTAINERD_VERSION" "$cache_root/build-containerd-$CONTAINERD_VERSION.log" build_containerd &
  pids+=($!)
fi
if need "$k8s_cache_dir" "${K8S_BINARIES[@]}"; then
  build_step "kubelet and kube-proxy $K8S_VERSION" "$cache_root/build-kubelet-$K8S_VERSION.log" build_kubelet &
  pids+=($!)
fi
if need "$prometheus_cache_dir" "${PROMETHEUS_BINARIES[@]}"; then
  build_step "prometheus $PROMETHEUS_VERSION" "$cache_root/build-prometheus-$PROMETHEUS_VERSION.log" build_prometheus &
  pids+=($!)
fi
if need "$prometheus_operator_cache_dir" "${PROMETHEUS_OPERATOR_BINARIES[@]}"; then
  build_step "prometheus-operator $PROMETHEUS_OPERATOR_VERSION" \
    "$cache_root/build-prometheus-operator-$PROMETHEUS_OPERATOR_VERSION.log" build_prometheus_operator &
  pids+=($!)
fi
if need "$coredns_cache_dir" "${COREDNS_BINARIES[@]}"; then
  build_step "coredns $COREDNS_VERSION" "$cache_root/build-coredns-$COREDNS_VERSION.log" build_coredns &
  pids+=($!)
fi
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" -eq 0 ] || exit 1

link() { # DIR NAME...
  local dir=$1 name source_path; shift
  for name in "$@"; do
    source_path=$(override_for "$name")
    if [ -n "$source_path" ]; then log "using $name from $source_path"; else source_path="$dir/$name"; fi
    ln -sfn "$source_path" "$bin_dir/$name"
  done
}
link "$k8s_cache_dir" "${K8S_BINARIES[@]}"
link "$containerd_cache_dir" "${CONTAINERD_BINARIES[@]}"
link "$prometheus_cache_dir" "${PROMETHEUS_BINARIES[@]}"
link "$prometheus_operator_cache_dir" "${PROMETHEUS_OPERATOR_BINARIES[@]}"
link "$coredns_cache_dir" "${COREDNS_BINARIES[@]}"

[ ${#pids[@]} -eq 0 ] || log "node binaries built in $((SECONDS - started))s"
log "ready: kubelet $("$bin_dir/kubelet" --version | awk '{print $2}'), kube-proxy $("$bin_dir/kube-proxy" --version | awk '{print $2}')," \
  "containerd $("$bin_dir/containerd" --version | awk '{print $3}'), prometheus $("$bin_dir/prometheus3" --version | awk 'NR==1 {print $3}')," \
  "prometheus-operator $("$bin_dir/prometheus-operator" --version 2>&1 | awk 'NR==1 {print $3}'), coredns $("$bin_dir/coredns" -version | sed -n 's/^CoreDNS-//p'), $(runc --version | head -n1), CNI plugins $(dpkg-query -W -f '${Version}' containernetworking-plugins)"
log "binaries: $bin_dir -> $k8s_cache_dir, $containerd_cache_dir, $prometheus_cache_dir," \
  "$prometheus_operator_cache_dir, $coredns_cache_dir"
