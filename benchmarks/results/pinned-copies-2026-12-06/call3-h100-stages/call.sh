set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/workloads
for SET in crowded shapes; do
  SKIP_WHEELS=1 SKIP_ALONE=1 TRACE=1 STOP_AFTER=200 PART=speed DATA_VARIANT=$SET VARIANTS="gpu128" OUT=$OUT/$SET bash benchmarks/gpu_augment_gpu_run.sh 2>&1 | grep -v "^rc=" | tail -4
  head -2 $OUT/$SET/gpu128.trace.txt; grep -o '"images_per_second": [0-9.]*' $OUT/$SET/gpu128.json
  gzip -9 $OUT/$SET/gpu128.trace.trace.json; ls -la $OUT/$SET/
done
