set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
mkdir -p $OUT/t
S=$SECONDS
PYTHONPATH=/tmp/site:$PWD/workloads:$PWD/tests:$PWD/operator YOLO_OFFLINE=1 YOLO_CONFIG_DIR=/tmp/ycfg timeout 150 python3 -m pytest tests/gpu/test_gpu_host_waits.py -q -p no:cacheprovider --tb=long > $OUT/t/test.log 2>&1
echo "tests rc $? in $((SECONDS-S))s"; grep -E "^E |passed|failed" $OUT/t/test.log | head -20
export PYTHONPATH=/tmp/site:$PWD/workloads
SKIP_WHEELS=1 SKIP_ALONE=1 STOP_AFTER=200 PART=speed DATA_VARIANT=crowded VARIANTS="gpu128 gpu128_pinned gpu128 gpu128_pinned" OUT=$OUT/crowded bash benchmarks/gpu_augment_gpu_run.sh 2>&1 | tail -15
echo "after crowded $((SECONDS-S))s"
SKIP_WHEELS=1 SKIP_ALONE=1 STOP_AFTER=150 PART=speed DATA_VARIANT=shapes VARIANTS="gpu128 gpu128_pinned" OUT=$OUT/shapes bash benchmarks/gpu_augment_gpu_run.sh 2>&1 | tail -10
echo "after shapes $((SECONDS-S))s"
