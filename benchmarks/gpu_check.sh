#!/usr/bin/env bash
# The CUDA checks of the SPRC side as one prepared script (run where a GPU is lent), a few
# minutes on one GPU, every figure printed (benchmarks/gpu_check.py has the details):
#   SPRC ViT-g + BERT-base Q-Former, random weights, batch 128, AMP: step time and peak memory
#   for stage 1 and stage 2 (aux region loss); ViT-g feature throughput at 224 px in fp16; the
#   tiny demo model on CUDA vs CPU (losses for a few steps); yolo predict batch 32 fp16 vs batch 1.
# Nothing is downloaded (random weights; yolov8n.yaml). The detection suite on a GPU (tests,
# batch sweep, box quality with the trained demo detector) is benchmarks/bench_detect_gpu.sh;
# --with-detect runs it afterwards into OUTDIR/detect.
# Usage: benchmarks/gpu_check.sh OUTDIR [--tiny] [--device cuda:N] [--with-detect]
#   --tiny: the same code paths at toy sizes (CPU, seconds; what tests/test_gpu_check.py runs).
set -u
OUT=${1:?output folder}
shift
ARGS=()
DETECT=0
for a in "$@"; do
  if [ "$a" = "--with-detect" ]; then DETECT=1; else ARGS+=("$a"); fi
done
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false
export YOLO_CONFIG_DIR=${YOLO_CONFIG_DIR:-/tmp/cirflow-ultralytics} MPLCONFIGDIR=${MPLCONFIGDIR:-/tmp/cirflow-mpl}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
echo "=== $(date +%T) gpu_check ${ARGS[*]:-}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY benchmarks/gpu_check.py --json "$OUT/gpu_check.json" "${ARGS[@]}" 2>&1 \
  | grep -v -e "FutureWarning" -e "custom_fwd" -e "custom_bwd" -e "warnings.warn" | tee "$OUT/gpu_check.txt"
rc=${PIPESTATUS[0]}
echo "=== $(date +%T) gpu_check exit $rc; figures in $OUT/gpu_check.json"
if [ "$DETECT" = 1 ]; then
  PY=$PY benchmarks/bench_detect_gpu.sh "$OUT/detect"
fi
exit "$rc"
