"""`yolo-workload tune --config FILE`: measure training throughput and choose batch, workers, AMP and cache.

The result (a contract.TuneResult) goes to stdout, to the termination message (compact, under 4096 bytes) and,
with every trial's timings and the search bounds, to `output_dir/tune_result.json`. One progress line per trial
goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from yolo_workloads.contract import TuneConfig, TuneResult, encode_with_trials
from yolo_workloads.train.runtime import UserError, report_error, run_verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="path of the TuneConfig (YAML or JSON)")


def run(args: argparse.Namespace) -> int:
    return run_verb(args.config, TuneConfig, _tune)


def _tune(config: TuneConfig) -> int:
    from yolo_workloads import offline

    os.environ.setdefault("YOLO_VERBOSE", "False")  # Ultralytics' progress bars would bury the trial lines
    offline.prepare_environment()
    from yolo_workloads.datasets.validate import DatasetError, validate_dataset
    from yolo_workloads.train.runtime import prepare_data, write_termination

    yaml_path = prepare_data(config.data)
    start = time.monotonic()  # the budget covers measuring, not a one-off generation of the shapes set
    try:
        info = validate_dataset(yaml_path, config.task)
    except DatasetError as e:
        raise UserError(str(e)) from None
    offline.apply()
    from yolo_workloads.train.runtime import check_model_task

    check_model_task(config.task, config.model)
    from yolo_workloads.tune.study import RESULT_FILE, NoFeasibleSetting, run_study

    try:
        result, detail = run_study(config, yaml_path, info.train_images, start)
    except NoFeasibleSetting as e:
        report_error(config.termination_log, str(e))
        return 1
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    full = {"result": result.model_dump(mode="json"), **detail}
    (out / RESULT_FILE).write_text(json.dumps(full, indent=2) + "\n")
    text = compact(result)
    write_termination(config.termination_log, text)
    print(text)
    sys.stdout.flush()
    return 0


def compact(result: TuneResult) -> str:
    """The result as a termination message: all trials if they fit, else the best ones."""
    return encode_with_trials(result, lambda trimmed: trimmed)
