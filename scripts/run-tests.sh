#!/usr/bin/env bash
# Runs every suite and fails on anything but a clean pass: pytest's "no tests collected" (exit 5) is a failure
# here, and skipped tests are listed with their reasons (-ra) plus a per-suite count (tests/conftest.py).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export YOLO_OFFLINE=1
.venv/bin/python -m pytest tests -ra -p no:cacheprovider "$@"
status=$?
if [[ $status -eq 5 ]]; then
  echo "run-tests: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $status
