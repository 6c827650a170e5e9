#!/usr/bin/env bash
# `make release VERSION=x.y.z [REGISTRY=host[:port]/path]`: cuts a release (docs/release.md).
#
#  1. checks that CHANGELOG.md has an entry for VERSION (before touching anything);
#  2. writes VERSION into every place it appears (hack/versions.py), regenerates manifests/, and
#     builds the krew archive of kubectl vigil with its manifest (OUT/vigil.yaml);
#  3. builds both images with hack/images.sh (reproducible, OCI labels: version, commit, time),
#     named REGISTRY/vigil-operator:VERSION and REGISTRY/vigil-model-server:VERSION;
#  4. writes an SBOM of each image (hack/sbom.sh);
#  5. packages the chart, its images' registry set to REGISTRY, so the released chart runs the
#     released images;
#  6. with REGISTRY: pushes both images and the chart (oci://REGISTRY/vigil), signs the images
#     when cosign is there, and prints every digest. Without: builds and packages only.
#
# A push must come from a commit: with REGISTRY the work tree must be clean once the version
# is written (commit "Release x.y.z", tag vx.y.z, run again). localhost and 127.0.0.0/8
# registries are spoken to over plain http (REGISTRY_PLAIN_HTTP=1 forces it for others).
# Everything lands in .work/release/VERSION/ (RELEASE_OUT): chart, SBOMs, release.json.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${VERSION:-}
REGISTRY=${REGISTRY:-}
REGISTRY=${REGISTRY%/}
DEFAULT_REGISTRY=ghcr.io/vigil-dev
PY=${PY:-.venv/bin/python}
HELM=${HELM:-bin/helm}
STEPS=6

log() { echo "[release] $*"; }
step() { log "step $1/$STEPS: $2"; }
die() { echo "error: $*" >&2; exit 1; }

[ -n "$VERSION" ] || die "VERSION is required: make release VERSION=x.y.z [REGISTRY=host:port/path]"
[ -x "$PY" ] || PY=python3
[ -x "$HELM" ] || die "$HELM missing: run \`make cluster-tools\`"
OUT=${RELEASE_OUT:-.work/release/$VERSION}
registry=${REGISTRY:-$DEFAULT_REGISTRY}
plain_http=${REGISTRY_PLAIN_HTTP:-0}
case ${registry%%/*} in localhost | localhost:* | 127.* | \[::1\]*) plain_http=1 ;; esac
started=$(date +%s)

step 1 "CHANGELOG.md and the version"
"$PY" hack/versions.py changelog "$VERSION"
"$PY" hack/versions.py set "$VERSION"
"$PY" manifests/generate.py "$HELM" >/dev/null
# The kubectl vigil plugin's krew archive and its manifest with the archive's sha256: release artifacts
# (OUT/vigil.yaml goes to the krew index; the repository's copy keeps its version in step, not the sha256,
# which changes with every commit of the operator).
mkdir -p "$OUT"
cp plugins/vigil.yaml "$OUT/vigil.yaml"
"$PY" hack/kubectl-vigil-archive.py --version "$VERSION" --out "$OUT" --manifest "$OUT/vigil.yaml" | sed 's/^/[release] /'
"$PY" hack/versions.py check | sed 's/^/[release] /'
if [ -n "$REGISTRY" ] && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  git status --short --untracked-files=no >&2
  die "the work tree has changes (above): a pushed release must be a commit. Commit them
  (git commit -am 'Release $VERSION' && git tag v$VERSION) and run the release again"
fi
revision=$(git rev-parse HEAD)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
mkdir -p "$OUT"

step 2 "images (hack/images.sh)"
operator_image=$registry/vigil-operator:$VERSION
server_image=$registry/vigil-model-server:$VERSION
OPERATOR_IMAGE=$operator_image SERVER_IMAGE=$server_image VERSION=$VERSION REVISION=$revision \
  IMAGES_OUT="$OUT/images" IMAGES_ARCHIVES=0 hack/images.sh

step 3 "SBOMs (hack/sbom.sh)"
for image in "$operator_image" "$server_image"; do
  name=${image##*/}; name=${name%%:*}
  hack/sbom.sh "$image" "$OUT/sbom/$name.cdx.json"
done

step 4 "chart"
chart_src=$OUT/chart-src/vigil
rm -rf "$OUT/chart-src" && mkdir -p "$OUT/chart-src"
cp -r charts/vigil "$chart_src"
# The released chart runs the released images: its image.registry is where they were pushed.
sed -i "s|^  registry: $DEFAULT_REGISTRY\$|  registry: $registry|" "$chart_src/values.yaml"
grep -q "^  registry: $registry\$" "$chart_src/values.yaml" || die "could not set image.registry in the chart"
helm_home=$OUT/helm
helm_env=(env HELM_CACHE_HOME="$helm_home/cache" HELM_CONFIG_HOME="$helm_home/config" HELM_DATA_HOME="$helm_home/data")
"${helm_env[@]}" "$HELM" lint --strict "$chart_src" >/dev/null || die "helm lint --strict failed on the chart"
chart=$("${helm_env[@]}" "$HELM" package "$chart_src" -d "$OUT" | sed -n 's/^Successfully packaged chart and saved it to: //p')
[ -f "$chart" ] || die "helm package wrote no chart"
log "chart: $chart (image.registry $registry)"

