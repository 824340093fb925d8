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
if [ "${1:-}" = "--with-orthanc" ]; then
  if ! command -v Orthanc >/dev/null 2>&1 || [ ! -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ]; then
    echo "[setup] apt-get install orthanc orthanc-dicomweb" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends orthanc orthanc-dicomweb >&2
  fi
fi
