#!/usr/bin/env bash
# One device call for validation a batch at a time (issue 16; ~8 min on an H200 with 16 CPUs): its NMS and metric
# update against Ultralytics' on the GPU (benchmarks/validation_batch.py: a grown model's 1,000 candidates an image,
# a young model's 30,000), its GPU tests, then the time-to-accuracy rows of docs/benchmarks.md "Checkpoints off the
# training thread" (yolov8s, then yolov8n; 30 epochs, 1,500/300 images, tuning inside training, the defaults reused
# from benchmarks/results/tta-30ep-2026-12-03), whose reports' `stages` and `trace` show validation's share and where
# the set-up before the first batch goes. Everything under $OUT.
# Usage (device tool, repo root, .whl carried as for train_tta_gpu_run.sh):  bash benchmarks/validation_gpu_run.sh
# PARTS picks: bench, tests, s (yolov8s), n (yolov8n); default all four, in that order. Two more for a second call
# (~7 min), the GPU path's workers with stand-ins without pixels (train/pixel_free.py, docs/benchmarks.md "Letterbox
# geometry without pixels"): aug (images/s, GPU busy and CPU cores of gpu128, gpu128nj and cpu128nc through
# gpu_augment_gpu_run.sh) and augtests (tests/gpu/test_gpu_augment.py). CPU smoke test:
#   DEVICE=cpu BENCH="--images 6 --batch 3 --repeats 1" PARTS="bench n" TTA_SMOKE=1 PY=$PWD/.venv/bin/python \
#   PYTHONPATH=$PWD/workloads bash benchmarks/validation_gpu_run.sh
set -u
OUT=${OUT:-/tmp/validation_out}; mkdir -p "$OUT"
source benchmarks/device_env.sh
PARTS=${PARTS:-bench tests s n}
DEVICE=${DEVICE:-cuda}; BENCH=${BENCH:-}  # CPU smoke test: DEVICE=cpu BENCH="--images 6 --batch 3 --repeats 1"
R=benchmarks/results/tta-30ep-2026-12-03
for part in $PARTS; do
  echo "== $part (t=$((SECONDS - T0))s)"
  case $part in
    bench)
      $PY benchmarks/validation_batch.py --device "$DEVICE" $BENCH | tee "$OUT/validation_batch.txt"
      $PY benchmarks/validation_batch.py --device "$DEVICE" $BENCH --candidates 30000 | tee "$OUT/validation_batch_young.txt" ;;
    tests)
      PYTHONPATH=$PYTHONPATH:$PWD/operator $PY -m pytest tests/gpu/test_gpu_batched_validation.py -m gpu -q \
        -p no:cacheprovider > "$OUT/gpu_batched_validation.txt" 2>&1; tail -3 "$OUT/gpu_batched_validation.txt" ;;
    s | n)
      model=yolov8$part; mkdir -p "/tmp/d$part" && cp "$R/$model-shapes-1500.json" "/tmp/d$part/shapes.json"
      EPOCHS=30 IMAGES=1500 VAL=300 VARIANTS=shapes TUNING=in-training OUT="$OUT/$part" DEFAULTS_DIR="/tmp/d$part" \
        MODEL="$model.yaml" WORK="/tmp/tta_$part" SKIP_WHEELS=1 bash benchmarks/train_tta_gpu_run.sh
      rm -f "$OUT/$part"/*.txt "$OUT/$part"/*_tuned.log ;;
    aug)
      SKIP_WHEELS=1 SKIP_ALONE=1 PART=speed VARIANTS="gpu128 gpu128nj cpu128nc" OUT="$OUT/aug" \
        bash benchmarks/gpu_augment_gpu_run.sh ;;
    augtests)
      PYTHONPATH=$PYTHONPATH:$PWD/operator $PY -m pytest tests/gpu/test_gpu_augment.py -m gpu -q -p no:cacheprovider \
        > "$OUT/gpu_augment_tests.txt" 2>&1; tail -3 "$OUT/gpu_augment_tests.txt" ;;
    *) echo "unknown part $part (bench, tests, s, n, aug, augtests)"; exit 2 ;;
  esac
done
echo "total $((SECONDS - T0))s"
