#!/usr/bin/env bash
# Builds deploy/image/Dockerfile itself (target runtime-cpu) on a machine without access to container registries, by
# standing in local images for its two base images: NODE_IMAGE = a Debian 12 root filesystem with python3, make and
# g++ (for better-sqlite3's build) plus this machine's Node 20 and npm; RUNTIME_IMAGE = the minbase root filesystem
# build-offline.sh caches. Its RUN steps still reach the npm registry (npm ci) and the Debian mirror (apt-get), the
# two package sources this machine has. Then smoke.sh runs the result.
#   bash deploy/image/build-dockerfile-offline.sh      # → localhost/warden:<version>-dockerfile
set -euo pipefail
cd "$(dirname "$0")/../.."
VERSION=$(node -p "require('./package.json').version")
WORK=${WARDEN_IMAGE_WORK:-/var/tmp/warden-image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
NODE_BIN=${NODE_BIN:-$(command -v node)}
NPM_DIR=${NPM_DIR:-$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")}
IMAGE=${WARDEN_IMAGE:-localhost/warden:$VERSION-dockerfile}
log() { echo "[dockerfile] $*" >&2; }
BUILDAH=(buildah)
if grep -qs . /sys/fs/cgroup/unified/cgroup.controllers && command -v runc >/dev/null; then BUILDAH+=(--runtime runc); fi

# the run-time base: build-offline.sh's cached root filesystem
if [ ! -f "$WORK/base/.warden-complete" ]; then
  log "no cached root filesystem: running build-offline.sh first"
  bash deploy/image/build-offline.sh
fi
# the build base: Debian 12 + compilers + Node 20 + npm
if [ ! -f "$WORK/buildbase/.warden-complete" ]; then
  log "debootstrap bookworm with python3, make, g++"
  rm -rf "$WORK/buildbase"
  debootstrap --variant=minbase --include=ca-certificates,python3,make,g++ bookworm "$WORK/buildbase" "$MIRROR" >"$WORK/debootstrap-build.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap-build.log" >&2; exit 1; }
  touch "$WORK/buildbase/.warden-complete"
fi

from_rootfs() { # name rootfs [extra setup]
  local name=$1 rootfs=$2 ctr mnt
  ctr=$(buildah from --quiet scratch)
  mnt=$(buildah mount "$ctr")
  cp -a "$rootfs"/. "$mnt"/
  rm -f "$mnt/.warden-complete"
  if [ "${3:-}" = node ]; then
    install -m 0755 "$NODE_BIN" "$mnt/usr/local/bin/node"
    mkdir -p "$mnt/usr/local/lib/node_modules"
    cp -a "$NPM_DIR" "$mnt/usr/local/lib/node_modules/npm"
    ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
    ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
  fi
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/bin:/usr/bin:/bin "$ctr"
  buildah commit --quiet --rm "$ctr" "$name" >/dev/null
}
log "local base images"
from_rootfs localhost/warden-build-base:node20 "$WORK/buildbase" node
from_rootfs localhost/warden-run-base:bookworm "$WORK/base"

log "buildah bud -f deploy/image/Dockerfile --target runtime-cpu"
t0=$SECONDS
"${BUILDAH[@]}" bud --network host --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 \
  --build-arg NODE_IMAGE=localhost/warden-build-base:node20 --build-arg RUNTIME_IMAGE=localhost/warden-run-base:bookworm \
  --target runtime-cpu -f deploy/image/Dockerfile -t "$IMAGE" . >&2
log "built $IMAGE in $((SECONDS - t0)) s: $(podman image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
bash deploy/image/smoke.sh "$IMAGE"
