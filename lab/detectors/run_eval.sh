#!/usr/bin/env bash
# Reproduces docs/evaluation.md from the lab data (data/manifest.csv + data/dicom, written by `lab/run.sh all`).
# Steps are skipped when their output exists (FORCE=1 redoes them). Run from anywhere; needs a built project.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
W="node bin/warden.js"
step() { echo "[eval $(date +%H:%M:%S)] $*" >&2; }
[ -f dist/cli/index.js ] || npx tsc -p tsconfig.json

if [ ! -f data/features/features.json ] || [ "${FORCE:-}" = 1 ]; then
  step "features of every manifest row"
  $W features --manifest data/manifest.csv --out data/features
fi
if [ ! -f models/warden-cxr-ref.bundle ] || [ "${FORCE:-}" = 1 ]; then
  step "fit the shipped bundle"
  $W fit --train data/features:model_train,detector_fit --calibration data/features:calibration --out models/warden-cxr-ref.bundle
fi
step "eval (pass 1: scores for the supervised score-fusion baseline)"
$W eval --bundle models/warden-cxr-ref.bundle --manifest data/features --out data/eval
step "lab baselines"
$PY lab/detectors/baselines.py --features data/features --out data/eval/baselines.json --scores data/eval/scores.csv
step "eval (pass 2, with baselines)"
$W eval --bundle models/warden-cxr-ref.bundle --manifest data/features --out data/eval --baselines data/eval/baselines.json
step "design variants"
$W fit --train data/features:model_train,detector_fit --calibration data/features:calibration --spec lab/detectors/variants.json --out data/variants.bundle
$W eval --bundle data/variants.bundle --manifest data/features --out data/eval-variants
step "parity with the Python reference on real features"
$PY lab/detectors/parity_real.py --features data/features --bundle models/warden-cxr-ref.bundle --scores data/eval/scores.csv --json data/eval/parity.json
step "benchmark"
node dist/eval/bench-detectors.js --features data/features --bundle models/warden-cxr-ref.bundle | tee data/eval/bench.txt
step "done: data/eval/report.md, data/eval-variants/report.md"
