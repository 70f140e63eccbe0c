set -u
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
mkdir -p $OUT/t
for i in 1 2 3; do
S=$SECONDS
PYTHONPATH=/tmp/site:$PWD/workloads:$PWD/tests:$PWD/operator YOLO_OFFLINE=1 YOLO_CONFIG_DIR=/tmp/ycfg timeout 200 python3 -m pytest tests/gpu/test_gpu_pair_assign.py tests/gpu/test_gpu_host_waits.py -q -p no:cacheprovider --tb=short > $OUT/t/gpu-tests-$i.log 2>&1
echo "run $i: tests rc $? in $((SECONDS-S))s"; grep -E "^E |passed,|passed in|failed|terminate|FATAL" $OUT/t/gpu-tests-$i.log | head -10
done
