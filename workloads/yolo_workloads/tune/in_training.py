"""Tuning inside the training process (TrainConfig.tuning): the trials are the training's own trainer.

A tuning pod of its own pays, before its first trial, much of what the training pod then pays again: the process
start, the imports, CUDA's start, the data set's scan and RAM-cache fill, the model's build and CUDA-graph capture;
and its trials' batches train nothing. Here each trial is a trainer built with training's arguments and measured by
the same meter (tune/measure.py); when no further trial would run and its setting is the best measured, it trains on,
its measured batches being training's first. Otherwise it stops, what it wrote into the run folder is removed, and
the next trial, or a new trainer with the best setting, reuses the data sets already built.

The choice is written to `tuning/tune_result.json` in the run folder before training goes on: a restarted pod that
finds a checkpoint resumes it with that choice instead of tuning again.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolo_workloads.contract import TrainConfig, TuneConfig, TuneResult
from yolo_workloads.tune.search import TrialSettings
from yolo_workloads.tune.study import RESULT_FILE, TrainOn, run_study_training
from yolo_workloads.tune.trajectory import rule_norm_batch, rule_warmup_batch

TUNING_DIR = "tuning"
"""Where in the run folder the choice and its trials are written."""


def tune_config(config: TrainConfig) -> TuneConfig:
    """The study's config: the training's model, data, epochs and paths with TrainConfig.tuning's search."""
    if config.tuning is None:
        raise ValueError("tune_config needs TrainConfig.tuning")
    return TuneConfig(
        **dict(config.tuning),
        model=config.model,
        task=config.task,
        data=config.data,
        imgsz=config.imgsz,
        gpus=config.gpus,
        output_dir=str(Path(config.output_dir) / TUNING_DIR),
        termination_log=config.termination_log,
        seed=config.seed,
        epochs=config.epochs,
        cuda_graphs=config.cuda_graphs,
        augmentation=config.augmentation,
    )


def chosen_config(config: TrainConfig, result: TuneResult) -> TrainConfig:
    """The training config with tuning's choice, as the operator renders a job tuned in a pod of its own: the
    augmentation the search chose (the config's own when it offered no choice); the batch rule's norm groups and
    warm-up batch for a tuned batch, none for the user's own (`search.fixed_batch`)."""
    if config.tuning is None:
        return config
    search, epochs, gpus = config.tuning.search, config.epochs, config.gpus
    return config.model_copy(
        update={
            "batch": result.batch,
            "workers": result.workers,
            "amp": result.amp,
            "cache": result.cache,
            "augmentation": config.augmentation if search.augmentation is None else (result.augmentation or "cpu"),
            "norm_batch": rule_norm_batch(search, result.batch, gpus),
            "warmup_batch": rule_warmup_batch(search, result.batch, epochs, gpus),
        }
    )


def recorded_choice(config: TrainConfig) -> TuneResult | None:
    """The choice an earlier pod of this run wrote before training went on (None: none, or unreadable)."""
    path = Path(config.output_dir) / TUNING_DIR / RESULT_FILE
    try:
        return TuneResult.model_validate(json.loads(path.read_text())["result"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass
class Tuned:
    """What tuning inside training ended with."""

    config: TrainConfig
    """The training config with the choice."""
    result: TuneResult
    trainer: Any
    """The trainer that went on as the training and trained to the end; None: train `config` anew."""


def tune_then_train(
    config: TrainConfig, yaml_path: Path, n_train: int, overrides: dict[str, Any], telemetry: Any
) -> Tuned:
    """Tune with trials that are the training's own trainer (`overrides`: training's Ultralytics arguments, and
    `telemetry` its callbacks); the chosen one trains on when it can."""
    tune = tune_config(config)
    out = Path(config.output_dir)

    def may_continue(settings: TrialSettings) -> bool:
        # a warm-up at another batch needs a trainer of that batch first
        return rule_warmup_batch(tune.search, settings.batch, config.epochs, config.gpus) is None

    def chosen(result: TuneResult, detail: dict[str, Any]) -> None:
        _write(tune, result, detail)
        _log(f"tune: batch={result.batch} workers={result.workers} amp={result.amp} cache={result.cache} "
             f"augmentation={result.augmentation or 'cpu'} chosen; its trial trains on")  # fmt: skip

    def stopped() -> None:
        clean(out)
        telemetry.forget_run()

    train_on = TrainOn(overrides, telemetry.register, stopped, may_continue, chosen)
    result, detail, trainer = run_study_training(tune, yaml_path, n_train, time.monotonic(), train_on)
    _write(tune, result, detail)  # also after training anew, or one that ended before its trial was measured
    return Tuned(chosen_config(config, result), result, trainer)


def clean(out: Path) -> None:
    """Removes what a stopped trial wrote into the run folder `out`: an epoch's checkpoints and results row."""
    (out / "results.csv").unlink(missing_ok=True)
    for checkpoint in (out / "weights").glob("*.pt"):
        checkpoint.unlink()


def shared_data_trainer(config: TrainConfig) -> type[Any]:
    """The trainer class training takes after tuning in this process: the task's, reusing the trials' data sets."""
    from yolo_workloads.tune.measure import shared_data_trainer_class

    return shared_data_trainer_class(config.task, config.augmentation)


def _write(tune: TuneConfig, result: TuneResult, detail: dict[str, Any]) -> None:
    out = Path(tune.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    full = {"result": result.model_dump(mode="json"), **detail}
    tmp = out / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(full, indent=2) + "\n")
    tmp.replace(out / RESULT_FILE)


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
