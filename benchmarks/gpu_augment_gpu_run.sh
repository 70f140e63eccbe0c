#!/usr/bin/env bash
# Device calls for issue 23 (GPU augmentation, train/gpu_augment.py), one H200 with 16 CPUs. PART selects:
#   PART=speed (~6 min): the augmentation alone at batch 16/64/128 plus the side-by-side grids; then the real trainer
#     (train_throughput.py's epoch phase, a 30-epoch schedule so mosaic is on, validation off, 3 epochs) on shapes
#     4,000 at 640: Ultralytics' CPU loader against augmentation gpu, batch 64 and 128, CUDA graphs on. VARIANTS picks
#     others: cpu16 cpu64 cpu128 gpu16 gpu64 gpu128 gpu256 (4 workers), gpu64g cpu64g (batch norm over groups of 16), gpu64gn gpu64n (the same, NCHW: channels-last off), gpu128w8 gpu256w8 (8 workers), each with
#     _waits appended: the step's per-step reads kept (train/host_waits.py not installed), or _whole: the loss's
#     assigner on the whole batch (train/grouped_assigner.py off), or _g<N>: on N groups, or _ownlists / _statlists: the
#     loss's lists through Ultralytics' nonzero / sized on the host (train/static_lists.py off / on; on by default), or _pinned / _ownwaits: the loss's small host tensors copied without a wait / with Ultralytics' waits (train/pinned_copies.py on / off; on by default), or _densenorm: the assigner's normalisation dense, as Ultralytics' (train/pair_normalize.py off; on by default), or _denseassign: its top-k and choice of labels dense (train/pair_assign.py off; on by default), or _densecands: its candidates by Ultralytics' dense comparisons (train/grid_candidates.py off; on by default); PROFILE=1 adds cProfile's, TRACE=1 PyTorch's (split by stage: benchmarks/trace_stages.py); without the RAM cache
#     (issue 23's JPEG decoding): gpu128nj (nvJPEG, 4 workers), gpu128cv / gpu128cv16 (OpenCV in 4 / 16 workers),
#     cpu128nc (Ultralytics' loader, 16 workers); DECODE=1 first times the decoders alone; MODEL=yolov8s;
#     CPUS=0-5 runs the trainer on those CPUs alone (taskset: a node with fewer CPUs per GPU). SKIP_ALONE=1 skips the first.
#     DATA_VARIANT=crowded: the trainer on the harder set (20 classes, many small, overlapping objects) instead.
#   PART=accuracy (~8 min): 30 epochs of yolov8n on shapes 2,000/400 through `yolo-workload train` (train_tta.py):
#     Ultralytics' defaults, then Ultralytics' CPU loader (workers 16) and the GPU path (workers 4) at the same batch
#     (BATCH, 64), RAM cache, CUDA graphs, seed 0: equal-epoch accuracy and time to the defaults' final mAP.
#   PART=seeds (~8 min): accuracy only, several seeds side by side (SEEDS, "0 1"; VARIANT, crowded; 2,000/400, 30
#     epochs): per seed, batch 16 with the defaults' trajectory (CUDA graphs, workers 6, RAM cache: the same
#     optimizer steps as Ultralytics' defaults) and then the GPU path at BATCH (64, workers 4). The seeds' runs share
#     the machine, so their clocks are not speeds; the final mAP50-95 per epoch is what this part is for. FIRST and
#     SECOND replace the two runs' settings (train_tta.py's --baseline and --fixed); with REUSE_PREFIX the first run
#     is an earlier call's, read from ${REUSE_PREFIX}<seed>.json (--defaults-json), and only the second runs. The
#     reports of 2026-12-03 are in benchmarks/results/crowded-30ep-2026-12-03 (call1-seed<S>.json: batch 16 with
#     Ultralytics' loader first): REUSE_PREFIX=benchmarks/results/crowded-30ep-2026-12-03/call1-seed
#   PART=rules (~7 min): batch rules side by side against batch 16 (the first run of REUSE_PREFIX<seed>.json, as
#     PART=seeds): RULES lists name=batch_rule/settings (train_tta.py's --batch-rule and --fixed), each run for each of
#     SEEDS at once; e.g. g64=defaults/batch=64,norm_batch=16,workers=3,cache=ram,augmentation=gpu (batch norm over
#     groups of 16, train/norm_groups.py). Accuracy only: the runs share the machine.
# Usage (device tool, repo root, .whl carried):  PART=speed bash benchmarks/gpu_augment_gpu_run.sh
set -u
OUT=${OUT:-/tmp/gaug_out}; mkdir -p "$OUT"
source benchmarks/device_env.sh
accuracy_data() {  # PART=seeds and rules: the set (VARIANT, ACC_IMAGES, ACC_VAL at 640) generated once under $D
  V=${VARIANT:-crowded}; N=${ACC_IMAGES:-2000}; VAL=${ACC_VAL:-400}; DATA_DIR=data-$V-$N-640
  $PY -c "
from pathlib import Path
from yolo_workloads.datasets.shapes import ensure_shapes
ensure_shapes(Path('$D/$DATA_DIR'), n=$N, imgsz=640, val=$VAL, seed=0, variant='$V')"
  echo "data ready (t=$((SECONDS - T0))s)"
}
case ${PART:-speed} in
  speed)
    [ -n "${SKIP_ALONE:-}" ] || $PY benchmarks/gpu_augment_bench.py --out "$OUT/alone" 2>&1 | grep -v "^\s*$" | tail -5
    [ -z "${DECODE:-}" ] || $PY benchmarks/gpu_decode_bench.py --out /tmp/gaug/decode 2>&1 | tail -2
    DATA=$($PY -c "
from pathlib import Path
from yolo_workloads.datasets.shapes import ensure_shapes
print(ensure_shapes(Path('/tmp/gaug/${DATA_VARIANT:-shapes}'), n=${IMAGES:-4000}, imgsz=640, val=8, seed=0, variant='${DATA_VARIANT:-shapes}'))")
    echo "data ready (t=$((SECONDS - T0))s)"
    for V in ${VARIANTS:-cpu64 gpu64 gpu128 cpu128}; do
      if [ $((SECONDS - T0)) -gt "${STOP_AFTER:-480}" ]; then echo "SKIPPED $V"; continue; fi
      waits=""; [ "${V%_waits}" != "$V" ] && waits="--host-waits true"  # <variant>_waits: Ultralytics' own reads
      [ "${V%_whole}" != "$V" ] && waits="--assigner-groups 1"  # <variant>_whole: the loss's assigner whole
      [ "${V%_g[0-9]*}" != "$V" ] && waits="--assigner-groups ${V##*_g}"  # <variant>_g<N>: on N groups
      [ "${V%_ownlists}" != "$V" ] && waits="--static-lists false"  # <variant>_ownlists: the loss's nonzero lists
      [ "${V%_statlists}" != "$V" ] && waits="--static-lists true"  # <variant>_statlists: its lists sized on the host
      [ "${V%_pinned}" != "$V" ] && waits="--pinned-copies true"  # <variant>_pinned: its host tensors without a wait
      [ "${V%_ownwaits}" != "$V" ] && waits="--pinned-copies false"  # <variant>_ownwaits: Ultralytics' copies
      [ "${V%_densenorm}" != "$V" ] && waits="--pair-normalize false"  # <variant>_densenorm: the dense normalisation
      [ "${V%_denseassign}" != "$V" ] && waits="--pair-assign false"  # <variant>_denseassign: the dense top-k and choice
      [ "${V%_densecands}" != "$V" ] && waits="--grid-candidates false"  # <variant>_densecands: the dense candidates' mask
      prof=""; [ -n "${PROFILE:-}" ] && prof="--profile $OUT/$V.prof.txt"  # PROFILE=1: cProfile of the last epoch
      [ -n "${TRACE:-}" ] && prof="$prof --trace $OUT/$V.trace.txt"  # TRACE=1: PyTorch's profiler over 8 steps
      case ${V%_*} in
        cpu16) opts="--batch 16 --workers 8 --cache ram --augmentation cpu" ;;
        cpu64) opts="--batch 64 --workers 16 --cache ram --augmentation cpu" ;;
        cpu128) opts="--batch 128 --workers 16 --cache ram --augmentation cpu" ;;
        gpu64) opts="--batch 64 --workers 4 --cache ram --augmentation gpu" ;;
        gpu64g) opts="--batch 64 --workers 4 --cache ram --augmentation gpu --norm-batch 16" ;;  # norm groups of 16
        gpu64gn) opts="--batch 64 --workers 4 --cache ram --augmentation gpu --norm-batch 16 --channels-last false" ;;
        gpu64n) opts="--batch 64 --workers 4 --cache ram --augmentation gpu --channels-last false" ;;
        cpu64g) opts="--batch 64 --workers 16 --cache ram --augmentation cpu --norm-batch 16" ;;
        gpu128) opts="--batch 128 --workers 4 --cache ram --augmentation gpu" ;;
        gpu16) opts="--batch 16 --workers 4 --cache ram --augmentation gpu" ;;
        gpu256) opts="--batch 256 --workers 4 --cache ram --augmentation gpu" ;;
        gpu128w8) opts="--batch 128 --workers 8 --cache ram --augmentation gpu" ;;
        gpu256w8) opts="--batch 256 --workers 8 --cache ram --augmentation gpu" ;;
        gpu128nj) opts="--batch 128 --workers 4 --cache none --augmentation gpu" ;;  # JPEGs decoded by nvJPEG
        gpu128cv) opts="--batch 128 --workers 4 --cache none --augmentation gpu --gpu-decode false" ;;  # by OpenCV
        gpu128cv16) opts="--batch 128 --workers 16 --cache none --augmentation gpu --gpu-decode false" ;;
        cpu128nc) opts="--batch 128 --workers 16 --cache none --augmentation cpu" ;;
      esac
      echo "== $V (t=$((SECONDS - T0))s)"
      timeout "${VARIANT_LIMIT:-150}" ${CPUS:+taskset -c $CPUS} $PY benchmarks/train_throughput.py epoch --out /tmp/gaug/runs --data "$DATA" \
        --imgsz 640 --epochs 3 --model "${MODEL:-yolov8n}" --cuda-graphs true $opts $waits $prof > "$OUT/$V.json" 2> "$OUT/$V.log"
      echo "rc=$? $(tail -c 700 "$OUT/$V.json")"
    done ;;
  accuracy)
    # one: Ultralytics' defaults (batch 16, the CPU loader, eager) against the GPU path at BATCH; two: the CPU path
    # at BATCH, the defaults reused from one (same machine, data and seed): three rows, equal epochs.
    for RUN in gpu cpu; do
      W=$([ $RUN = gpu ] && echo 4 || echo 16)
      REUSE=$([ $RUN = cpu ] && echo "--defaults-json $OUT/tta-gpu.json" || true)
      echo "== $RUN (t=$((SECONDS - T0))s)"
      timeout "${RUN_LIMIT:-400}" $PY benchmarks/train_tta.py run --out "/tmp/gaug/tta-$RUN" --variant "${VARIANT:-shapes}" \
        --images "${ACC_IMAGES:-2000}" --val "${ACC_VAL:-400}" --epochs "${EPOCHS:-30}" --json "$OUT/tta-$RUN.json" \
        $REUSE --fixed "batch=${BATCH:-64},workers=$W,cache=ram,augmentation=$RUN" > "$OUT/tta-$RUN.log" 2>&1
      echo "rc=$?"; grep -A4 '^| run' "$OUT/tta-$RUN.log" | tail -3
    done ;;
  seeds)
    D=/tmp/gaug/seeds; accuracy_data
    for S in ${SEEDS:-0 1}; do
      rm -rf "$D/s$S"; mkdir -p "$D/s$S" && ln -sfn "$D/$DATA_DIR" "$D/s$S/$DATA_DIR"
      REUSE=$([ -n "${REUSE_PREFIX:-}" ] && echo "--defaults-json ${REUSE_PREFIX}$S.json" || true)
      timeout "${RUN_LIMIT:-540}" $PY benchmarks/train_tta.py run --out "$D/s$S" --variant "$V" --images "$N" $REUSE \
        --val "$VAL" --epochs "${EPOCHS:-30}" --seed "$S" --json "$OUT/seed$S.json" \
        --baseline "${FIRST:-cuda_graphs=true,workers=6,cache=ram}" \
        --fixed "${SECOND:-batch=${BATCH:-64},workers=4,cache=ram,augmentation=gpu}" > "$OUT/seed$S.log" 2>&1 &
      sleep "${STAGGER:-20}"  # the label cache is written by the first run alone
    done
    wait
    for S in ${SEEDS:-0 1}; do
      echo "== seed $S"; grep -A4 '^| run' "$OUT/seed$S.log" | tail -3; tail -3 "$OUT/seed$S.log"
      for R in defaults tuned; do cp "$D/s$S/$R/results.csv" "$OUT/seed$S-$R.csv" 2>/dev/null; done  # a timed-out run's epochs too
    done ;;
  rules)
    D=/tmp/gaug/rules; accuracy_data
    for R in $RULES; do
      NAME=${R%%=*}; REST=${R#*=}
      for S in ${SEEDS:-0 1}; do
        rm -rf "$D/$NAME-s$S"; mkdir -p "$D/$NAME-s$S" && ln -sfn "$D/$DATA_DIR" "$D/$NAME-s$S/$DATA_DIR"
        timeout "${RUN_LIMIT:-540}" $PY benchmarks/train_tta.py run --out "$D/$NAME-s$S" --variant "$V" --images "$N" \
          --val "$VAL" --epochs "${EPOCHS:-30}" --seed "$S" --defaults-json "${REUSE_PREFIX}$S.json" \
          --batch-rule "${REST%%/*}" --fixed "${REST#*/}" --json "$OUT/$NAME-seed$S.json" > "$OUT/$NAME-seed$S.log" 2>&1 &
        sleep "${STAGGER:-5}"
      done
    done
    wait
    for R in $RULES; do for S in ${SEEDS:-0 1}; do
      echo "== ${R%%=*} seed $S"; grep -A4 '^| run' "$OUT/${R%%=*}-seed$S.log" | tail -1; tail -2 "$OUT/${R%%=*}-seed$S.log"
      cp "$D/${R%%=*}-s$S/tuned/results.csv" "$OUT/${R%%=*}-seed$S.csv" 2>/dev/null
      grep -h "batch norm over" "$D/${R%%=*}-s$S/tuned.log" 2>/dev/null | sort | uniq -c | head -3
    done; done ;;
esac
echo "total $((SECONDS - T0))s"
