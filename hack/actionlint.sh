#!/usr/bin/env bash
# Builds (or reuses) actionlint, which `make lint` runs on .github/workflows/ (the forge's CI), from
# its Go module github.com/rhysd/actionlint at a pinned version. The binary lives in a versioned
# cache outside the clone (${XDG_CACHE_HOME:-~/.cache}/vigil/actionlint-<version>); bin/actionlint
# links to it. VIGIL_ACTIONLINT=/path/to/actionlint uses a binary you bring instead.
#
# Usage: hack/actionlint.sh [--check]   (--check: exit 0 only when bin/actionlint is in place)
set -euo pipefail

ACTIONLINT_VERSION=1.7.12

root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="$root/bin"
log() { printf '\033[1m[actionlint]\033[0m %s\n' "$*"; }

if [ "${1:-}" = "--check" ]; then
  [ -x "$bin_dir/actionlint" ] && "$bin_dir/actionlint" -version 2>/dev/null | head -n 1 | grep -qx "$ACTIONLINT_VERSION"
  exit
fi

# shellcheck source=hack/lib/go-tools.sh
. "$root/hack/lib/go-tools.sh"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/vigil/actionlint-$ACTIONLINT_VERSION"

build_actionlint() {
  GOBIN="$cache_dir.tmp" go install \
    -ldflags "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" \
    "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
  rm -rf "$cache_dir" && mv "$cache_dir.tmp" "$cache_dir"
}

mkdir -p "$bin_dir" "$(dirname "$cache_dir")"
source_path=$(override_for actionlint)
if [ -n "$source_path" ]; then
  log "using actionlint from $source_path"
else
  source_path="$cache_dir/actionlint"
  if [ ! -x "$source_path" ]; then
    rm -rf "$cache_dir.tmp"
    build_step "actionlint $ACTIONLINT_VERSION" "$(dirname "$cache_dir")/build-actionlint-$ACTIONLINT_VERSION.log" \
      build_actionlint
  fi
fi
ln -sfn "$source_path" "$bin_dir/actionlint"
log "ready: actionlint $("$bin_dir/actionlint" -version | head -n 1) ($bin_dir/actionlint -> $source_path)"
