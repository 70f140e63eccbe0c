set -u
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
mkdir -p $OUT/t
S=$SECONDS
PYTHONPATH=/tmp/site:$PWD/workloads:$PWD/tests:$PWD/operator YOLO_OFFLINE=1 YOLO_CONFIG_DIR=/tmp/ycfg timeout 200 python3 -m pytest tests/gpu/test_gpu_pair_assign.py tests/gpu/test_gpu_host_waits.py -q -p no:cacheprovider --tb=short > $OUT/t/gpu-tests.log 2>&1
echo "tests rc $? in $((SECONDS-S))s"; grep -E "^E |passed,|passed in|failed|terminate|FATAL" $OUT/t/gpu-tests.log | head -20
export PYTHONPATH=/tmp/site:$PWD/workloads
SKIP_WHEELS=1 SKIP_ALONE=1 STOP_AFTER=200 PART=speed DATA_VARIANT=crowded VARIANTS="gpu128 gpu128_densecands gpu128 gpu128_densecands" OUT=$OUT/crowded bash benchmarks/gpu_augment_gpu_run.sh 2>&1 | grep -o '^== .*\|"images_per_second": [0-9.]*, "mean_gpu_util_percent": [0-9.]*, "mean_cpu_cores_busy": [0-9.]*'
echo "after crowded $((SECONDS-S))s"
SKIP_WHEELS=1 SKIP_ALONE=1 TRACE=1 PART=speed DATA_VARIANT=crowded VARIANTS="gpu128" OUT=$OUT/trace bash benchmarks/gpu_augment_gpu_run.sh > $OUT/trace.log 2>&1
sed -n "1,24p;/^GPU idle/,/^8 steps/p" $OUT/trace/gpu128.trace.txt | head -50
echo "after trace $((SECONDS-S))s"
rm -f $OUT/crowded/*.log $OUT/trace/*.log
