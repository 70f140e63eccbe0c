#!/usr/bin/env bash
# One device call for issue 16 (~8-9 min on an H200 with 16 CPUs): what makes training at batch 16 (the defaults'
# trajectory) faster without changing what it computes. Each variant is the real trainer (train_throughput.py's
# `epoch` phase: its own process, a 30-epoch schedule stopped after EPOCHS epochs, validation off) on the shapes set,
# 4,000 images at 640. Variants: Ultralytics' defaults; workers 16 with the RAM cache; the same with Ultralytics'
# `compile` (torch.compile, default mode, then reduce-overhead = CUDA graphs); batch 32 compiled for reference; a
# cProfile of the main process over a steady epoch; the pin-memory thread off (--pin-memory false) at batch 16
# and 32. JSON lines and the profile under $OUT.
# Usage (device tool, repo root, .whl carried as for train_tta_gpu_run.sh):   bash benchmarks/train_knobs_gpu_run.sh
# GPU only: train_throughput.py's epoch phase times CUDA.
set -u
OUT=${OUT:-/tmp/knobs_out}; mkdir -p "$OUT"
WORK=${WORK:-/tmp/knobs}
source benchmarks/device_env.sh
IMAGES=${IMAGES:-4000}; IMGSZ=640; EPOCHS=${EPOCHS:-3}
DATA=$($PY -c "
from pathlib import Path
from yolo_workloads.datasets.shapes import ensure_shapes
print(ensure_shapes(Path('$WORK/shapes'), n=$IMAGES, imgsz=$IMGSZ, val=8, seed=0))")
echo "data ready (t=$((SECONDS - T0))s): $DATA"

variant() {  # $1 = name, then train_throughput.py epoch options
  local name=$1; shift
  if [ $((SECONDS - T0)) -gt "${STOP_AFTER:-420}" ]; then echo "SKIPPED $name: $((SECONDS - T0))s spent"; return; fi
  echo "== $name (t=$((SECONDS - T0))s)"
  timeout "${VARIANT_LIMIT:-200}" $PY benchmarks/train_throughput.py epoch --out "$WORK/runs" --data "$DATA" \
    --imgsz $IMGSZ --epochs "$EPOCHS" --model "${MODEL:-yolov8n}" "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"
  echo "rc=$? $(tail -c 600 "$OUT/$name.json")"
}

for V in ${VARIANTS:-defaults ram16 compile16 graphs16 compile32 profile16}; do
  case $V in
    defaults) variant defaults --batch 16 --workers 8 --cache none ;;
    ram16) variant ram16 --batch 16 --workers 16 --cache ram ;;
    compile16) variant compile16 --batch 16 --workers 16 --cache ram --compile true ;;
    graphs16) variant graphs16 --batch 16 --workers 16 --cache ram --compile reduce-overhead ;;
    compile32) variant compile32 --batch 32 --workers 16 --cache ram --compile true ;;
    profile16) variant profile16 --batch 16 --workers 16 --cache ram --profile "$OUT/profile16.txt" ;;
    # The loader's pin-memory thread shares the GIL with the main process's launch loop (profile16 shows it).
    nopin16) variant nopin16 --batch 16 --workers 8 --cache none --pin-memory false ;;
    nopinram16) variant nopinram16 --batch 16 --workers 16 --cache ram --pin-memory false ;;
    nopin32) variant nopin32 --batch 32 --workers 16 --cache ram --pin-memory false ;;
    pin32) variant pin32 --batch 32 --workers 16 --cache ram ;;
    # The forward and backward replayed as CUDA graphs (yolo_workloads/train/graphs.py): the defaults' batch.
    cgraphs16) variant cgraphs16 --batch 16 --workers 8 --cache none --cuda-graphs true ;;
    cgraphsram16) variant cgraphsram16 --batch 16 --workers 16 --cache ram --cuda-graphs true ;;
    # Where the main process's time goes once the forward and backward replay (what bounds cgraphs16).
    cgprofile16) variant cgprofile16 --batch 16 --workers 8 --cache none --cuda-graphs true --profile "$OUT/cgprofile16.txt" ;;
  esac
done
echo "total $((SECONDS - T0))s"
