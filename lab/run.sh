#!/usr/bin/env bash
# Warden lab entry point.
# usage: lab/run.sh all | splits | train | export | attacks | attacks_extra | corruptions | dicom | fixtures | foreign | resnet50 | sealed
# Each step skips if its output exists (FORCE=1 to redo). Uses Debian's /usr/bin/python3 (not pyenv).
set -euo pipefail
LAB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$LAB")"
PY=/usr/bin/python3
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"   # much faster than spinning when the 2 cores are shared
export PYTHONDONTWRITEBYTECODE=1
# oneDNN and OpenBLAS pick kernels by the CPU's instruction set, and AVX-512 kernels round differently from AVX2 ones:
# on an AVX-512 machine the unpinned run trained a different model from epoch 1 on. Pinning the AVX2 / Haswell
# kernels reproduces the committed checkpoint and ONNX byte for byte (see README).
export DNNL_MAX_CPU_ISA="${DNNL_MAX_CPU_ISA:-AVX2}"
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}"
cd "$LAB"

ensure_deps() {
  if ! "$PY" -c 'import torch, numpy, sklearn, scipy, PIL, pydicom, onnx' 2>/dev/null; then
    echo "[run.sh] installing Debian Python packages"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq || true
    $SUDO apt-get install -y python3-torch python3-numpy python3-sklearn python3-scipy python3-pil python3-pydicom python3-onnx
  fi
  if [ ! -d "$REPO/node_modules/onnxruntime-node" ]; then
    echo "[run.sh] onnxruntime-node missing: run 'npm ci' in $REPO first" >&2; exit 1
  fi
  if [ ! -f "$REPO/../shared/datasets/kermany-chest-xray-224/labels.csv" ]; then
    echo "[run.sh] dataset not found at ../shared/datasets/kermany-chest-xray-224" >&2; exit 1
  fi
}

step() {  # step <name> <output that marks it done> <command...>
  local name="$1" out="$2"; shift 2
  if [ -e "$out" ] && [ "${FORCE:-0}" != 1 ]; then
    echo "[run.sh] $name: $out exists, skipping (FORCE=1 to redo)"; return 0
  fi
  echo "[run.sh] === $name ==="
  local t0=$SECONDS
  "$@"
  echo "[run.sh] $name done in $((SECONDS - t0)) s"
}

# Training is ONE from-scratch run (see README): 12 epochs, OneCycle max LR 2e-3, strong augmentation, class-weighted
# CE with label smoothing 0.1, epoch selection on detector_fit. It writes to a .partial checkpoint that is renamed
# only when the run completes, so an interrupted run is redone rather than skipped. Log: data/train.log.
train() {
  mkdir -p "$REPO/data"
  rm -f "$REPO/data/warden-cxr-ref.pt.partial"
  LAB_CKPT="$REPO/data/warden-cxr-ref.pt.partial" "$PY" train.py 2>&1 | tee "$REPO/data/train.log"
  mv "$REPO/data/warden-cxr-ref.pt.partial" "$REPO/data/warden-cxr-ref.pt"
}

# Foreign-source radiographs (../shared/corpus/dicom, CR/DX) through Warden's own decode + preprocess (dist/).
foreign() {
  [ -f "$REPO/dist/dicom/index.js" ] || (cd "$REPO" && npx tsc -p tsconfig.json)
  (cd "$REPO" && node lab/warden_tensors.js --foreign data/foreign)
  "$PY" check_voi.py   # the 12-bit corruption's model input = what Warden computes from the written DICOM
}

marked() {  # marked <name> <command...>: run it, then touch data/.done-<name>
  local name="$1"; shift
  mkdir -p "$REPO/data"
  "$@"
  touch "$REPO/data/.done-$name"
}

run_step() {
  case "$1" in
    # splits / export / fixtures write committed files, so their "done" markers live in the git-ignored data/: a fresh
    # clone (empty data/) regenerates them instead of skipping because the committed outputs exist.
    splits)   step splits "$REPO/data/.done-splits" marked splits "$PY" splits.py ;;
    train)    step train "$REPO/data/warden-cxr-ref.pt" train ;;
    export)   step export "$REPO/data/eval.json" env LAB_FOLD="${LAB_FOLD:-0}" "$PY" export.py ;;
    attacks)  step attacks "$REPO/data/attacks/summary.json" "$PY" attacks.py ;;
    attacks_extra) step attacks_extra "$REPO/data/attacks_extra/summary.json" "$PY" attacks_extra.py ;;
    corruptions)   step corruptions "$REPO/data/corruptions/summary.json" "$PY" corruptions.py ;;
    dicom)    step dicom "$REPO/data/manifest.csv" "$PY" dicom.py ;;
    fixtures) step fixtures "$REPO/data/.done-fixtures" marked fixtures "$PY" fixtures.py ;;
    foreign)  step foreign "$REPO/data/foreign/index.json" foreign ;;
    resnet50) step resnet50 "$REPO/data/resnet50.onnx" "$PY" resnet50.py ;;
    # the sealed vendor model of the bring-your-own-model path (docs/byo-model.md); not part of `all`
    sealed)   step sealed "$REPO/data/sealed/.done-fixtures" "$PY" sealed_model.py ;;
    *) echo "unknown step $1" >&2; exit 2 ;;
  esac
}

ensure_deps
if [ "${1:-all}" = all ]; then
  for s in splits train export attacks attacks_extra corruptions dicom fixtures foreign; do run_step "$s"; done
else
  run_step "$1"
fi
