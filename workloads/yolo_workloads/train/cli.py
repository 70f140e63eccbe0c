"""`yolo-workload train --config FILE`: train with the chosen settings, checkpointing and resuming.

Order matters: the config and the data set are checked before torch touches a GPU, so a user's mistake ends in
seconds with a message naming the file and line (exit code 2, also in the termination message). A restarted pod
finds `output_dir/weights/last.pt` and resumes from it; a pod restarted after training completed only reports.

With `warmup_batch` (tuning's `defaults_then_nbs` rule) training runs its warm-up epochs at that batch, stops at the
end of the last one (its checkpoint just written) and resumes from it at `batch`: Ultralytics lets a resumed run
change its batch, and recomputes the accumulation for it, so warm-up takes the defaults' optimizer steps and the
rest takes the same steps with fewer, larger batches.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolo_workloads.contract import (
    RESERVED_TRAIN_ARGS,
    ULTRALYTICS_METRIC_KEYS,
    FinalMetrics,
    TrainConfig,
    TrainSummary,
    TuneResult,
    encode_result,
    encode_with_trials,
)
from yolo_workloads.train.runtime import UserError, report_error, run_verb

SUMMARY_FILE = "summary.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="path of the TrainConfig (YAML or JSON)")


def run(args: argparse.Namespace) -> int:
    return run_verb(args.config, TrainConfig, _train)


def _refuse_reserved_args(config: TrainConfig) -> None:
    bad = sorted(RESERVED_TRAIN_ARGS & config.extra_args.keys())
    if bad:
        raise UserError(f"extra_args: {bad} are set by the operator and cannot be passed through")


def _train(config: TrainConfig) -> int:
    from yolo_workloads import offline

    _refuse_reserved_args(config)
    offline.prepare_environment()
    from yolo_workloads.datasets.validate import DatasetError, validate_dataset
    from yolo_workloads.train.runtime import prepare_data

    yaml_path = prepare_data(config.data)
    try:
        info = validate_dataset(yaml_path, config.task)
    except DatasetError as e:
        raise UserError(str(e)) from None
    print(f"data set {yaml_path}: {info.train_images} train / {info.val_images} val images", file=sys.stderr)

    out = Path(config.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if (out / SUMMARY_FILE).exists():  # a restart after completion: report again, train nothing
        return _finish(config, TrainSummary.model_validate_json((out / SUMMARY_FILE).read_text()))

    import torch

    from yolo_workloads.train.metrics import TrainTelemetry, read_throughput
    from yolo_workloads.train.runtime import check_model_task, device_string

    check_model_task(config.task, config.model)

    last = out / "weights" / "last.pt"
    epoch = _checkpoint_epoch(last, torch)
    if epoch == -1:  # training finished, only the summary was lost
        return _finish(config, _summary(config, out, None, resumed=True))
    device = device_string(config.gpus)
    _prepare_host(config, yaml_path, device)
    telemetry = TrainTelemetry(config.metrics_port, str(out), config.task)
    tuned: _TunedHere | None = None
    if config.tuning is not None:
        settled = _tune_here(config, out, epoch, yaml_path, info.train_images, device, telemetry)
        if isinstance(settled, int):
            return settled  # no feasible setting (reported)
        tuned, config, epoch = settled, settled.config, settled.epoch
        if tuned.trainer is not None:  # the chosen trial trained on to the end
            summary = _summary(config, out, tuned.trainer, resumed=False)
            summary = summary.model_copy(update={"images_per_second": read_throughput(out)})
            return _finish(config, summary, tuned.result)
    shared_data = tuned.shared_data if tuned is not None else None
    resumed = epoch is not None
    overrides = _overrides(config, yaml_path, device, out)
    if resumed:
        overrides["resume"] = str(last)
        print(f"resuming from {last} (epoch {(epoch or 0) + 1} done)", file=sys.stderr)
    switch = _warmup_switch(config, epoch)
    if switch is not None:
        print(f"warm-up: epochs 1-{switch} at batch {config.warmup_batch}, then batch {config.batch}", file=sys.stderr)
        warmup = {**overrides, "batch": config.warmup_batch}
        _run_trainer(config, out, warmup, telemetry, stop_after=switch, cls=shared_data)
        overrides["resume"] = str(last)  # the warm-up's last checkpoint, continued at the tuned batch
    trainer = _run_trainer(config, out, overrides, telemetry, cls=shared_data)
    summary = _summary(config, out, trainer, resumed=resumed)
    summary = summary.model_copy(update={"images_per_second": read_throughput(out)})
    return _finish(config, summary, tuned.result if tuned is not None else None)


def _prepare_host(config: TrainConfig, yaml_path: Path, device: str) -> None:
    """torch's threads on a CPU within the CPU budget; a RAM cache's images decoded while the trainer is built
    (train/images_ahead.py; tuning starts that for the trial that caches, tune/measure.py); the GPU augmentation's
    kernel compiled while the trainer is built (a fresh pod's Triton compile, 5.8 s for yolov8s on the H100, left
    the first batch waiting 2.8 s when it started with the training set)."""
    import torch

    from yolo_workloads import system
    from yolo_workloads.train import images_ahead
    from yolo_workloads.train.runtime import use_the_cpu_budget

    if config.tuning is None and config.cache == "ram":
        images_ahead.for_ram_cache(yaml_path, config.task, device)
    if device == "0" and _may_augment_on_gpu(config):  # the kernel's compile beside the rest of set-up, not after it
        from yolo_workloads.train import gpu_augment, gpu_augment_fused

        hsv = gpu_augment.recolours(config.extra_args)
        gpu_augment_fused.compile_ahead(torch.device("cuda", 0), config.imgsz, hsv)
    threads = use_the_cpu_budget(device, system.cpu_budget())
    if threads is not None:
        print(f"training on the CPU with {threads} torch threads (the CPU budget)", file=sys.stderr)


def _may_augment_on_gpu(config: TrainConfig) -> bool:
    """Whether this training augments on the GPU, or its tuning may choose to."""
    offered = config.tuning.search.augmentation if config.tuning is not None else None
    return config.augmentation == "gpu" or "gpu" in (offered or ())


@dataclass
class _TunedHere:
    """TrainConfig.tuning settled: the config with the choice, the epoch to resume (None: start), and the
    trainer that already trained (None: train now, with `shared_data`, the trainer class reusing the trials' data)."""

    config: TrainConfig
    result: TuneResult
    epoch: int | None
    trainer: Any = None
    shared_data: type[Any] | None = None


def _tune_here(
    config: TrainConfig, out: Path, epoch: int | None, yaml_path: Path, n_train: int, device: str, telemetry: Any
) -> _TunedHere | int:
    """Tuning inside this process (tune/in_training.py), or the choice an earlier pod of this run recorded beside
    its checkpoint; an exit code when no setting is feasible."""
    from yolo_workloads.tune import in_training
    from yolo_workloads.tune.study import NoFeasibleSetting

    recorded = in_training.recorded_choice(config) if epoch is not None else None
    if recorded is not None:
        return _TunedHere(in_training.chosen_config(config, recorded), recorded, epoch)
    if epoch is not None:  # a checkpoint without a recorded choice: a trial's, written before tuning chose
        print("weights/last.pt was written by a tuning trial; tuning again", file=sys.stderr)
        in_training.clean(out)
    try:
        overrides = _overrides(config, yaml_path, device, out)
        tuned = in_training.tune_then_train(config, yaml_path, n_train, overrides, telemetry)
    except NoFeasibleSetting as e:
        report_error(config.termination_log, str(e))
        return 1
    shared = None if tuned.trainer is not None else in_training.shared_data_trainer(tuned.config)
    return _TunedHere(tuned.config, tuned.result, None, tuned.trainer, shared)


def _overrides(config: TrainConfig, yaml_path: Path, device: str, out: Path) -> dict[str, Any]:
    """Ultralytics' arguments for this training (without `resume`)."""
    from yolo_workloads.train.runtime import ultralytics_cache

    return {
        # Ultralytics defaults to deterministic=True, which pins cuDNN to deterministic kernels and costs speed;
        # reproducible runs ask for it in extraArgs.
        "deterministic": False,
        **config.extra_args,
        "model": config.model.ref,
        "data": str(yaml_path),
        "epochs": config.epochs,
        "patience": config.patience,
        "imgsz": config.imgsz,
        "batch": config.batch,
        "workers": config.workers,
        "amp": config.amp,
        "cache": ultralytics_cache(config.cache),
        "device": device,
        "optimizer": config.optimizer,
        "lr0": config.lr0,
        "seed": config.seed,
        "save_period": config.save_period,
        "project": str(out.parent),
        "name": out.name,
        "exist_ok": True,
        "save_dir": str(out),
    }


class _WarmupDone(Exception):
    """Raised after the last warm-up epoch's checkpoint is written, to resume at the tuned batch."""


def _warmup_switch(config: TrainConfig, epoch: int | None) -> int | None:
    """Epochs to run at `warmup_batch` first (None: none left, or no warm-up batch)."""
    from yolo_workloads.tune.trajectory import switch_epoch

    if config.warmup_batch is None or config.warmup_batch == config.batch or config.gpus > 1:
        return None
    warmup = config.extra_args.get("warmup_epochs", 3.0)
    switch = switch_epoch(float(warmup) if isinstance(warmup, int | float) else 3.0, config.epochs)
    done = 0 if epoch is None else epoch + 1
    return switch if done < switch else None


def _run_trainer(
    config: TrainConfig,
    out: Path,
    overrides: dict[str, Any],
    telemetry: Any,
    stop_after: int | None = None,
    cls: type[Any] | None = None,
) -> Any:
    """One Ultralytics training with the task's trainer (`cls`: a subclass of it); with `stop_after`, it ends once
    that many epochs are done and checkpointed."""
    import gc

    import torch
    from ultralytics.utils import DEFAULT_CFG_DICT

    from yolo_workloads.train import host_waits, norm_groups
    from yolo_workloads.train.trainer import trainer_class

    cfg = {**DEFAULT_CFG_DICT, "save_dir": str(out)}  # save_dir is no default key; declare it to pass alignment
    trainer = (cls or trainer_class(config.task, config.augmentation))(cfg=cfg, overrides=overrides)
    telemetry.register(trainer)
    host_waits.install_with_graphs(trainer, config.cuda_graphs, str(overrides.get("device", "")), config.gpus)
    norm_groups.install_when_usable(trainer, config.norm_batch, int(overrides["batch"]), config.gpus)
    if stop_after is None:
        trainer.train()
        return trainer

    def stop(t: Any) -> None:  # on_fit_epoch_end runs after the epoch's checkpoint is saved
        if int(t.epoch) + 1 >= stop_after:
            raise _WarmupDone

    trainer.add_callback("on_fit_epoch_end", stop)
    try:
        trainer.train()
    except _WarmupDone:
        loader = getattr(trainer, "train_loader", None)
        if loader is not None and hasattr(loader, "close"):
            loader.close()  # stop its workers before the next trainer forks its own
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return None


def _checkpoint_epoch(last: Path, torch: Any) -> int | None:
    """The epoch recorded in last.pt (-1 once training finished); None when there is nothing to resume."""
    if not last.is_file():
        return None
    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
        return int(ckpt.get("epoch", -1))
    except Exception as e:  # unreadable: start over rather than crash-loop
        print(f"warning: {last} is unreadable ({e}); starting a new run", file=sys.stderr)
        last.rename(last.with_suffix(".pt.unreadable"))
        return None


def _summary(config: TrainConfig, out: Path, trainer: Any, resumed: bool) -> TrainSummary:
    rows = _results(out)
    source: dict[str, Any] = dict(rows[-1]) if rows else {}
    metrics = getattr(trainer, "metrics", None) or {}
    if any(key in metrics for key in ULTRALYTICS_METRIC_KEYS.values()):  # final evaluation of best.pt (one process)
        source = dict(metrics)
    return TrainSummary(
        best_weights=str(out / "weights" / "best.pt"),
        last_weights=str(out / "weights" / "last.pt"),
        results_dir=str(out),
        epochs_completed=len(rows),
        task=config.task,
        metrics=FinalMetrics.from_ultralytics({key: _number(value) for key, value in source.items()}),
        resumed=resumed,
    )


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _results(out: Path) -> list[dict[str, str]]:
    """results.csv, one row per epoch. A run stopped after an epoch's row was written but before its checkpoint
    repeats that epoch when resumed, and Ultralytics appends a second row for it: the later row wins."""
    path = out / "results.csv"
    if not path.is_file():
        return []
    with path.open() as f:
        rows = [{k.strip(): v.strip() for k, v in row.items() if k} for row in csv.DictReader(f)]
    by_epoch: dict[str, dict[str, str]] = {}
    for index, row in enumerate(rows):
        by_epoch[row.get("epoch") or str(index)] = row
    return list(by_epoch.values())


def _finish(config: TrainConfig, summary: TrainSummary, tuning: TuneResult | None = None) -> int:
    """The summary (with what tuning inside training chose) to the run folder, the termination message, stdout."""
    from yolo_workloads.train.runtime import write_termination

    if tuning is not None:
        summary = summary.model_copy(update={"tuning": tuning})
        text = encode_with_trials(tuning, lambda trimmed: summary.model_copy(update={"tuning": trimmed}))
    else:
        text = encode_result(summary)
    out = Path(config.output_dir)
    (out / SUMMARY_FILE).write_text(json.dumps(summary.model_dump(mode="json"), indent=2) + "\n")
    write_termination(config.termination_log, text)
    print(text)
    return 0
