# Shared by hack/cluster-tools.sh and hack/node-tools.sh (sourced, not run): the Go toolchain
# check, per-binary overrides, a build step with a heartbeat, and the Kubernetes version stamp.
# The caller defines `log` and K8S_VERSION.

export GOTOOLCHAIN=local
export GOFLAGS="${GOFLAGS:-} -mod=mod -trimpath"
go_version=$(go env GOVERSION 2>/dev/null) || { echo "error: Go is not installed; install Go 1.26 (GOTOOLCHAIN=local)" >&2; exit 1; }
case "$go_version" in go1.26*) ;; *) echo "error: Go 1.26 is required, found $go_version" >&2; exit 1 ;; esac

# A binary the user brings: VIGIL_<NAME> (upper-cased, '-' -> '_'), else KUBEBUILDER_ASSETS/<name>.
override_for() {
  local name=$1 var
  var="VIGIL_$(echo "$name" | tr 'a-z-' 'A-Z_')"
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$name" ]; then echo "$KUBEBUILDER_ASSETS/$name"; fi
}

# build_step WHAT LOGFILE COMMAND...: runs COMMAND with a heartbeat, so a long cold build never
# looks hung; on failure shows the log's last lines and returns 1.
build_step() {
  local what=$1 logfile=$2; shift 2
  local started=$SECONDS
  log "building $what (cold builds take minutes; log: $logfile)"
  ( while sleep 30; do log "  ... still building $what ($((SECONDS - started))s)"; done ) &
  local heartbeat=$!
  if ! "$@" >"$logfile" 2>&1; then
    kill "$heartbeat" 2>/dev/null || true
    echo "error: building $what failed; last lines of $logfile:" >&2
    tail -n 30 "$logfile" >&2
    return 1
  fi
  kill "$heartbeat" 2>/dev/null || true
  log "built $what in $((SECONDS - started))s"
}

# -ldflags that stamp K8S_VERSION, as upstream's release builds do (`--version` reports it).
k8s_ldflags() {
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local flags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}
