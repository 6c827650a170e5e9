#!/usr/bin/env bash
# `make images`: builds the operator and model-server images from operator/Dockerfile and
# model-server/Dockerfile, and writes each as a docker-archive under .work/images/ (for
# `kind load image-archive` and `ctr -n k8s.io images import`).
#
# With Docker when `docker info` works; otherwise daemonless with buildah (installed from Debian
# when missing). The Dockerfiles take the base as BASE (default python:3.11-slim-bookworm); when
# that cannot be pulled, a Debian bookworm base made by hack/debian-base.sh is imported and
# passed instead. An image is rebuilt only when its inputs change (Dockerfile, sources,
# constraints.txt, base): their hash is kept in .work/images/<name>.stamp.
#
# Reproducible on the buildah path (docs/release.md, `make check-reproducible`): every file and
# history entry is dated IMAGE_EPOCH (0), whenever and at whichever commit the build runs, so a
# cached layer is byte for byte what a clean build makes; the images' OCI labels carry the
# version, the commit (REVISION) and its time (SOURCE_DATE_EPOCH, default: the commit's).
#
# Environment: OPERATOR_IMAGE, SERVER_IMAGE (names; default ghcr.io/vigil-dev/...:<the chart's
# appVersion>), BASE (an image to build on), IMAGE_BUILDER=docker|buildah (default: docker when
# its daemon answers), DEBIAN_MIRROR, IMAGES_OUT (default .work/images), IMAGES_NO_CACHE=1 (build
# every step again), IMAGES_ARCHIVES=0 (no docker-archives: `make release` pushes from buildah's
# storage), VERSION, REVISION, SOURCE_DATE_EPOCH (the labels).
set -euo pipefail
cd "$(dirname "$0")/.."

app_version=$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' charts/vigil/Chart.yaml)
OPERATOR_IMAGE=${OPERATOR_IMAGE:-ghcr.io/vigil-dev/vigil-operator:$app_version}
SERVER_IMAGE=${SERVER_IMAGE:-ghcr.io/vigil-dev/vigil-model-server:$app_version}
UPSTREAM_BASE=docker.io/library/python:3.11-slim-bookworm
OUT=${IMAGES_OUT:-.work/images}
IMAGE_EPOCH=0
VERSION=${VERSION:-$app_version}
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
[[ $VERSION =~ ^[0-9A-Za-z.+-]+$ && $REVISION =~ ^[0-9a-z]+$ ]] || { echo "error: VERSION or REVISION has characters a label cannot take" >&2; exit 1; }
LABEL_ARGS=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" --build-arg "CREATED=$CREATED")
ARCHIVES=${IMAGES_ARCHIVES:-1}
CACHE_ARGS=(--layers)
# Still --layers: one layer per step either way, so a cached and a clean build are the same image.
[ "${IMAGES_NO_CACHE:-0}" = 1 ] && CACHE_ARGS=(--layers --no-cache)
# Hard rlimits cannot be raised on these machines (no CAP_SYS_RESOURCE); the runtime's default
# nofile (1048576) can exceed them.
ULIMIT=nofile=16384:16384

log() { echo "[images] $*"; }
die() { echo "error: $*" >&2; exit 1; }
seconds_since() { echo $(($(date +%s) - $1)); }

if [ -z "${IMAGE_BUILDER:-}" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then IMAGE_BUILDER=docker; else IMAGE_BUILDER=buildah; fi
fi
case $IMAGE_BUILDER in
  docker) log "builder: docker" ;;
  buildah) log "builder: buildah (no Docker daemon answers \`docker info\`)" ;;
  *) die "IMAGE_BUILDER must be docker or buildah, not '$IMAGE_BUILDER'" ;;
esac

if [ "$IMAGE_BUILDER" = buildah ]; then
  [ "$(id -u)" -eq 0 ] || die "the buildah path runs as root here (rootless needs subuid maps); run as root or with sudo, or use Docker"
  hack/install-debian-tools.sh buildah runc
  # crun refuses hybrid cgroups; runc works on cgroups v1 and v2.
  BUILDAH=(buildah --log-level=error)
  RUNTIME=(--runtime "$(command -v runc)")
  # Behind a TLS-inspecting proxy the host trusts its CA through PIP_CERT; pip in the build
  # stage needs the same bundle (mounted for the RUN steps only, never committed).
  CA_ARGS=()
  if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
    CA_ARGS=(--volume "$(realpath "$PIP_CERT"):/run/vigil-build-ca.crt:ro" --build-arg PIP_CERT=/run/vigil-build-ca.crt)
  fi
