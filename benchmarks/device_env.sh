# Sourced by the *_gpu_run.sh scripts: the device machine's Python set up the same way for each. The wheels carried
# in .whl (Ultralytics and the few packages the device image lacks) go to /tmp/site unless SKIP_WHEELS is set; the
# workloads come from this checkout; the run is offline. Prints the machine's line and starts the T0 clock.
PY=${PY:-python3}
if [ -d .whl ] && [ -z "${SKIP_WHEELS:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/workloads
fi
export PYTHONUNBUFFERED=1 YOLO_OFFLINE=1 YOLO_CONFIG_DIR=${YOLO_CONFIG_DIR:-/tmp/ycfg}
# WARM_PYC=1: bytecode for every package a training touches, compiled once into /tmp/pyc before any timed process
# (benchmarks/warm_pyc.py), as the workload image ships it. The device's Python has none (a profile on 2026-12-05
# counted 1,838 modules compiled from source in one training process). The timed processes then write no bytecode,
# so a later run never reads what an earlier one compiled: the defaults and the tuned run start alike.
if [ -n "${WARM_PYC:-}" ]; then
  export PYTHONPYCACHEPREFIX=/tmp/pyc
  env -u PYTHONDONTWRITEBYTECODE $PY benchmarks/warm_pyc.py || echo "WARM_PYC: benchmarks/warm_pyc.py failed"
  export PYTHONDONTWRITEBYTECODE=1
fi
T0=$SECONDS
echo "date $(date -u +%FT%TZ)  cpus $(nproc)  $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null)"
