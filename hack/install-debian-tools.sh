#!/usr/bin/env bash
# Installs Debian packages the tests, benchmarks and `make images` use (prometheus, wrk; buildah,
# runc, debootstrap) when missing. bookworm's versions: buildah 1.28, runc 1.1, debootstrap 1.0.128.
# Usage: hack/install-debian-tools.sh COMMAND[=PACKAGE] ...
set -euo pipefail
missing=()
for spec in "$@"; do
  command=${spec%%=*}; package=${spec#*=}
  command -v "$command" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "[debian] installing ${missing[*]} with apt-get"
if [ "$(id -u)" -ne 0 ]; then
  sudo=sudo; command -v sudo >/dev/null || { echo "error: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
else
  sudo=
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null || { echo "error: apt-get update failed" >&2; exit 1; }
$sudo apt-get install -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || { echo "error: apt-get install ${missing[*]} failed" >&2; exit 1; }
echo "[debian] installed ${missing[*]}"
