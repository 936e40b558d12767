#!/usr/bin/env bash
# Runs the QGIS tier of the tests on a newer QGIS than the host's, inside a Debian chroot.
#
#   ci/qgis_chroot.sh RELEASE [pytest arguments...]     RELEASE: trixie (QGIS 3.40) | sid (QGIS 3.44)
#
# Without pytest arguments it runs the QGIS tier (tests/qgis: provider, processing.run, the dock,
# qgis_process, the .model3 model, batch, detections on the OSCD samples of ../shared/data).
#
# The chroot is a cache outside the repo: $SAM_CD_CHROOT_CACHE/chroot-RELEASE-HASH (default
# /var/cache/sam-cd), HASH over the Debian recipe below. It is built with debootstrap when missing
# (installed on the host when absent), into a temporary folder renamed when complete. The Python
# packages go into a venv inside it (/opt/sam-cd-venv, --system-site-packages so Debian's QGIS,
# GDAL, numpy and CPU torch stay the ones used), rebuilt when ci/chroot-requirements.txt changes.
# The Debian mirror is the host's (apt sources), or $SAM_CD_DEBIAN_MIRROR. Needs root.
set -euo pipefail

RELEASE=${1:?usage: $0 trixie|sid [pytest args...]}
shift
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=$(cd "$REPO/.." && pwd)/shared
CACHE=${SAM_CD_CHROOT_CACHE:-/var/cache/sam-cd}
PIP_RECIPE=$REPO/ci/chroot-requirements.txt

# What the chroot holds from Debian. Changing this list (or the release) makes a new chroot.
DEBIAN_PACKAGES="ca-certificates qgis python3-qgis qgis-providers python3-gdal gdal-bin
  python3-venv python3-pip python3-torch python3-scipy python3-matplotlib python3-yaml python3-pil
  python3-requests python3-psutil python3-tqdm"
# Installed when the release has them (apt-cache inside the chroot decides).
OPTIONAL_PACKAGES="python3-torchvision"

log() { echo "[qgis_chroot $RELEASE] $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and bind mounts)"
case "$RELEASE" in trixie|sid) ;; *) die "unknown release '$RELEASE' (trixie or sid)";; esac

# The first Debian archive URI in the host's apt configuration (deb822 or one-line format),
# skipping the security archive.
host_mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' | grep -v -- '-security' | head -n1)
  if [ -z "$uri" ]; then
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
          | awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' \
          | grep -v -- '-security' | head -n1)
  fi
  echo "$uri"
}
MIRROR=${SAM_CD_DEBIAN_MIRROR:-$(host_mirror)}
[ -n "$MIRROR" ] || die "no Debian mirror in /etc/apt/sources.list*; set SAM_CD_DEBIAN_MIRROR"

