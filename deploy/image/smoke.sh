#!/usr/bin/env bash
# Runs the image the way the Helm chart does — read-only root filesystem, /tmp on a tmpfs, volumes for the state and
# quarantine directories, user 10001, no capabilities — and checks that `warden serve` answers /healthz and that
# `warden scan` judges a lab fixture (one clean, one adversarial). Loopback only (host network, 127.0.0.1).
#   bash deploy/image/smoke.sh [image]
set -euo pipefail
cd "$(dirname "$0")/../.."
IMAGE=${1:-localhost/warden:$(node -p "require('./package.json').version")}
PORT=${SMOKE_PORT:-18080}
work=$(mktemp -d)
name=warden-smoke-$$
cleanup() { "${PODMAN[@]}" rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
log() { echo "[smoke] $*" >&2; }
cat > "$work/warden.yaml" <<YAML
server: { host: 127.0.0.1, port: $PORT }
upstream: { url: http://127.0.0.1:9/dicom-web }
logging: { level: info }
YAML
chmod 0644 "$work/warden.yaml"
# This machine (a VM) mounts cgroups in hybrid v1/v2 mode, which crun (podman's default runtime on Debian 12) refuses,
# and its hard limits are below podman's default ulimits: use runc there and the machine's own limits.
PODMAN=(podman)
if grep -qs . /sys/fs/cgroup/unified/cgroup.controllers && command -v runc >/dev/null; then PODMAN+=(--runtime runc); fi
run_flags=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 --read-only --tmpfs /tmp:rw,size=64m,mode=1777 --user 10001:10001 --cap-drop ALL --security-opt no-new-privileges
  --network host -v "$work/warden.yaml:/etc/warden/config/warden.yaml:ro"
  --mount type=tmpfs,destination=/var/lib/warden/state,tmpfs-mode=0700,chown=true
  --mount type=tmpfs,destination=/var/lib/warden/quarantine,tmpfs-mode=0700,chown=true
  --mount type=tmpfs,destination=/var/lib/warden/spool,tmpfs-mode=0700,chown=true)

log "warden serve in $IMAGE"
"${PODMAN[@]}" run -d --name "$name" "${run_flags[@]}" "$IMAGE" >/dev/null
ok=0
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$PORT/healthz" >"$work/healthz.json" 2>/dev/null; then ok=1; break; fi
  if [ "$("${PODMAN[@]}" inspect -f '{{.State.Running}}' "$name")" != true ]; then break; fi
  sleep 0.2
done
if [ "$ok" != 1 ]; then "${PODMAN[@]}" logs "$name" >&2 || true; log "FAIL: /healthz did not answer"; exit 1; fi
log "/healthz: $(cat "$work/healthz.json")"
curl -sS "http://127.0.0.1:$PORT/readyz" >"$work/readyz.json" || true
log "/readyz (no upstream behind 127.0.0.1:9, so not ready): $(cat "$work/readyz.json")"
grep -q '"model":true' "$work/readyz.json" || { log "FAIL: the model is not loaded"; exit 1; }
curl -sS "http://127.0.0.1:$PORT/metrics" | grep -m1 '^warden_model_info' >&2
"${PODMAN[@]}" stop -t 20 "$name" >/dev/null

clean=$(awk -F, '$6=="clean"{print $1; exit}' test/fixtures/lab/manifest.csv)
attack=$(awk -F, '$6=="adversarial" && $9=="8" && $10=="1"{print $1; exit}' test/fixtures/lab/manifest.csv)
log "warden scan of $clean and $attack"
"${PODMAN[@]}" run --rm "${run_flags[@]}" -v "$PWD/test/fixtures/lab:/fixtures:ro" "$IMAGE" \
  scan "/fixtures/$clean" "/fixtures/$attack" --json > "$work/scan.jsonl"
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => JSON.parse(l));
const records = lines.flatMap((r) => Array.isArray(r) ? r : (r.records ?? [r]));
for (const r of records) console.error(`[smoke] ${r.file ?? r.partIndex}: status ${r.status}, verdict ${r.verdict}, ${Object.entries(r.scores ?? {}).map(([d, s]) => `${d} p=${s.pValue}`).join(" ")}`);
if (records.length !== 2 || records.some((r) => r.status !== "scanned")) { console.error("[smoke] FAIL: expected two scanned records"); process.exit(1); }
' "$work/scan.jsonl"
log "OK"
