"""The tuning study: Optuna's TPE sampler over batch, workers, AMP and cache, each trial a real measurement.

One process runs every trial, so the data set is scanned (and RAM-cached) once and CUDA is initialised once. The
time budget covers the whole phase: a trial is started only when the slowest trial so far still fits, and a
running trial stops measuring at the deadline. Trials that fail (out of memory, dataloader crash) are recorded as
infeasible and the study goes on; slow ones are pruned by the median rule on their running images/s.

One trial is a few seconds of a noisy process (worker scheduling, page cache, a neighbour on the host), so the
search ends early enough to measure the two best settings again; the choice is by the median of each setting's
measurements, and the reported figure is that median.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from yolo_workloads.contract import TrialResult, TuneConfig, TuneResult
from yolo_workloads.tune.measure import Measurement, TrialSettings, Window, run_trial
from yolo_workloads.tune.space import Bounds

_FINISH_RESERVE = 3.0  # seconds kept for writing results after the last trial
_REPEATS = 2  # trials kept for measuring the best settings again
_LATER_SETUP = 5.0  # seconds a trial's setup takes once the first trial has paid the one-off costs


def _window(on_gpu: bool, deadline: float) -> Window:
    if on_gpu:
        return Window(deadline=deadline)
    # CPU: steps take seconds each; keep trials short (tests and CPU-only pools).
    return Window(
        warmup_min_batches=2,
        warmup_max_seconds=3.0,
        measure_min_batches=3,
        measure_rounds=1,
        measure_min_seconds=1.0,
        measure_max_seconds=5.0,
        deadline=deadline,
    )


def first_guess(bounds: Bounds) -> dict[str, Any]:
    """Where the study starts: the settings that are fastest on most hardware (large batch, all workers, AMP, RAM)."""
    batch = max([b for b in bounds.batches if b <= 128] or bounds.batches[:1])
    return {
        "batch": batch,
        "workers": max(bounds.workers),
        "amp": bounds.amp[0],
        "cache": "ram" if "ram" in bounds.cache else bounds.cache[0],
    }


def run_study(config: TuneConfig, yaml_path: Path, n_train: int, start: float) -> tuple[TuneResult, dict[str, Any]]:
    import optuna
    import torch

    from yolo_workloads import system
    from yolo_workloads.datasets.validate import split_images
    from yolo_workloads.tune.space import decoded_dataset_bytes, make_bounds, probe_memory_per_image

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    deadline = start + config.time_budget_seconds
    on_gpu = config.gpus > 0 and torch.cuda.is_available()
    device = "0" if on_gpu else "cpu"  # DDP ranks each get a copy of the per-rank settings measured on one GPU
    ranks = max(1, config.gpus) if on_gpu else 1
    cpu_budget = config.cpu_budget or system.cpu_budget()
    memory_budget = config.memory_budget_bytes or system.memory_budget()
    nc = len(yaml.safe_load(yaml_path.read_text())["names"])
    probe = free = None
    if on_gpu and config.search.fixed_batch is None:
        probe = probe_memory_per_image(config.model.ref, nc, config.imgsz, "cuda:0")
        free = float(torch.cuda.mem_get_info(0)[0])
    bounds = make_bounds(
        config.search,
        n_train=n_train,
        decoded_bytes=decoded_dataset_bytes(split_images(yaml_path), config.imgsz),
        memory_budget=memory_budget,
        cpu_budget=cpu_budget,
        ranks=ranks,
        on_gpu=on_gpu,
        memory_probe=probe,
        free_memory=free,
    )
    _log(f"tune: space batch={bounds.batches} workers={bounds.workers} amp={bounds.amp} cache={bounds.cache}")

    dists: dict[str, optuna.distributions.BaseDistribution] = {
        "batch": optuna.distributions.CategoricalDistribution(bounds.batches),
        "workers": optuna.distributions.CategoricalDistribution(bounds.workers),
        "amp": optuna.distributions.CategoricalDistribution(bounds.amp),
        "cache": optuna.distributions.CategoricalDistribution(bounds.cache),
    }
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=3),
    )
    study.enqueue_trial(first_guess(bounds))
    work_dir = Path(config.output_dir) / "trials"
    records: list[TrialResult] = []
    details: list[dict[str, Any]] = []
    seen: dict[TrialSettings, float | None] = {}
    figures: dict[TrialSettings, list[float]] = {}

    def measure(settings: TrialSettings, trial: Any | None) -> Measurement:
        """One trial (a repeat when `trial` is None: no pruning), recorded and logged."""
        number = len(records) + 1
        last_value: list[float] = []

        def report(value: float, step: int) -> None:
            last_value.append(value)
            if trial is not None:
                trial.report(value, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"{value:.1f} images/s is below the median of earlier trials")

        result: Measurement = run_trial(
            number,
            settings,
            model=config.model.ref,
            data=str(yaml_path),
            imgsz=config.imgsz,
            device=device,
            work_dir=work_dir,
            window=_window(on_gpu, deadline - _FINISH_RESERVE),
            report=report,
        )
        if result.state == "pruned":
            result.ips = last_value[-1] if last_value else None
        if result.state == "ok" and result.ips is not None:
            figures.setdefault(settings, []).append(result.ips)
        record = TrialResult(
            n=number,
            batch=settings.batch,
            workers=settings.workers,
            amp=settings.amp,
            cache=settings.cache,
            ips=round(result.ips, 1) if result.ips is not None else None,
            state=result.state,
            error=result.error,
        )
        records.append(record)
        details.append({**record.model_dump(), **_timing(result), "repeat": trial is None})
        figure = f"{result.ips:.1f} images/s" if result.ips is not None else result.error
        _log(
            f"tune: trial {number}/{config.max_trials} batch={settings.batch} workers={settings.workers} "
            f"amp={settings.amp} cache={settings.cache}{' (repeat)' if trial is None else ''}: {result.state} "
            f"{figure} ({result.seconds:.1f} s, {time.monotonic() - start:.0f}/{config.time_budget_seconds:.0f} s)"
        )
        return result

    def fits(reserve_repeats: int) -> bool:
        """Whether another trial (and `reserve_repeats` after it) can end before the deadline."""
        remaining = deadline - time.monotonic()
        if not details:
            return remaining >= _FINISH_RESERVE + 2
        # The first trial's setup includes one-off work (RAM cache fill, CUDA and cuDNN start): later trials reuse
        # it, so budget a trial as its slowest warm-up and measurement plus a typical later setup.
        later: list[float] = [d["setup_seconds"] for d in details[1:]]
        setup = statistics.median(later) if later else _LATER_SETUP
        runs: list[float] = [d["seconds"] - d["setup_seconds"] for d in details]
        trial = max(runs) + setup
        typical = statistics.median(runs) + setup
        return remaining >= trial + reserve_repeats * typical + _FINISH_RESERVE

    repeats = 0
    space_size = len(bounds.batches) * len(bounds.workers) * len(bounds.amp) * len(bounds.cache)
    # Small trial counts (tests, CPU pools) all go to the search.
    search_trials = config.max_trials - _REPEATS if config.max_trials >= 2 * _REPEATS + 2 else config.max_trials
    while len(records) < search_trials and len(seen) < space_size and repeats < 5 and fits(_REPEATS):
        trial = study.ask(dists)
        settings = TrialSettings(**trial.params)
        if settings in seen:  # the sampler repeated itself: answer from memory, spend no time
            repeats += 1
            value = seen[settings]
            study.tell(trial, value, state=None if value is not None else optuna.trial.TrialState.FAIL)
            continue
        repeats = 0
        m = measure(settings, trial)
        if m.state == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif m.state == "ok":
            study.tell(trial, m.ips)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        seen[settings] = m.ips if m.state == "ok" else None

    # Measure the two best settings again (the leader first), as long as the budget allows.
    for _ in range(_REPEATS):
        ranked = sorted(figures, key=lambda k: statistics.median(figures[k]), reverse=True)[:2]
        todo = [k for k in ranked if len(figures[k]) < 2] or ranked[:1]
        if not todo or len(records) >= config.max_trials or not fits(0):
            break
        measure(todo[0], None)
    shutil.rmtree(work_dir, ignore_errors=True)
    if not figures:
        reasons = "; ".join(f"#{r.n} {r.error}" for r in records) or "no trial fitted in the time budget"
        raise NoFeasibleSetting(f"tune: no feasible setting ({reasons})"[:1000])
    chosen = max(figures, key=lambda k: statistics.median(figures[k]))
    best = next(r for r in records if TrialSettings(r.batch, r.workers, r.amp, r.cache) == chosen)
    best_ips = round(statistics.median(figures[chosen]), 1)
    result = TuneResult(
        batch=best.batch * ranks,  # Ultralytics' batch is the total over DDP ranks
        workers=best.workers,
        amp=best.amp,
        cache=best.cache,
        images_per_second=best_ips,
        duration_seconds=round(time.monotonic() - start, 1),
        trials=records,
        gpu_product=system.gpu_product() if on_gpu else None,
        cpu_budget=cpu_budget,
        device="cuda" if on_gpu else "cpu",
    )
    detail = {"bounds": bounds.as_dict(), "trials": details, "ranks": ranks, "per_rank_batch": best.batch}
    return result, detail


class NoFeasibleSetting(Exception):
    pass


def _timing(m: Measurement) -> dict[str, Any]:
    return {
        "seconds": round(m.seconds, 2),
        "setup_seconds": round(m.setup_seconds, 2),
        "warmup_batches": m.warmup_batches,
        "measured_batches": m.measured_batches,
        "measured_seconds": round(m.measured_seconds, 2),
        "data_wait_fraction": None if m.data_wait_fraction is None else round(m.data_wait_fraction, 3),
    }


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