# dpkg settings of the chroot: no fsync per file (a throw-away cache), no docs or man pages.
DPKG_CFG="force-unsafe-io
path-exclude=/usr/share/doc/*
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*"

RECIPE_HASH=$(printf '%s\n' "$RELEASE" $DEBIAN_PACKAGES $OPTIONAL_PACKAGES "$DPKG_CFG" | sha256sum | cut -c1-12)
ROOT=$CACHE/chroot-$RELEASE-$RECIPE_HASH
APT_OPTS=(-o Acquire::Check-Valid-Until=false -o Acquire::Check-Date=false -q -y)
VENV=/opt/sam-cd-venv

# Commands inside run with a clean environment: no host pip/proxy/Python variables leak in.
in_chroot() {
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive ${SAM_CD_CHROOT_ENV:-} chroot "$1" "${@:2}"
}

MOUNTED=()
unmount_all() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" 2>/dev/null || true
  done
  MOUNTED=()
}
trap unmount_all EXIT
trap 'exit 130' INT TERM

bind() {  # bind SOURCE TARGET_INSIDE_ROOT [ro]
  local target=$ROOT$2
  mkdir -p "$target"
  mount --bind "$1" "$target"
  MOUNTED+=("$target")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$target"; fi
}

# Unmounts whatever a killed run left mounted below PATH (callers hold the release's lock).
unmount_below() {
  local mnt
  for mnt in $(awk -v p="$1" 'index($2, p "/") == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$mnt" 2>/dev/null || umount -l "$mnt"
  done
}

# rm -rf that never deletes through a bind mount of /dev, /proc or the repo.
remove_tree() {
  unmount_below "$1"
  if awk -v p="$1" 'index($2, p "/") == 1 {found = 1} END {exit !found}' /proc/mounts; then
    die "$1 still has mounts below it; not deleting"
  fi
  rm -rf "$1"
}

build_base() {
  command -v debootstrap >/dev/null || {
    log "installing debootstrap on the host"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap
  }
  local tmp=$ROOT.partial build_log=$CACHE/build-$RELEASE.log old
  for old in "$CACHE/chroot-$RELEASE-"*; do  # other recipes' chroots of this release: ~2.5 GB each
    [ -e "$old" ] && [ "$old" != "$ROOT" ] && { log "removing outdated $old"; remove_tree "$old"; }
  done
  remove_tree "$tmp"
  log "debootstrap $RELEASE from $MIRROR (log: $build_log)"
  debootstrap --variant=minbase "$RELEASE" "$tmp" "$MIRROR" >"$build_log" 2>&1 \
    || { tail -n 20 "$build_log" >&2; die "debootstrap failed"; }
  echo "deb $MIRROR $RELEASE main" >"$tmp/etc/apt/sources.list"
  echo "$DPKG_CFG" >"$tmp/etc/dpkg/dpkg.cfg.d/01-sam-cd"
  # This machine's extra CA certificates (TLS-intercepting proxies) so pip inside can verify.
  mkdir -p "$tmp/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$tmp/usr/local/share/ca-certificates/" 2>/dev/null || true
  ROOT=$tmp
  bind /proc /proc; bind /sys /sys; bind /dev /dev
  in_chroot "$tmp" apt-get "${APT_OPTS[@]}" update >>"$build_log" 2>&1 \
    || { tail -n 20 "$build_log" >&2; die "apt-get update failed"; }
  local optional="" p
  for p in $OPTIONAL_PACKAGES; do
    if in_chroot "$tmp" apt-cache show "$p" >/dev/null 2>&1; then optional="$optional $p"
    else log "$RELEASE has no $p"; fi
  done
  log "apt-get install (QGIS, GDAL, CPU torch${optional:+,$optional})"
  # shellcheck disable=SC2086
  in_chroot "$tmp" apt-get "${APT_OPTS[@]}" install --no-install-recommends $DEBIAN_PACKAGES $optional \
    >>"$build_log" 2>&1 || { tail -n 20 "$build_log" >&2; die "apt-get install failed"; }
  in_chroot "$tmp" update-ca-certificates >/dev/null
  in_chroot "$tmp" apt-get clean
  unmount_all
  ROOT=$CACHE/chroot-$RELEASE-$RECIPE_HASH
  mv "$tmp" "$ROOT"
}

# The venv: Debian's torch/numpy/GDAL/QGIS visible, pip's packages pinned; the constraints pin
# Debian's own torch, torchvision and numpy, so pip can never replace them (no CUDA torch).
build_venv() {
  local want=$1
  log "venv $VENV from ci/chroot-requirements.txt"
  cp "$PIP_RECIPE" "$ROOT/tmp/chroot-requirements.txt"
  in_chroot "$ROOT" sh -ec "
    rm -rf $VENV
    python3 -m venv --system-site-packages $VENV
    python3 -c 'import importlib.metadata as m
for d in (\"torch\", \"torchvision\", \"numpy\"):
    print(f\"{d}=={m.version(d)}\")' >$VENV/debian-constraints.txt
    $VENV/bin/python -m pip install -q --disable-pip-version-check --no-cache-dir \
      -c $VENV/debian-constraints.txt -r /tmp/chroot-requirements.txt
    echo $want >$VENV/.recipe"
}

versions_report() {
  in_chroot "$ROOT" $VENV/bin/python - <<'EOF'
import platform, sys
from osgeo import gdal
from qgis.core import Qgis
from qgis.PyQt.QtCore import QT_VERSION_STR, PYQT_VERSION_STR
import torch, torchvision, numpy
print(f"versions: QGIS {Qgis.version()} | Qt {QT_VERSION_STR} | PyQt {PYQT_VERSION_STR} | "
      f"Python {platform.python_version()} | GDAL {gdal.__version__} | torch {torch.__version__} | "
      f"torchvision {torchvision.__version__} | numpy {numpy.__version__}")
EOF
}

# The whole run is one function, so editing this file while it runs cannot change what it does.
main() {
  mkdir -p "$CACHE"
  exec 9>"$CACHE/chroot-$RELEASE.lock"
  flock 9  # one build or run at a time per release (CI and developers share the cache)
  start=$SECONDS
  if [ -f "$ROOT/etc/debian_version" ]; then
    log "reusing $ROOT"
    unmount_below "$ROOT"
  else
    build_base
    log "chroot built in $((SECONDS - start)) s"
  fi
  pip_hash=$(sha256sum "$PIP_RECIPE" | cut -c1-12)
  if [ "$(cat "$ROOT$VENV/.recipe" 2>/dev/null)" != "$pip_hash" ]; then
    bind /proc /proc; bind /sys /sys; bind /dev /dev
    build_venv "$pip_hash"
    unmount_all
  fi
  log "ready after $((SECONDS - start)) s"

  bind /proc /proc; bind /sys /sys; bind /dev /dev
  bind "$REPO" /work/sam-cd
  if [ -d "$SHARED" ]; then bind "$SHARED" /work/shared ro; fi
  mkdir -p "$ROOT/tmp"
  versions_report
  [ $# -gt 0 ] || set -- tests/qgis -q
  # pytest-qgis needs an offscreen Qt platform in a headless chroot, or it aborts with 134.
  # SAM_CD_DEPRECATIONS=error: deprecation warnings raised from sam_cd_plugin fail the test (conftest).
  SAM_CD_CHROOT_ENV="QT_QPA_PLATFORM=offscreen YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false
    YOLO_CONFIG_DIR=/tmp/ultralytics PYTHONDONTWRITEBYTECODE=1 SAM_CD_DEPRECATIONS=error CI=${CI:-}
    ${SAM_CD_CHROOT_ENV:-}" \
    in_chroot "$ROOT" sh -c 'cd /work/sam-cd && exec "$0" "$@"' $VENV/bin/python -m pytest \
    -p no:cacheprovider "$@"
}

main "$@"
