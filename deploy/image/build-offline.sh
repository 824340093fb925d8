#!/usr/bin/env bash
# Builds the Warden image without any registry: a Debian 12 root filesystem from debootstrap (Debian's mirror is the
# one package source this machine reaches), this machine's Node 20 binary, and the app as the Dockerfile's build
# stage makes it (tsc, production node_modules, ONNX Runtime's Linux x64 CPU binaries only), assembled with buildah
# into local containers-storage. The result matches deploy/image/Dockerfile's `runtime-cpu` target: user 10001, no
# shell needed at run time, read-only root filesystem friendly (writes only to /tmp and /var/lib/warden/*).
#
#   bash deploy/image/build-offline.sh [--smoke]      # → localhost/warden:<version> (+ an OCI archive with --archive)
#
# --smoke then runs the image under podman (read-only root, /tmp tmpfs, user 10001): /healthz and `warden scan` of a
# lab fixture (deploy/image/smoke.sh). Environment: WARDEN_IMAGE (name:tag), WARDEN_IMAGE_WORK (cache of the Debian
# root filesystem, default /var/tmp/warden-image), DEBIAN_MIRROR, NODE_BIN (default: the node on PATH).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
VERSION=$(node -p "require('./package.json').version")
IMAGE=${WARDEN_IMAGE:-localhost/warden:$VERSION}
WORK=${WARDEN_IMAGE_WORK:-/var/tmp/warden-image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
NODE_BIN=${NODE_BIN:-$(command -v node)}
SMOKE=0; ARCHIVE=0
for a in "$@"; do
  case "$a" in
    --smoke) SMOKE=1 ;;
    --archive) ARCHIVE=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
log() { echo "[image] $*" >&2; }
t0=$SECONDS

# 0. tools (Debian packages), installed only when missing
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v buildah >/dev/null || missing+=(buildah)
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)   # smoke.sh: crun refuses hybrid cgroup v1/v2 hosts
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" uidmap fuse-overlayfs >&2
fi
node_major=$("$NODE_BIN" -p 'process.versions.node.split(".")[0]')
[ "$node_major" = 20 ] || { echo "NODE_BIN must be Node 20 (native modules are built for its ABI), got $("$NODE_BIN" --version)" >&2; exit 1; }

# 1. base root filesystem: Debian 12 minbase + CA certificates + tini (PID 1 that forwards signals), cached
BASE=$WORK/base
if [ ! -f "$BASE/.warden-complete" ]; then
  log "debootstrap bookworm (minbase) from $MIRROR"
  rm -rf "$BASE"; mkdir -p "$WORK"
  debootstrap --variant=minbase --include=ca-certificates,tini bookworm "$BASE" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  # nothing at run time installs packages: drop apt's lists and caches, docs
  rm -rf "$BASE"/var/lib/apt/lists/* "$BASE"/var/cache/apt/* "$BASE"/usr/share/doc/* "$BASE"/usr/share/man/* "$BASE"/usr/share/locale/*
  touch "$BASE/.warden-complete"
fi

# 2. the app, as the Dockerfile's build stage makes it: built dist/, production node_modules only
STAGE=$(mktemp -d "$WORK/stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
log "staging the app"
[ -f dist/cli/index.js ] && [ -z "$(find src -newer dist/cli/index.js -name '*.ts' -print -quit)" ] || npx tsc -p tsconfig.json
APP=$STAGE/app
mkdir -p "$APP"
cp -a package.json package-lock.json bin dist models "$APP/"
mkdir -p "$APP/config" && cp config/warden.example.yaml "$APP/config/"
cp -a node_modules "$APP/node_modules"
(cd "$APP" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null 2>&1)
bash deploy/image/prune-runtime.sh "$APP"

# 3. assemble with buildah: rootfs + node + app + user, then the image configuration
log "assembling $IMAGE with buildah"
ctr=$(buildah from --quiet scratch)
cleanup_ctr() { buildah rm "$ctr" >/dev/null 2>&1 || true; }
trap 'cleanup_ctr; rm -rf "$STAGE"' EXIT
mnt=$(buildah mount "$ctr")
cp -a "$BASE"/. "$mnt"/
rm -f "$mnt/.warden-complete"
install -m 0755 "$NODE_BIN" "$mnt/usr/local/bin/node"
cp -a "$APP" "$mnt/app"
chown -R 0:0 "$mnt/app"
echo 'warden:x:10001:10001:Warden:/var/lib/warden/state:/usr/sbin/nologin' >> "$mnt/etc/passwd"
echo 'warden:x:10001:' >> "$mnt/etc/group"
echo 'warden:!:19000::::::' >> "$mnt/etc/shadow"
mkdir -p "$mnt/var/lib/warden/state" "$mnt/var/lib/warden/quarantine" "$mnt/var/lib/warden/spool" "$mnt/etc/warden/config"
chown -R 10001:10001 "$mnt/var/lib/warden"
chmod 0700 "$mnt/var/lib/warden/state" "$mnt/var/lib/warden/quarantine" "$mnt/var/lib/warden/spool"
chmod 1777 "$mnt/tmp"
buildah umount "$ctr" >/dev/null
buildah config \
  --user 10001:10001 --workingdir /app \
  --env NODE_ENV=production --env WARDEN_STATE_DIR=/var/lib/warden/state --env HOME=/var/lib/warden/state \
  --env TMPDIR=/tmp --env MALLOC_MMAP_THRESHOLD_=131072 --env MALLOC_ARENA_MAX=2 \
  --env PATH=/usr/local/bin:/usr/bin:/bin \
  --entrypoint '["/usr/bin/tini", "--", "/usr/local/bin/node", "/app/bin/warden.js"]' \
  --cmd '["serve", "--config", "/etc/warden/config/warden.yaml"]' \
  --port 8080 \
  --volume /tmp --volume /var/lib/warden/state --volume /var/lib/warden/quarantine --volume /var/lib/warden/spool \
  --label org.opencontainers.image.title=warden --label org.opencontainers.image.version="$VERSION" \
  --label org.opencontainers.image.description="Warden DICOMweb security gateway (CPU; ONNX Runtime $(node -p "require('./node_modules/onnxruntime-node/package.json').version"))" \
  --label io.warden.variant=cpu \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
trap 'rm -rf "$STAGE"' EXIT
log "built $IMAGE in $((SECONDS - t0)) s: $(podman image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
if [ "$ARCHIVE" = 1 ]; then
  podman save --format oci-archive -o "$WORK/warden-$VERSION.oci.tar" "$IMAGE"
  log "OCI archive: $WORK/warden-$VERSION.oci.tar"
fi
if [ "$SMOKE" = 1 ]; then bash deploy/image/smoke.sh "$IMAGE"; fi
