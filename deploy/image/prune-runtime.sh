#!/usr/bin/env bash
# Trims a staged app (production node_modules) to what a Linux x64 CPU image runs: ONNX Runtime ships binaries for
# every OS and architecture (≈ 290 MB); only linux/x64 is kept. Used by build-offline.sh and the Dockerfile.
# With --keep-cuda the CUDA provider libraries that `ONNXRUNTIME_NODE_INSTALL=cuda12` added stay.
set -euo pipefail
APP=$1
ORT=$APP/node_modules/onnxruntime-node/bin/napi-v6
if [ -d "$ORT" ]; then
  rm -rf "$ORT/darwin" "$ORT/win32" "$ORT/linux/arm64"
fi
# sources and build leftovers of native modules are not needed at run time
rm -rf "$APP/node_modules/better-sqlite3/deps" "$APP/node_modules/better-sqlite3/src" \
       "$APP/node_modules/better-sqlite3/build/Release/obj" "$APP/node_modules/better-sqlite3/build/Release/.deps" \
       "$APP/node_modules/better-sqlite3/build/Release/obj.target" "$APP/node_modules/better-sqlite3/build/deps" \
       "$APP/node_modules/better-sqlite3/build/Release/sqlite3.a" "$APP/node_modules/better-sqlite3/build/Release/test_extension.node" 2>/dev/null || true
