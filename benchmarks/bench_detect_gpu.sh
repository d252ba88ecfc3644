#!/usr/bin/env bash
# The detection checks that need a CUDA GPU, as one script (run where a GPU is lent):
#   1. the yolo/hybrid/odd-image tests on the GPU (device auto -> cuda:0, fp16, batch 32),
#   2. GPU throughput of bare ultralytics predict vs our yolo shard for several batch sizes
#      (the data behind AUTO_BATCH_SIZE["cuda"]), fp16 vs fp32,
#   3. box quality of saliency / trained yolo / hybrid on the demo val split, on the GPU,
#   4. the 2-core CPU benchmarks (taskset to 2 cores, GPU hidden) on a quiet machine.
# Usage: benchmarks/bench_detect_gpu.sh OUTDIR [WEIGHTS]   (WEIGHTS: the trained demo detector)
# Environment knobs (small values for a local dry run): GPU_IMAGES, CPU_IMAGES, BATCHES.
set -u
OUT=${1:?output folder}
WEIGHTS=${2:-results/demo/detector/detector.pt}
GPU_IMAGES=${GPU_IMAGES:-640}
CPU_IMAGES=${CPU_IMAGES:-100}
BATCHES=${BATCHES:-"1 16 32 64"}
PY=${PY:-python3}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false
export YOLO_CONFIG_DIR=${YOLO_CONFIG_DIR:-/tmp/cirflow-ultralytics} MPLCONFIGDIR=/tmp/cirflow-mpl
export PYTHONUNBUFFERED=1
step() { echo "=== $(date +%T) $*"; }

step "environment" | tee "$OUT/env.txt"
$PY - <<'EOF' 2>&1 | tee -a "$OUT/env.txt"
import cv2, torch, ultralytics
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
print("ultralytics", ultralytics.__version__, "| cv2", cv2.__version__, "| saliency", hasattr(cv2, "saliency"))
EOF
nproc | tee -a "$OUT/env.txt"

step "demo dataset"
$PY -c "from cirflow.data.demo import generate_demo; generate_demo('/tmp/cirflow-demo', seed=0, progress=False)" 2>&1 | tail -2

step "tests on the GPU" | tee "$OUT/tests.txt"
timeout 300 $PY -m pytest -q -x -p no:cacheprovider tests/test_yolo.py tests/test_hybrid.py \
  tests/test_odd_images.py 2>&1 | tail -15 | tee -a "$OUT/tests.txt"

step "GPU throughput" | tee "$OUT/gpu_bench.txt"
$PY - <<EOF
import sys; sys.path.insert(0, "benchmarks")
from pathlib import Path
from bench_detect import synthetic_dataset
synthetic_dataset(Path("/tmp/cirflow-synth"), $GPU_IMAGES)
EOF
for b in $BATCHES; do
  for w in 4; do
    timeout 240 $PY benchmarks/bench_detect.py yolo --dataset /tmp/cirflow-synth --batch "$b" \
      --workers "$w" --repeat 2 --json "$OUT/gpu_b${b}_w${w}.json" 2>&1 | grep -v meaningless \
      | tee -a "$OUT/gpu_bench.txt"
  done
done
# Decode threads at the chosen batch, and fp32 for comparison (half: false).
timeout 120 $PY benchmarks/bench_detect.py yolo --dataset /tmp/cirflow-synth --batch 32 --workers 8 \
  --repeat 2 2>&1 | grep -v meaningless | tee -a "$OUT/gpu_bench.txt"
timeout 120 $PY - <<'EOF' 2>&1 | grep -v meaningless | tee -a "$OUT/gpu_bench.txt"
import time
from cirflow.boxes.shards import run_shard
for half in (True, False):
    cfg = {"yolo": {"weights": "yolov8n.yaml", "batch_size": 32, "half": half}}
    run_shard("/tmp/cirflow-synth", "val", "yolo", cfg, {"min_area": 0.002, "max_boxes": 10}, 0, 1, None, max_images=64, decode_workers=4, progress=False)
    start = time.perf_counter()
    r = run_shard("/tmp/cirflow-synth", "val", "yolo", cfg, {"min_area": 0.002, "max_boxes": 10}, 0, 1, None, decode_workers=4, progress=False)
    s = time.perf_counter() - start
    print(f"our yolo shard, batch 32, 4 decode threads, half={half}: {s:.2f} s, {len(r['boxes']) / s:.1f} img/s")
EOF

step "batch invariance without padding (informative)" | tee "$OUT/invariance.txt"
timeout 120 $PY - <<'EOF' 2>&1 | grep -v meaningless | tee -a "$OUT/invariance.txt"
import glob
import cv2
from cirflow.boxes.yolo import YoloDetector
det = YoloDetector(weights="yolov8n.yaml", conf=1e-5, batch_size=8)
args = {**det.predict_args(), "rect": False}
files = sorted(glob.glob("/tmp/cirflow-synth/dev/*.png"))[:16]
ims = [cv2.imread(f) for f in files]
ref = det.model.predict(ims[:1], **args)[0].boxes.data
for n in (2, 3, 5, 8, 16):
    got = det.model.predict(ims[:n], **args)[0].boxes.data
    same = got.shape == ref.shape and bool((got == ref).all())
    diff = float((got - ref).abs().max()) if got.shape == ref.shape else float("nan")
    print(f"{det.device} fp16={det.half}: image 0 alone vs unpadded batch of {n}: identical={same} max|diff|={diff:.3g}")
alone = det.detect_arrays(ims[:1])[0]
for n in (3, 8):
    other = det.detect_arrays(ims[:n])[0]
    print(f"padded to 8 (ours): image 0 alone vs with {n - 1} others: identical={alone == other}")
EOF

step "quality on the demo val split (GPU)" | tee "$OUT/quality.txt"
timeout 180 $PY benchmarks/bench_detect_quality.py --dataset /tmp/cirflow-demo --weights "$WEIGHTS" \
  --preset config/presets/yolo_demo.yaml --json "$OUT/quality.json" 2>&1 | grep -v meaningless \
  | tee -a "$OUT/quality.txt"

step "2-core CPU benchmarks (taskset 0,1; GPU hidden)" | tee "$OUT/cpu_bench.txt"
cpu() { CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=2 timeout 240 taskset -c 0,1 $PY benchmarks/bench_detect.py "$@" 2>&1 | grep -v meaningless | tee -a "$OUT/cpu_bench.txt"; }
cpu saliency --synthetic 500 --repeat 3 --json "$OUT/cpu_saliency.json"
cpu shards --synthetic 500 --shard-methods saliency --json "$OUT/cpu_shards_saliency.json"
cpu yolo --synthetic "$CPU_IMAGES" --repeat 1 --json "$OUT/cpu_yolo.json"
cpu shards --synthetic "$CPU_IMAGES" --shard-methods yolo --json "$OUT/cpu_shards_yolo.json"
step "done"
