#!/usr/bin/env bash
# Builds (or reuses) a Debian bookworm root filesystem with Python 3.11 as a tarball: the base
# `make images` uses when python:3.11-slim-bookworm cannot be pulled. Prints the tarball's path
# on stdout; progress and errors go to stderr.
#
# Made with `debootstrap --variant=minbase`, then upgraded from bookworm-updates and
# bookworm-security, like the python:*-bookworm images. Cached in ~/.cache/vigil/images,
# keyed by suite, variant and package list; delete the tarball to rebuild it.
# Needs root (debootstrap) and the Debian mirror (DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR).
set -euo pipefail

SUITE=bookworm
VARIANT=minbase
# python3 is 3.11 in bookworm; python3-venv for `python3 -m venv` (the Dockerfiles' build stage);
# ca-certificates, netbase and tzdata as in the python:*-slim images.
PACKAGES=(python3 python3-venv ca-certificates netbase tzdata)
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CACHE=${VIGIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil}/images

log() { echo "[images] $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

# "updates slim": upgraded from bookworm-updates and -security, without docs (slim_down).
key=$(printf '%s\n' "$SUITE" "$VARIANT" "${PACKAGES[@]}" updates slim | sha256sum | cut -c1-12)
tarball=$CACHE/debian-$SUITE-$VARIANT-$key.tar
if [ -f "$tarball" ]; then
  log "Debian base: reusing $tarball"
  echo "$tarball"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "building the Debian base needs root (debootstrap); run as root, or pass BASE=<an image you have>"
command -v debootstrap >/dev/null || "$(dirname "$0")/install-debian-tools.sh" debootstrap >&2
curl -fsS -o /dev/null --max-time 15 "$MIRROR/dists/$SUITE/Release" 2>/dev/null \
  || die "cannot reach the Debian mirror $MIRROR; set DEBIAN_MIRROR=<a reachable mirror>, or pass BASE=<an image you have>"

mkdir -p "$CACHE"
work=$(mktemp -d "$CACHE/.debian-$SUITE-XXXXXX")
rootfs=$work/rootfs
debootstrap_pid=
cleanup() {
  # Interrupted: stop debootstrap and everything it started (its own process group) first.
  if [ -n "$debootstrap_pid" ] && kill -0 "$debootstrap_pid" 2>/dev/null; then
    kill -TERM -- "-$debootstrap_pid" 2>/dev/null || true
    wait "$debootstrap_pid" 2>/dev/null || true
  fi
  # debootstrap mounts /proc and /sys inside the target; a failed or interrupted run can leave
  # them (deepest first).
  { findmnt -rn -o TARGET | grep -F "$rootfs" || true; } | sort -r | while read -r mount; do umount -l "$mount" || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# Like debian:bookworm-slim (which python:3.11-slim-bookworm builds on): no documentation,
# manual pages or translations, now or from later installs (dpkg path-exclude); copyright
# files stay. No package lists, caches or logs either.
slim_down() {
  local target=$1
  # Only ever inside this run's work directory: never the host's /usr or /var.
  [[ -n $target && $target == "$work"/* && -d $target/var/lib/dpkg ]] || die "refusing to slim down '$target'"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/lintian/*' \
    'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
    >"$target/etc/dpkg/dpkg.cfg.d/docker-slim"
  find "$target/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$target/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$target/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  find "$target/usr/share/man" "$target/usr/share/info" "$target/usr/share/lintian" -mindepth 1 -delete 2>/dev/null || true
  chroot "$target" apt-get clean
  find "$target/var/lib/apt/lists" "$target/var/log/apt" "$target/tmp" -mindepth 1 -delete
  rm -f "$target"/var/cache/apt/*.bin "$target"/var/log/*.log "$target"/var/cache/debconf/*-old
}

log "Debian base: debootstrap --variant=$VARIANT $SUITE with ${PACKAGES[*]} (about 1 minute; log: $work/debootstrap.log)"
# Progress: debootstrap's phase lines, and a count every 40 packages instead of one line each.
progress() {
  awk '
    /^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) [a-z0-9]/ && !/ (required|the base) / {
      if (++count[$2] % 40 == 1) printf "[images]   %s packages (%d so far)\n", $2, count[$2]
      fflush(); next
    }
    /^[IEW]: / { print "[images]   " $0; fflush() }'
}
# In the background, in its own process group, so that Ctrl-C reaches the trap at once and the
# trap can stop debootstrap with its dpkg and chroot children.
: >"$work/debootstrap.log"
setsid debootstrap --variant="$VARIANT" --include="$(IFS=,; echo "${PACKAGES[*]}")" "$SUITE" "$rootfs" "$MIRROR" \
  >"$work/debootstrap.log" 2>&1 &
debootstrap_pid=$!
tail -n +1 -f --pid "$debootstrap_pid" "$work/debootstrap.log" | progress >&2 &
status=0
wait "$debootstrap_pid" || status=$?
debootstrap_pid=
wait
if [ "$status" -ne 0 ]; then
  tail -n 20 "$work/debootstrap.log" >&2
  die "debootstrap failed (log above); check the mirror $MIRROR"
fi
grep -q '^I: Base system installed successfully' "$work/debootstrap.log" || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

log "Debian base: upgrading from $SUITE-updates and $SUITE-security"
cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
export DEBIAN_FRONTEND=noninteractive
chroot "$rootfs" apt-get update -qq >"$work/upgrade.log" 2>&1 \
  && chroot "$rootfs" apt-get upgrade -y -qq --no-install-recommends >>"$work/upgrade.log" 2>&1 \
  || { tail -n 20 "$work/upgrade.log" >&2; die "apt-get upgrade inside the Debian base failed (log above)"; }
slim_down "$rootfs"
python=$(chroot "$rootfs" python3 --version)

log "Debian base: packing $tarball ($python)"
tar --numeric-owner --xattrs -C "$rootfs" -cf "$work/rootfs.tar" .
mv "$work/rootfs.tar" "$tarball"
echo "$tarball"
