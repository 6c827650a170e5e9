#!/usr/bin/env bash
# `make check-reproducible`: builds both images twice, each time from a fresh clone of HEAD and
# without buildah's layer cache, and compares the two builds' image IDs (the config digests,
# which cover every layer's content, the history and the labels). When they differ, it says
# which layer differs, the step that made it and which files in it differ, and why
# (hack/layer_diff.py). Costs two full builds (about 5 minutes of CPU on 2 cores).
#
# Checks HEAD: commit first (uncommitted changes are not in a clone). Both builds use the same
# base image (BASE, or the one hack/images.sh resolves): reproducibility is of what Vigil adds.
# Writes .work/reproducible.json: per image, both IDs and whether they match.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { echo "[reproducible] $*"; }
die() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "the buildah path runs as root here"
[ -z "$(git status --porcelain --untracked-files=no)" ] \
  || log "warning: the work tree has uncommitted changes; the clones build HEAD ($(git rev-parse --short HEAD)) without them"
commit=$(git rev-parse HEAD)  # once: both builds are of this commit, whatever is committed meanwhile
work=$(mktemp -d "${TMPDIR:-/tmp}/vigil-reproducible-XXXXXX")
tag=check-$$
cleanup() {
  for run in a b; do
    for name in vigil-operator vigil-model-server; do
      buildah --log-level=error rmi "localhost/vigil-reproducible-$run/$name:$tag" >/dev/null 2>&1 || true
    done
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$(date +%s)
for run in a b; do
  log "build $run: a fresh clone of ${commit:0:12}, no layer cache"
  git clone --quiet --no-hardlinks --no-checkout "$root" "$work/$run"
  git -C "$work/$run" checkout --quiet --detach "$commit"
  # Same commit time, revision and version in both clones: the labels are the same by design.
  (cd "$work/$run" && OPERATOR_IMAGE="localhost/vigil-reproducible-$run/vigil-operator:$tag" \
    SERVER_IMAGE="localhost/vigil-reproducible-$run/vigil-model-server:$tag" \
    IMAGES_NO_CACHE=1 IMAGES_ARCHIVES=0 IMAGES_OUT="$work/$run-out" hack/images.sh) \
    | sed -u "s/^/[reproducible] build $run: /"
done

py=$root/.venv/bin/python
[ -x "$py" ] || py=python3
status=0
results=()
for name in vigil-operator vigil-model-server; do
  a=localhost/vigil-reproducible-a/$name:$tag
  b=localhost/vigil-reproducible-b/$name:$tag
  if "$py" hack/layer_diff.py "$a" "$b" >"$work/$name.diff"; then same=true; else same=false; status=1; fi
  sed "s/^/[reproducible] $name: /" "$work/$name.diff"
  id_a=$(buildah --log-level=error inspect --type image -f '{{.FromImageID}}' "$a")
  id_b=$(buildah --log-level=error inspect --type image -f '{{.FromImageID}}' "$b")
  results+=("\"$name\": {\"first\": \"sha256:$id_a\", \"second\": \"sha256:$id_b\", \"identical\": $same}")
done
mkdir -p .work
(IFS=,; echo "{\"revision\": \"$commit\", \"seconds\": $(($(date +%s) - started)), ${results[*]}}") \
  | "$py" -m json.tool >.work/reproducible.json
if [ "$status" -eq 0 ]; then
  log "reproducible: both builds gave the same image IDs ($(($(date +%s) - started)) s; .work/reproducible.json)"
else
  log "NOT reproducible: see the differing layers and files above (.work/reproducible.json)"
fi
exit "$status"
