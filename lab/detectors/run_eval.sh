#!/usr/bin/env bash
# Reproduces docs/evaluation.md ("Two signals") from the lab data (data/manifest.csv + data/dicom, written by
# `lab/run.sh all`). Steps are skipped when their output exists (FORCE=1 redoes them). Run from anywhere; needs a built
# project. The domain-detector tables of issue 5 came from the previous version of this script (git log -- this file).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
W="node bin/warden.js"
VIEWS=bits4,bits5,median2,median3,blur   # every view a candidate reads (the shipped policy reads median2 only)
step() { echo "[eval $(date +%H:%M:%S)] $*" >&2; }
redo() { [ ! -e "$1" ] || [ "${FORCE:-}" = 1 ]; }
[ -f dist/cli/index.js ] || npx tsc -p tsconfig.json

if redo data/features-dev/features.json; then
  step "features of the clean fit/calibration splits and the dev rows (dev attacks, dev corruptions), with the views"
  $W features --manifest data/manifest.csv:model_train,detector_fit,calibration --views $VIEWS --workers 2 --out data/features-dev
fi
if redo data/features-test/features.json; then
  step "features of the test rows (clean, attacks, corruptions, benign shifts), with the views"
  $W features --manifest data/manifest.csv:test --views $VIEWS --workers 2 --out data/features-test
fi

step "the candidates (lab/detectors/adversarial_candidates.json), fitted and calibrated like the shipped bundle"
$W fit --train data/features-dev:model_train,detector_fit --calibration data/features-dev:calibration \
  --spec lab/detectors/adversarial_candidates.json --out data/candidates.bundle
step "dev evaluation: dev attacks and corruptions against the clean calibration split; the choice"
$W eval --bundle data/candidates.bundle --manifest data/features-dev:detector_fit,calibration --clean-split calibration --out data/eval-dev
$PY lab/detectors/choose_adversarial.py data/eval-dev/scores.csv --out data/eval-dev/choice.json | tee data/eval-dev/choice.txt

if redo models/warden-cxr-ref.bundle; then
  step "fit the shipped bundle (the default detectors of warden fit)"
  $W fit --train data/features-dev:model_train,detector_fit --calibration data/features-dev:calibration --out models/warden-cxr-ref.bundle
fi
step "test evaluation of the shipped bundle and policy, with the foreign-source corpus radiographs"
ADAPTIVE=()   # the adaptive-attack section (docs/adaptive.md), when lab/adaptive/report.py has written it
if [ -f data/adaptive-full/report.json ]; then ADAPTIVE=(--adaptive data/adaptive-full/report.json); fi
$W eval --bundle models/warden-cxr-ref.bundle --manifest data/features-test --foreign ../shared/corpus/dicom --out data/eval-test "${ADAPTIVE[@]}"
step "golden vectors of the views and the shipped adversarial detectors (committed; CI compares the TypeScript port)"
$PY lab/detectors/make_golden_adversarial.py
step "done: data/eval-dev/choice.txt, data/eval-test/report.md"
