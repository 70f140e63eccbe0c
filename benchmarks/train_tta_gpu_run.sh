#!/usr/bin/env bash
# One device call for issue 16 (~6-9 min on an H200 with 16 CPUs): time to accuracy, Ultralytics' default settings
# against the tuned run (benchmarks/train_tta.py), yolov8n, 10 epochs: the shapes set at 4,000/800 images at 640,
# then, if time is left, the crowded set at CROWDED_IMAGES (1,000) / a fifth as many images. Prints the tables; JSON and logs under $OUT.
# Usage (device tool, repo root, .whl carried: ultralytics, ultralytics-thop, pydantic, pydantic_core,
# annotated-types, typing-inspection):                bash benchmarks/train_tta_gpu_run.sh
# CPU smoke test (tiny sizes):  TTA_SMOKE=1 OUT=/tmp/o PY=.venv/bin/python bash benchmarks/train_tta_gpu_run.sh
# Longer rows over two calls (yolov8s, 30 epochs): MODEL=yolov8s.yaml EPOCHS=30 IMAGES=1500 VAL=300 VARIANTS=shapes;
# a call that ends during the tuned run still leaves the defaults' report ($OUT/shapes.json, "tuned": null), and the
# next call reuses it with DEFAULTS_DIR=<that call's files>. TUNING=in-training: tuning inside the training process.
# EXTRA=val=false: Ultralytics arguments for the tuned run only. CHECKPOINTS=sync: checkpoints on the training thread.
set -u
OUT=${OUT:-/tmp/tta_out}; mkdir -p "$OUT"
WORK=${WORK:-/tmp/tta}
SKIP_WHEELS=${SKIP_WHEELS:-${TTA_SMOKE:-}}  # set: the wheels are installed already (validation_gpu_run.sh)
source benchmarks/device_env.sh
if [ -n "${TTA_SMOKE:-}" ]; then
  SIZE="--images 24 --val 6 --imgsz 64 --epochs 2"; CROWDED="--images 24 --val 6 --imgsz 64 --epochs 2"
else
  SIZE="--images ${IMAGES:-4000} --val ${VAL:-800} --imgsz 640 --epochs ${EPOCHS:-10}"
  CI=${CROWDED_IMAGES:-1000}
  CROWDED="--images $CI --val $((CI / 5)) --imgsz 640 --epochs ${EPOCHS:-10}"
fi

bench() {  # $1 = variant, then sizes
  local v=$1; shift
  echo "== $v $* (t=$((SECONDS - T0))s)"
  local reuse=()  # DEFAULTS_DIR: reuse the defaults' runs of an earlier call (<variant>.json there)
  if [ -n "${DEFAULTS_DIR:-}" ] && [ -f "$DEFAULTS_DIR/$v.json" ]; then reuse=(--defaults-json "$DEFAULTS_DIR/$v.json"); fi
  $PY benchmarks/train_tta.py run --out "$WORK/$v" --variant "$v" --model "${MODEL:-yolov8n.yaml}" "$@" ${EXTRA:+--extra "$EXTRA"} ${CHECKPOINTS:+--checkpoints "$CHECKPOINTS"} \
    "${reuse[@]}" --batch-rule "${BATCH_RULE:-auto}" --tuning "${TUNING:-pod}" --json "$OUT/$v.json" 2>&1 | tee "$OUT/$v.txt" | grep -v '^\s*$' | tail -12
  cp "$WORK/$v/tune.log" "$OUT/${v}_tune.log" 2>/dev/null || cp "$WORK/$v/tuned.log" "$OUT/${v}_tuned.log"
  cp "$WORK/$v/tuning/tune_result.json" "$OUT/${v}_tune_result.json" 2>/dev/null
}

# VARIANTS picks the sets; the crowded one starts only when it can end well inside a 10-minute call.
for V in ${VARIANTS:-shapes crowded}; do
  if [ "$V" = shapes ]; then bench shapes $SIZE; continue; fi
  if [ $((SECONDS - T0)) -lt "${CROWDED_START_BEFORE:-330}" ]; then bench crowded $CROWDED; else echo "SKIPPED crowded: $((SECONDS - T0))s spent"; fi
done
echo "total $((SECONDS - T0))s"
