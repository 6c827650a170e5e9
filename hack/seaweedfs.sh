#!/usr/bin/env bash
# Builds (or reuses) SeaweedFS's `weed` for the storage tests (`make seaweedfs`): its S3 gateway is
# the real S3-compatible server that tests/harness/s3server.py starts on 127.0.0.1 and fills.
# Built from the Go module github.com/seaweedfs/seaweedfs at the commit pinned in the wrapper module
# tools/seaweedfs (the module has no release tags the module proxy lists; MinIO's server module is
# not served at all), so a fresh clone gets the same server.
#
# The binary lives in a versioned cache outside the clone
# (${XDG_CACHE_HOME:-~/.cache}/vigil/seaweedfs/<version>); bin/weed is a symlink to it.
# VIGIL_WEED=/path/to/weed uses a binary you bring instead.
#
# Usage: hack/seaweedfs.sh [--check]
set -euo pipefail

SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6

root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="$root/bin"
module_dir="$root/tools/seaweedfs"
# shellcheck source=hack/lib/go-tools.sh
. "$root/hack/lib/go-tools.sh"

log() { printf '\033[1m[seaweedfs]\033[0m %s\n' "$*"; }

if [ "${1:-}" = "--check" ]; then
  [ -x "$bin_dir/weed" ] || exit 1
  exit 0
fi

grep -Eq "^(require)?\s+github.com/seaweedfs/seaweedfs $SEAWEEDFS_VERSION( //.*)?$" "$module_dir/go.mod" ||
  { echo "error: tools/seaweedfs/go.mod does not require github.com/seaweedfs/seaweedfs $SEAWEEDFS_VERSION" >&2; exit 1; }

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/vigil/seaweedfs"
modules_hash=$(cat "$module_dir/go.mod" "$module_dir/go.sum" | sha256sum | cut -c1-12)
cache_dir="$cache_root/seaweedfs-${SEAWEEDFS_VERSION##*-}-$go_version-$modules_hash"

build_weed() {
  mkdir -p "$cache_dir.tmp"
  (cd "$module_dir" && go build -ldflags "-s -w" -o "$cache_dir.tmp/weed" github.com/seaweedfs/seaweedfs/weed)
  rm -rf "$cache_dir" && mv "$cache_dir.tmp" "$cache_dir"
}

mkdir -p "$bin_dir" "$cache_root"
source_path=$(override_for weed)
if [ -n "$source_path" ]; then
  log "using weed from $source_path"
else
  if [ ! -x "$cache_dir/weed" ]; then
    build_step "SeaweedFS ${SEAWEEDFS_VERSION##*-}" "$cache_root/build-${SEAWEEDFS_VERSION##*-}.log" build_weed
  fi
  source_path="$cache_dir/weed"
fi
ln -sfn "$source_path" "$bin_dir/weed"
log "ready: $("$bin_dir/weed" version 2>/dev/null | head -n 1 || echo weed) ($bin_dir/weed -> $source_path)"