fi

image_exists() {
  if [ "$IMAGE_BUILDER" = docker ]; then docker image inspect "$1" >/dev/null 2>&1
  else "${BUILDAH[@]}" inspect --type image "$1" >/dev/null 2>&1; fi
}
image_id() {
  if [ "$IMAGE_BUILDER" = docker ]; then docker image inspect -f '{{.Id}}' "$1"
  else "${BUILDAH[@]}" inspect --type image -f '{{.FromImageID}}' "$1"; fi
}

# The base: BASE when given; else python:3.11-slim-bookworm when present or pullable; else the
# local Debian base.
resolve_base() {
  if [ -n "${BASE:-}" ]; then
    image_exists "$BASE" || pull "$BASE" || die "BASE=$BASE is neither local nor pullable"
    echo "$BASE"; return
  fi
  # Any HTTP answer (401 included) means the registry is reachable; no answer fails in seconds.
  if image_exists "$UPSTREAM_BASE" \
    || { curl -s -o /dev/null --max-time 5 https://registry-1.docker.io/v2/ && pull "$UPSTREAM_BASE"; }; then
    echo "$UPSTREAM_BASE"; return
  fi
  log "$UPSTREAM_BASE cannot be pulled (no registry reachable); using a local Debian bookworm base" >&2
  local tarball tag
  tarball=$(hack/debian-base.sh)
  tag=localhost/vigil-base:$(basename "$tarball" .tar)
  if ! image_exists "$tag"; then
    log "importing $tarball as $tag" >&2
    if [ "$IMAGE_BUILDER" = docker ]; then
      docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$tarball" "$tag" >/dev/null
    else
      local container
      container=$("${BUILDAH[@]}" from scratch)
      "${BUILDAH[@]}" add "$container" "$tarball" / >/dev/null \
        || { "${BUILDAH[@]}" rm "$container" >/dev/null; die "importing $tarball failed"; }
      "${BUILDAH[@]}" config --env LANG=C.UTF-8 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd python3 --label org.opencontainers.image.description="Debian bookworm ($(basename "$tarball"))" "$container"
      "${BUILDAH[@]}" commit --quiet --rm --format docker "$container" "$tag" >/dev/null
    fi
  fi
  echo "$tag"
}

pull() {
  log "pulling $1" >&2
  if [ "$IMAGE_BUILDER" = docker ]; then docker pull -q "$1" >/dev/null 2>&1
  else timeout 300 "${BUILDAH[@]}" pull --quiet "$1" >/dev/null 2>&1; fi
}

# Hash of everything the build reads: the Dockerfile and its ignore file, constraints.txt, the
# component's sources (no bytecode), the base image's ID, the image name, the builder and labels.
inputs_hash() {
  local component=$1 image=$2 base_id=$3
  {
    echo "$IMAGE_BUILDER $image $base_id ${LABEL_ARGS[*]} ${CACHE_ARGS[*]}"
    find "$component/Dockerfile" "$component/Dockerfile.dockerignore" constraints.txt \
      "$component/pyproject.toml" "$component"/vigil_* -type f \
      ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 \
      | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-64
}

build() {
  local component=$1 image=$2 base=$3 base_id name archive stamp hash started
  name=${image##*/}; name=${name%%:*}
  archive=$OUT/$name.tar
  stamp=$OUT/$name.stamp
  base_id=$(image_id "$base")
  hash=$(inputs_hash "$component" "$image" "$base_id")
  if { [ "$ARCHIVES" = 0 ] || [ -f "$archive" ]; } && [ "$(cat "$stamp" 2>/dev/null)" = "$hash" ] \
    && image_exists "$image"; then
    log "$image: up to date ($(image_id "$image"))"
    return
  fi
  curl -fsS -o /dev/null --max-time 15 https://pypi.org/simple/pip/ 2>/dev/null \
    || die "pypi.org does not answer; pip inside the build needs it (check the network, or HTTPS_PROXY)"
  started=$(date +%s)
  log "$image: building $component/Dockerfile on $base (log: $OUT/$name.build.log)"
  rm -f "$stamp"
  local status=0
  : >"$OUT/$name.build.log"
  # The Dockerfile with the labels' values written in: buildah's layer cache keys a LABEL step by
  # its text, not by the values of the arguments it names, and would reuse another commit's.
  local dockerfile=$OUT/$name.Dockerfile
  sed -e "s|\${VERSION}|$VERSION|g; s|\${REVISION}|$REVISION|g; s|\${CREATED}|$CREATED|g" \
    "$component/Dockerfile" >"$dockerfile"
  cp "$component/Dockerfile.dockerignore" "$dockerfile.dockerignore"  # Docker reads it beside -f
  # The build context: what the Dockerfile copies, every file dated 0. A COPY step is cached by
  # its files' content and times, and a fresh clone dates every file by the checkout.
  local context=$OUT/$name.context
  rm -rf "$context" && mkdir -p "$context"
  tar -c --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
    constraints.txt "$component/pyproject.toml" "$component"/vigil_* | tar -x -C "$context"
  find "$context" -exec touch --no-dereference --date=@0 {} +
  if [ "$IMAGE_BUILDER" = docker ]; then
    # BuildKit dates the image by SOURCE_DATE_EPOCH; the layers' file times are the build's own.
    SOURCE_DATE_EPOCH=$IMAGE_EPOCH DOCKER_BUILDKIT=1 docker build --progress=plain -f "$dockerfile" \
      --build-arg "BASE=$base" --build-arg "SOURCE_DATE_EPOCH=$IMAGE_EPOCH" "${LABEL_ARGS[@]}" -t "$image" "$context" \
      >"$OUT/$name.build.log" 2>&1 &
  else
    # --layers: unchanged steps come from the layer cache; --timestamp: every file and history
    # entry dated IMAGE_EPOCH; --format oci: Docker's image format records the build container's
    # ID and a random hostname in every image (intermediate ones too, whose IDs the history
    # names), so it is never reproducible; --network host: pip reaches PyPI without CNI; the
    # ignore file keeps the context to what the Dockerfile copies.
    "${BUILDAH[@]}" bud "${CACHE_ARGS[@]}" --timestamp "$IMAGE_EPOCH" --force-rm --pull-never --format oci \
      "${RUNTIME[@]}" --network host --ulimit "$ULIMIT" --ignorefile "$component/Dockerfile.dockerignore" \
      "${CA_ARGS[@]}" "${LABEL_ARGS[@]}" -f "$dockerfile" --build-arg "BASE=$base" -t "$image" "$context" \
      >"$OUT/$name.build.log" 2>&1 &
  fi
  local builder_pid=$!
  # Progress: the build steps and the packages pip fetches, as they happen.
  tail -n +1 -f --pid "$builder_pid" "$OUT/$name.build.log" 2>/dev/null \
    | grep --line-buffered -E '^((\[[0-9]+/[0-9]+\] )?STEP [0-9]+/[0-9]+|#[0-9]+ \[[^]]+\] [A-Z]+|(#[0-9]+ [0-9.]+ )?(Collecting |Successfully installed))' \
    | sed -u -E 's/^#[0-9]+ [0-9.]+ //; s/^(.{0,110}).*/\1/; s/^/[images]   /' || true
  wait "$builder_pid" || status=$?
  if [ "$status" -ne 0 ]; then
    tail -n 25 "$OUT/$name.build.log" >&2
    die "building $image failed (last lines above; whole log: $OUT/$name.build.log)"
  fi
  if [ "$ARCHIVES" = 0 ]; then
    echo "$hash" >"$stamp"
    log "$image: built in $(seconds_since "$started") s, image ID $(image_id "$image")"
    return
  fi
  log "$image: writing $archive"
  rm -f "$archive.tmp"
  if [ "$IMAGE_BUILDER" = docker ]; then
    docker save -o "$archive.tmp" "$image"
  else
    "${BUILDAH[@]}" push --quiet "$image" "docker-archive:$archive.tmp:$image" >/dev/null
  fi
  mv "$archive.tmp" "$archive"
  echo "$hash" >"$stamp"
  log "$image: built in $(seconds_since "$started") s, image ID $(image_id "$image"), $(du -m "$archive" | cut -f1) MB archive"
}

started=$(date +%s)
mkdir -p "$OUT"
base=$(resolve_base)
log "base: $base"
build operator "$OPERATOR_IMAGE" "$base"
build model-server "$SERVER_IMAGE" "$base"
log "done in $(seconds_since "$started") s: $OPERATOR_IMAGE, $SERVER_IMAGE$([ "$ARCHIVES" = 1 ] && echo "; archives in $OUT/")"
