set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
mkdir -p $OUT/t
S=$SECONDS
PYTHONPATH=/tmp/site:$PWD/workloads:$PWD/tests:$PWD/operator YOLO_OFFLINE=1 YOLO_CONFIG_DIR=/tmp/ycfg timeout 170 python3 -m pytest tests/gpu/test_gpu_candidates.py tests/gpu/test_gpu_host_waits.py -q -p no:cacheprovider --tb=short > $OUT/t/gpu-tests.log 2>&1
echo "tests rc $? in $((SECONDS-S))s"; grep -E "^E |passed|failed|Error" $OUT/t/gpu-tests.log | head -20
export PYTHONPATH=/tmp/site:$PWD/workloads
SKIP_WHEELS=1 SKIP_ALONE=1 STOP_AFTER=170 PART=speed DATA_VARIANT=crowded VARIANTS="gpu128_owncands gpu128 gpu128_owncands gpu128" OUT=$OUT/crowded bash benchmarks/gpu_augment_gpu_run.sh 2>&1 | grep -o '^== .*\|^SKIPPED.*\|"images_per_second": [0-9.]*, "mean_gpu_util_percent": [0-9.]*, "mean_cpu_cores_busy": [0-9.]*\|"candidates_kernel": [a-z]*'
grep -h "candidates\|Triton\|triton" $OUT/crowded/*.log | sort | uniq -c | head -5
echo "after crowded $((SECONDS-S))s"