buildah_id() { buildah --log-level=error inspect --type image -f '{{.FromImageID}}' "$1"; }
summary() {
  "$PY" - "$OUT/release.json" "$@" <<'EOF'
import json, sys
path, *pairs = sys.argv[1:]
data = dict(zip(pairs[::2], pairs[1::2]))
release = {
    "version": data["version"], "revision": data["revision"], "registry": data["registry"],
    "pushed": data["pushed"] == "1",
    "images": {
        name: {"ref": data[f"{name}.ref"], "id": data[f"{name}.id"], "digest": data.get(f"{name}.digest", "")}
        for name in ("vigil-operator", "vigil-model-server")
    },
    "chart": {"file": data["chart"], "ref": data.get("chart.ref", ""), "digest": data.get("chart.digest", "")},
    "signed": data.get("signed", "") == "1",
}
open(path, "w").write(json.dumps(release, indent=2) + "\n")
EOF
}
facts=(version "$VERSION" revision "$revision" registry "$registry" chart "$chart"
  vigil-operator.ref "$operator_image" vigil-operator.id "$(buildah_id "$operator_image")"
  vigil-model-server.ref "$server_image" vigil-model-server.id "$(buildah_id "$server_image")")

if [ -z "$REGISTRY" ]; then
  log "step 5/$STEPS and 6/$STEPS skipped: no REGISTRY given, so nothing is pushed (built and packaged only)"
  summary "${facts[@]}" pushed 0
  log "done in $(($(date +%s) - started)) s: images $operator_image, $server_image; chart $chart; $OUT/release.json"
  exit 0
fi

step 5 "push the images to $registry$([ "$plain_http" = 1 ] && echo ' (plain http)')"
tls=(--tls-verify=true)
[ "$plain_http" = 1 ] && tls=(--tls-verify=false)
for image in "$operator_image" "$server_image"; do
  name=${image##*/}; name=${name%%:*}
  timeout 900 buildah --log-level=error push --quiet "${tls[@]}" --digestfile "$OUT/$name.digest" \
    "$image" "docker://$image" || die "pushing $image failed"
  digest=$(cat "$OUT/$name.digest")
  log "pushed $image@$digest"
  facts+=("$name.digest" "$digest")
done
signed=0
if [ -x bin/cosign ] && [ -n "${COSIGN_KEY:-}" ]; then
  # By digest, with the key only: no transparency log, no Sigstore services (none is reachable
  # from a release machine behind a registry mirror, nor needed to verify with the public key).
  cosign_registry=()
  [ "$plain_http" = 1 ] && cosign_registry=(--allow-http-registry --allow-insecure-registry)
  for image in "$operator_image" "$server_image"; do
    name=${image##*/}; name=${name%%:*}
    ref=${image%:*}@$(cat "$OUT/$name.digest")
    COSIGN_PASSWORD=${COSIGN_PASSWORD:-} bin/cosign sign --yes --key "$COSIGN_KEY" --tlog-upload=false \
      --use-signing-config=false "${cosign_registry[@]}" "$ref" >"$OUT/$name.cosign.log" 2>&1 \
      || { cat "$OUT/$name.cosign.log" >&2; die "cosign could not sign $ref"; }
    log "signed $ref with $COSIGN_KEY"
  done
  signed=1
else
  log "images not signed: $([ -x bin/cosign ] || echo 'no bin/cosign; ')COSIGN_KEY=<cosign.key> signs them (docs/release.md)"
fi

step 6 "push the chart to oci://$registry"
helm_push=("${helm_env[@]}" "$HELM" push "$chart" "oci://$registry")
[ "$plain_http" = 1 ] && helm_push+=(--plain-http)
pushed=$("${helm_push[@]}" 2>&1) || die "helm push failed: $pushed"
chart_ref=$(sed -n 's/^Pushed: //p' <<<"$pushed")
chart_digest=$(sed -n 's/^Digest: //p' <<<"$pushed")
log "pushed chart $chart_ref@$chart_digest"
summary "${facts[@]}" pushed 1 chart.ref "oci://$chart_ref" chart.digest "$chart_digest" signed "$signed"
log "done in $(($(date +%s) - started)) s; install with:"
log "  helm install vigil oci://$registry/vigil --version $VERSION --namespace vigil-system --create-namespace$([ "$plain_http" = 1 ] && echo ' --plain-http')"
log "digests: $OUT/release.json"
