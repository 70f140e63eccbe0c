#!/usr/bin/env bash
# One device call for issue 5: bench (forward / serving pipeline / Ultralytics predict), then the HTTP server
# under load from benchmarks/serve_load.py on the same machine, for each worker count in $WORKERS.
# Usage (device tool, repo root, .whl carried): bash benchmarks/serve_gpu_run.sh      (writes under $OUT)
# Knobs: MODES (bench modes), BENCH_BATCHES, WORKERS (e.g. "1 3"), CONC, DUR, PROCS, PYSPY=1 (profile worker 1).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 YOLO_OFFLINE=1 YOLO_CONFIG_DIR=/tmp/ycfg
PY=python3
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
nproc
CONF=${CONF:-0.25}; BIAS=${BIAS:--9.5}; MAXB=${MAXB:-128}; DELAY=${DELAY:-4}; CONC=${CONC:-64,256,512,1024}
DUR=${DUR:-8}; PROCS=${PROCS:-10}; SERVER_CPUS=${SERVER_CPUS:-0-5}; CLIENT_CPUS=${CLIENT_CPUS:-6-15}
MODES=${MODES:-forward,pipeline}; BENCH_BATCHES=${BENCH_BATCHES:-1,32,128,256}; WORKERS=${WORKERS:-1}
$PY - <<PYEOF
from yolo_workloads.serve.synthetic import make_signal_weights
make_signal_weights("/tmp/w.pt", "yolov8n.yaml", seed=0, cls_bias=$BIAS, cls_scale=100.0)
PYEOF
cat > /tmp/serve.yaml <<YEOF
model: {weights: /tmp/w.pt}
imgsz: 640
half: true
conf: $CONF
max_batch_size: $MAXB
max_queue_delay_ms: $DELAY
max_queue_size: 4096
host: 127.0.0.1
port: 8080
YEOF
$PY - <<'PYEOF' 2>&1
import time, numpy as np, torch
from pathlib import Path
from yolo_workloads.serve.cli import load_config
from yolo_workloads.serve.pipeline import Detector, EncodedImage
from yolo_workloads.serve import synthetic
d = Detector(load_config(Path("/tmp/serve.yaml"), {}))
rng = np.random.default_rng(0)
items = [EncodedImage(synthetic.encode(synthetic.scene(480, 640, rng)), "jpeg") for _ in range(64)]
print("mean detections per image", np.mean([len(r.scores) for r in d.run(items)]))
items = items * 2  # 128
def t():
    torch.cuda.synchronize(); return time.perf_counter()
for rep in range(3):
    with torch.inference_mode():
        t0 = t(); dec = d.decode(items); t1 = t(); b = d.letterbox(dec); t2 = t(); p = d.forward(b); t3 = t()
        cand = int((p[:, 4:].max(1).values > d.conf).sum()); rows, kb = d.nms(p); t4 = t(); d.run(items); t5 = t()
    print(f"batch 128 stages ms: decode {1e3*(t1-t0):.1f} letterbox {1e3*(t2-t1):.1f} forward {1e3*(t3-t2):.1f} "
          f"nms {1e3*(t4-t3):.1f} (candidates/img {cand/128:.0f}) | whole run() {1e3*(t5-t4):.1f}")
PYEOF
if [ -n "$MODES" ]; then
  timeout 200 $PY -m yolo_workloads.cli bench --config /tmp/serve.yaml --batch-sizes "$BENCH_BATCHES" --modes "$MODES" \
    --seconds 3 --json "$OUT/bench.json" 2>&1 | grep -v '^{'
fi
for W in $WORKERS; do
  taskset -c "$SERVER_CPUS" $PY -m yolo_workloads.cli serve --config /tmp/serve.yaml --workers "$W" > "$OUT/server_w$W.log" 2>&1 &
  SPID=$!
  for i in $(seq 1 150); do curl -sf localhost:8080/v2/health/ready >/dev/null && break; sleep 1; done
  sleep $((W > 1 ? 15 : 0))  # every worker loaded (ready answers for the worker that took the probe)
  echo "== workers=$W ready after ${i}s: $(curl -s localhost:8080/v2/health/ready)"
  if [ "${PYSPY:-0}" = 1 ] && [ "$W" = 1 ]; then
    (sleep 2; timeout 20 /tmp/site/bin/py-spy record -d 8 -r 200 --nonblocking --threads -f raw -o "$OUT/pyspy_w1.txt" --pid $SPID \
      >/dev/null 2>&1 || echo "py-spy failed") &
  fi
  taskset -c "$CLIENT_CPUS" timeout 300 $PY benchmarks/serve_load.py --url http://127.0.0.1:8080 --endpoint v2 --sweep \
    --concurrency "$CONC" --duration "$DUR" --processes "$PROCS" --json "$OUT/load_w$W.json" 2>&1
  curl -s localhost:8080/metrics | grep -E '^yolo_serve_(batch_size_(sum|count)|images_total|gpu_)'
  kill -TERM $SPID; wait $SPID; echo "server exit code $?"
done
