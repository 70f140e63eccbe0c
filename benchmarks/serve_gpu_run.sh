#!/usr/bin/env bash
# One device call for issue 5 (~4-5 min on an H100 with 16 CPUs): the serving pipeline alone (batch 128/256, one
# and two calling threads), then the HTTP server (Open Inference Protocol v2) under closed-loop load with 1 and 4
# worker processes at 1 and 8 images per request, then open loops at 50% and 80% of the best configuration's
# peak request rate (p50/p99 there). Prints a compact table; JSON under $OUT (pipeline.json, load_*.json,
# summary.json) plus server logs.
# Usage (device tool, repo root, .whl carried, PYTHONPATH set):   bash benchmarks/serve_gpu_run.sh
# CPU smoke test of the same logic (tiny sizes, seconds):         SERVE_SMOKE=1 OUT=/tmp/o bash benchmarks/serve_gpu_run.sh
# Knobs: WORKERS ("1 4"), KS ("1 8"), DUR (s per level), PROCS (load processes), MAXB, DELAY, FRACTIONS.
set -u
OUT=${OUT:-/tmp/serve_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 YOLO_OFFLINE=1 YOLO_CONFIG_DIR=${YOLO_CONFIG_DIR:-/tmp/ycfg}
PY=${PY:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
T0=$SECONDS
if [ "${SERVE_SMOKE:-0}" = 1 ]; then
  CONF=${CONF:-0.02}; DEVICE=cpu; HALF=false; IMGSZ=64; IMG=48x64; BATCHES=4,8; PSEC=1; WORKERS=${WORKERS:-"1 2"}; DUR=${DUR:-2}
  PROCS=${PROCS:-2}; MAXB=${MAXB:-8}; DELAY=${DELAY:-5}; CONC1=${CONC1:-4,8}; CONC8=${CONC8:-1,2}; PORT=${PORT:-18080}
  PIN_SERVER=""; PIN_CLIENT=""; READY_WAIT=120
else
  CONF=${CONF:-0.25}; DEVICE=cuda:0; HALF=true; IMGSZ=640; IMG=480x640; BATCHES=128,256; PSEC=3; WORKERS=${WORKERS:-"1 4"}; DUR=${DUR:-6}
  PROCS=${PROCS:-7}; MAXB=${MAXB:-128}; DELAY=${DELAY:-4}; CONC1=${CONC1:-128,384}; CONC8=${CONC8:-16,48}; PORT=${PORT:-8080}
  # Server processes on CPUs 0-8, the load generator on 9-15 (16 CPUs).
  PIN_SERVER="taskset -c ${SERVER_CPUS:-0-8}"; PIN_CLIENT="taskset -c ${CLIENT_CPUS:-9-15}"; READY_WAIT=120
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi
KS=${KS:-"1 8"}; FRACTIONS=${FRACTIONS:-0.5,0.8}
BUDGET=${BUDGET:-330}  # seconds: later steps are skipped (and said so) rather than overrun the device call
late() { if [ $((SECONDS - T0)) -gt "$BUDGET" ]; then echo "SKIPPED ($*): ${BUDGET}s budget spent"; return 0; fi; return 1; }
echo "date $(date -u +%FT%TZ)  cpus $(nproc)  workers [$WORKERS]  images/request [$KS]  ${DUR}s per level"

$PY - <<PYEOF || exit 1
from yolo_workloads.serve.synthetic import make_signal_weights
make_signal_weights("$OUT/w.pt", "yolov8n.yaml", seed=0, cls_bias=-9.5, cls_scale=100.0)
PYEOF
cat > "$OUT/serve.yaml" <<YEOF
model: {weights: $OUT/w.pt}
imgsz: $IMGSZ
half: $HALF
device: $DEVICE
conf: $CONF
max_batch_size: $MAXB
max_queue_delay_ms: $DELAY
max_queue_size: 8192
host: 127.0.0.1
port: $PORT
YEOF

echo "== pipeline alone"
timeout 150 $PY "$HERE/serve_pipeline_bench.py" pipeline --config "$OUT/serve.yaml" --batch-sizes "$BATCHES" \
  --seconds "$PSEC" --image-size "$IMG" --json "$OUT/pipeline.json" 2>&1 | grep -v -E '^\s*$' | tail -8

SPID=""
start_server() {  # $1 = workers; waits until every worker has logged that it is ready
  local w=$1 log="$OUT/server_w$1.log"
  late "server with $w workers" && return 1
  OMP_NUM_THREADS=2 $PIN_SERVER $PY -m yolo_workloads.cli serve --config "$OUT/serve.yaml" --workers "$w" > "$log" 2>&1 &
  SPID=$!
  local i
  for i in $(seq 1 "$READY_WAIT"); do
    [ "$(grep -c 'ready: model' "$log")" -ge "$w" ] && break
    kill -0 "$SPID" 2>/dev/null || { echo "server exited:"; tail -20 "$log"; return 1; }
    sleep 1
  done
  echo "== workers=$w: $(grep -c 'ready: model' "$log") ready after ${i}s"
}
stop_server() {
  [ -n "$SPID" ] || return 0
  curl -s "localhost:$PORT/metrics" | grep -E '^yolo_serve_(batch_size_(sum|count)|images_total)' | tr '\n' ' '; echo
  kill -TERM "$SPID"; timeout 90 tail --pid="$SPID" -f /dev/null; wait "$SPID"; echo "server exit code $?"; SPID=""
}
load() {  # $1 label, $2 k, then serve_load args
  local label=$1 k=$2; shift 2
  late "load $label k=$k $*" && return 0
  timeout 90 $PIN_CLIENT $PY "$HERE/serve_load.py" --url "http://127.0.0.1:$PORT" --endpoint v2 --processes "$PROCS" \
    --duration "$DUR" --image-size "$IMG" --images-per-request "$k" --label "$label" "$@" 2>&1 | grep -v '^payloads'
}

LAST_W=""
for W in $WORKERS; do
  start_server "$W" || { stop_server; continue; }
  for K in $KS; do
    if [ "$K" = 1 ]; then C=$CONC1; else C=$CONC8; fi
    load "w$W" "$K" --mode closed --concurrency "$C" --json "$OUT/load_w${W}_k${K}.json"
  done
  LAST_W=$W
  read -r BEST_LABEL BEST_K BEST_RPS <<< "$($PY "$HERE/serve_pipeline_bench.py" best --dir "$OUT")"
  # Keep the last server up when it is the best configuration (saves a restart), else stop it.
  if [ "$W" != "${WORKERS##* }" ] || [ "$BEST_LABEL" != "w$W" ]; then stop_server; fi
done

echo "== open loop at $FRACTIONS of the best closed-loop peak: $BEST_LABEL k=$BEST_K ${BEST_RPS} req/s (t=$((SECONDS - T0))s)"
if [ "$BEST_LABEL" != none ]; then
  if [ -z "$SPID" ]; then start_server "${BEST_LABEL#w}"; fi
  for F in ${FRACTIONS//,/ }; do
    RATE=$($PY -c "print(round($F * $BEST_RPS, 1))")
    load "$BEST_LABEL" "$BEST_K" --mode open --rate "$RATE" --peak-rps "$BEST_RPS" --duration "$((DUR + 4))" --json "$OUT/load_open_${F}.json"
  done
  stop_server
fi
$PY "$HERE/serve_pipeline_bench.py" summary --dir "$OUT"
echo "total ${SECONDS}s (t=$((SECONDS - T0))s since start)"
