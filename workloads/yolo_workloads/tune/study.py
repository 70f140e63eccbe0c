"""The tuning study: a hill climb (tune.search) over batch, workers, AMP, cache and (when offered) where to augment,
each trial a real measurement.

One process runs every trial, so the data set is scanned (and RAM-cached) once and CUDA is initialised once. The
phase must pay for itself: its budget is `budget_share` (10%) of the training time estimated from the first trial,
`min_budget_seconds` (30 s) at least, `time_budget_seconds` at most. A trial is started only when the slowest trial
so far still fits; a running trial stops measuring at the deadline. Trials that fail (out of memory, dataloader
crash) are recorded as infeasible and the climb steps away from them; hopeless ones are pruned while they run.

Batch sizes are limited to those that keep the defaults' optimisation trajectory (tune.trajectory), so the fastest
setting found trains the same model sooner. The result says what was chosen and why.

Inside the training process (`TrainOn`, tune/in_training.py) each trial is the training's own trainer: once one is
measured and no further trial would run, the best setting's trainer trains on instead of stopping.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolo_workloads.contract import Augmentation, TrialResult, TuneConfig, TuneResult
from yolo_workloads.tune.measure import Measurement, TrainingTrial, TrialPruned, TrialSettings, Window, run_trial
from yolo_workloads.tune.search import NOISE, Search, Space, tuning_budget
from yolo_workloads.tune.space import Bounds
from yolo_workloads.tune.trajectory import rule_norm_batch

RESULT_FILE = "tune_result.json"
"""The result with every trial's timings and the search bounds, in the tuning output folder."""
_FINISH_RESERVE = 3.0  # seconds kept for writing results after the last trial
_LATER_SETUP = 5.0  # seconds a trial's setup takes once the first trial has paid the one-off costs
DEFAULT_EPOCHS = 100  # Ultralytics' default, when the config does not say how long training will be
REASON_LIMIT = 400


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


@dataclass
class TrainOn:
    """Trials run as the training itself (tune/in_training.py)."""

    overrides: dict[str, Any]
    """Training's Ultralytics arguments (measure.TrainingTrial)."""
    install: Callable[[Any], None]
    """Training's own callbacks on each trial's trainer."""
    clean: Callable[[], None]
    """Removes what a stopped trial wrote into the run folder."""
    may_continue: Callable[[TrialSettings], bool]
    """Whether a trial of these settings can be the training (not when its warm-up runs at another batch)."""
    chosen: Callable[[TuneResult, dict[str, Any]], None]
    """Told the result and its detail before the chosen trial trains on."""


class _Study:
    """The trials of one tuning phase: runs them, records them, and keeps the deadline."""

    def __init__(
        self,
        config: TuneConfig,
        yaml_path: Path,
        n_train: int,
        start: float,
        bounds: Bounds,
        train_on: TrainOn | None = None,
    ) -> None:
        self.config, self.yaml_path, self.n_train, self.start, self.bounds = config, yaml_path, n_train, start, bounds
        self.train_on = train_on
        self.trainer: Any = None
        """The trainer that went on as the training and trained to the end (with `train_on`)."""
        self.trained: TrialSettings | None = None
        self.concluded: tuple[TuneResult, dict[str, Any]] | None = None
        """The result as it stood when the chosen trial went on (its duration: tuning's, not training's)."""
        self.epochs = config.epochs or DEFAULT_EPOCHS
        self.search = Search(_space(bounds), images_per_run=float(self.epochs * n_train))
        self.budget = config.time_budget_seconds
        self.budget_fitted = False
        self.on_gpu = bool(bounds.detail.get("on_gpu"))
        self.device = "0" if self.on_gpu else "cpu"  # DDP ranks each get a copy of the settings measured on one GPU
        self.work_dir = Path(config.output_dir) / "trials"
        self.records: list[TrialResult] = []
        self.details: list[dict[str, Any]] = []
        self.repeated: list[TrialSettings] = []
        self.build_seconds: dict[str, float] = {}

    @property
    def deadline(self) -> float:
        return self.start + self.budget

    def run(self) -> None:
        """Climb until converged, out of trials or out of time; then settle a near tie by measuring again."""
        while self._room():
            settings = self.search.next()
            if settings is None:
                break
            self.measure(settings, repeat=False)
        while self._room():
            again = self.search.to_repeat()
            if again is None:
                break
            self.repeated.append(again)
            self.measure(again, repeat=True)
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def _room(self) -> bool:
        """Room for another trial: none trained on, trials left, and one fits before the deadline."""
        return self.trainer is None and len(self.records) < self.config.max_trials and self.fits()

    def another_trial(self) -> bool:
        """Whether `run` would start another trial now."""
        return self._room() and (self.search.next() is not None or self.search.to_repeat() is not None)

    def measure(self, settings: TrialSettings, repeat: bool) -> Measurement:
        """One trial (a repeat is never pruned), recorded, logged, and fed to the search."""
        number = len(self.records) + 1
        last_value: list[float] = []
        settled: list[Measurement] = []

        def report(value: float, step: int) -> None:
            last_value.append(value)
            if not repeat and self.search.should_prune(value, step, settings.workers):
                raise TrialPruned(f"{value:.1f} images/s is hopeless next to the best so far")

        def go_on(m: Measurement, trainer: Any) -> bool:
            """Measured: recorded now; it trains on when it is the best and no further trial would run."""
            settled.append(m)
            self._settle(number, settings, m, repeat, last_value)
            assert self.train_on is not None
            if not self.train_on.may_continue(settings) or self.search.best() != settings or self.another_trial():
                return False
            self.concluded = self.conclude(settings, went_on=True)
            self.train_on.chosen(*self.concluded)
            return True

        training = None
        if self.train_on is not None:
            training = TrainingTrial(self.train_on.overrides, self.train_on.install, go_on, self.train_on.clean)
        result = run_trial(
            number,
            settings,
            model=self.config.model.ref,
            data=str(self.yaml_path),
            imgsz=self.config.imgsz,
            device=self.device,
            work_dir=self.work_dir,
            window=_window(self.on_gpu, self.deadline - _FINISH_RESERVE),
            report=report,
            task=self.config.task,
            cuda_graphs=self.config.cuda_graphs,
            augmentation=settings.augmentation,
            norm_batch=rule_norm_batch(self.config.search, settings.batch, self.config.gpus),
            training=training,
        )
        if "trainer" in result.extra:
            self.trainer, self.trained = result.extra.pop("trainer"), settings
        if not settled:
            self._settle(number, settings, result, repeat, last_value)
        return result

    def _settle(
        self, number: int, settings: TrialSettings, result: Measurement, repeat: bool, last_value: list[float]
    ) -> None:
        """A trial's outcome, into the search and the records."""
        if result.state == "pruned":
            result.ips = last_value[-1] if last_value else None
        self._learn_one_off(settings, float(result.extra.get("train_build_seconds", 0.0)))
        self.search.record(settings, result.ips if result.state == "ok" else None)
        self._record(number, settings, result, repeat)
        if result.state == "ok" and not self.budget_fitted:
            self._fit_budget()

    def _learn_one_off(self, settings: TrialSettings, build_seconds: float) -> None:
        """The RAM cache's fill, which training pays again: its build time beyond that of an uncached set."""
        if build_seconds > 0:
            self.build_seconds[settings.cache] = build_seconds
        if "ram" in self.build_seconds:
            fill = self.build_seconds["ram"] - self.build_seconds.get("none", 0.0)
            self.search.one_off_seconds["ram"] = max(0.0, fill)

    def _fit_budget(self) -> None:
        """After the first measurement: the budget becomes a share of the training it tunes."""
        best = self.search.best()
        if best is None:
            return
        self.budget_fitted = True
        c = self.config
        self.budget = tuning_budget(c.time_budget_seconds, c.budget_share, c.min_budget_seconds, self.estimate(best))
        _log(f"tune: budget {self.budget:.0f} s (training estimated at {self.estimate(best):.0f} s)")

    def estimate(self, settings: TrialSettings) -> float:
        return self.search.seconds(settings)

    def _record(self, number: int, settings: TrialSettings, result: Measurement, repeat: bool) -> None:
        record = TrialResult(
            n=number,
            batch=settings.batch,
            workers=settings.workers,
            amp=settings.amp,
            cache=settings.cache,
            ips=round(result.ips, 1) if result.ips is not None else None,
            state=result.state,
            error=result.error,
            repeat=True if repeat else None,
            aug=_on_the_gpu(settings.augmentation),
        )
        self.records.append(record)
        self.details.append({**record.model_dump(), **_timing(result), "repeat": repeat})
        figure = f"{result.ips:.1f} images/s" if result.ips is not None else result.error
        _log(
            f"tune: trial {number}/{self.config.max_trials} batch={settings.batch} workers={settings.workers} "
            f"amp={settings.amp} cache={settings.cache} augmentation={settings.augmentation}"
            f"{' (repeat)' if repeat else ''}: {result.state} "
            f"{figure} ({result.seconds:.1f} s, {time.monotonic() - self.start:.0f}/{self.budget:.0f} s)"
        )

    def fits(self) -> bool:
        """Whether another trial can end before the deadline."""
        remaining = self.deadline - time.monotonic()
        if not self.details:
            return remaining >= _FINISH_RESERVE + 2
        # The first trial's setup includes one-off work (RAM cache fill, CUDA and cuDNN start): later trials reuse
        # it, so budget a trial as its slowest warm-up and measurement plus a typical later setup.
        later: list[float] = [d["setup_seconds"] for d in self.details[1:]]
        setup = statistics.median(later) if later else _LATER_SETUP
        runs: list[float] = [d["seconds"] - d["setup_seconds"] for d in self.details]
        return remaining >= max(runs) + setup + _FINISH_RESERVE

    def reason(self, chosen: TrialSettings, went_on: bool = False) -> str:
        """Why `chosen`: the batch rule, the objective, the budget, repeats; short enough for the status."""
        one_off = self.search.one_off_seconds.get(chosen.cache, 0.0)
        if chosen in self.search.figures:
            ips = statistics.median(self.search.figures[chosen])
            objective = (
                f"fastest estimated training: {self.estimate(chosen):.0f} s = {self.epochs} epochs x {self.n_train} "
                f"images at {ips:.0f} images/s" + (f" + {one_off:.0f} s RAM cache fill" if one_off >= 0.5 else "")
            )
        else:
            objective = "training ended during its first trial, before the measurement did"
        parts = [
            self.bounds.batch_reason,
            self.bounds.augmentation_note or _augmentation_words(chosen, self.bounds, list(self.search.figures)),
            objective,
            f"{_plural(len(self.search.tried), 'setting')} measured in {time.monotonic() - self.start:.0f} s of a "
            f"{self.budget:.0f} s budget" + ("; climb converged" if self.search.next() is None else ""),
        ]
        if self.repeated:
            again = ", ".join(f"batch {s.batch} workers {s.workers} cache {s.cache}" for s in self.repeated)
            parts.append(f"re-measured {again}: the best two were within {NOISE:.0%}")
        if self.train_on is not None:
            how = "the chosen trial went on as the training" if went_on else "training starts anew with the choice"
            parts.append(f"tuned inside the training process: {how}")
        return _clip("; ".join(p for p in parts if p))

    def conclude(self, chosen: TrialSettings, went_on: bool = False) -> tuple[TuneResult, dict[str, Any]]:
        """The result of choosing `chosen` (`went_on`: its trial trains on), and its detail (every trial's timings,
        the bounds, the budget)."""
        from yolo_workloads import system

        ranks = max(1, self.config.gpus) if self.on_gpu else 1
        figures = self.search.figures.get(chosen)
        result = TuneResult(
            batch=chosen.batch * ranks,  # Ultralytics' batch is the total over DDP ranks
            workers=chosen.workers,
            amp=chosen.amp,
            cache=chosen.cache,
            augmentation=_on_the_gpu(chosen.augmentation),
            images_per_second=round(statistics.median(figures), 1) if figures else None,
            duration_seconds=round(time.monotonic() - self.start, 1),
            trials=self.records,
            gpu_product=system.gpu_product() if self.on_gpu else None,
            cpu_budget=self.bounds.detail.get("cpu_budget"),
            device="cuda" if self.on_gpu else "cpu",
            reason=self.reason(chosen, went_on),
        )
        detail = {
            "bounds": self.bounds.as_dict(),
            "trials": self.details,
            "ranks": ranks,
            "per_rank_batch": chosen.batch,
            "budget_seconds": round(self.budget, 1),
            "estimated_training_seconds": round(self.estimate(chosen), 1) if figures else None,
            "one_off_seconds": self.search.one_off_seconds,
        }
        return result, detail


def run_study(config: TuneConfig, yaml_path: Path, n_train: int, start: float) -> tuple[TuneResult, dict[str, Any]]:
    """Tuning in a process of its own (`yolo-workload tune`): the best setting measured, and the detail."""
    result, detail, _ = run_study_training(config, yaml_path, n_train, start, None)
    return result, detail


def run_study_training(
    config: TuneConfig, yaml_path: Path, n_train: int, start: float, train_on: TrainOn | None
) -> tuple[TuneResult, dict[str, Any], Any]:
    """The study, with its trials run as the training itself when `train_on` is given; the third value is then
    the trainer that went on and trained to the end (None: train the chosen setting anew)."""
    import torch

    from yolo_workloads import system
    from yolo_workloads.train.runtime import use_the_cpu_budget

    on_gpu = config.gpus > 0 and torch.cuda.is_available()
    ranks = max(1, config.gpus) if on_gpu else 1
    cpu_budget = config.cpu_budget or system.cpu_budget()
    use_the_cpu_budget("0" if on_gpu else "cpu", cpu_budget)  # trials compute as training will
    bounds = _bounds(config, yaml_path, n_train, on_gpu, ranks, cpu_budget)
    _log(
        f"tune: space batch={bounds.batches} workers={bounds.workers} amp={bounds.amp} cache={bounds.cache} "
        f"augmentation={bounds.augmentation}"
    )
    _log(f"tune: {bounds.batch_reason}")
    if _space(bounds).size() == 1:
        result, detail = _only_setting(bounds, start, on_gpu, cpu_budget, ranks)
        return result, detail, None
    study = _Study(config, yaml_path, n_train, start, bounds, train_on)
    study.run()
    if study.trained is not None:
        return *(study.concluded or study.conclude(study.trained, went_on=True)), study.trainer
    chosen = study.search.best()
    if chosen is None:
        reasons = "; ".join(f"#{r.n} {r.error}" for r in study.records) or "no trial fitted in the time budget"
        raise NoFeasibleSetting(f"tune: no feasible setting ({reasons})"[:1000])
    return *study.conclude(chosen), None


def _only_setting(
    bounds: Bounds, start: float, on_gpu: bool, cpu_budget: float, ranks: int
) -> tuple[TuneResult, dict[str, Any]]:
    """The bounds allow one setting: it is the answer, and measuring it would only spend the budget."""
    from yolo_workloads import system

    why = "; ".join(p for p in [bounds.batch_reason, bounds.augmentation_note, *bounds.notes] if p)
    reason = f"the only setting the bounds allow, chosen without a trial ({why})"
    _log(f"tune: {reason}")
    result = TuneResult(
        batch=bounds.batches[0] * ranks,
        workers=bounds.workers[0],
        amp=bounds.amp[0],
        cache=bounds.cache[0],
        augmentation=_on_the_gpu(bounds.augmentation[0]),
        images_per_second=None,
        duration_seconds=round(time.monotonic() - start, 1),
        trials=[],
        gpu_product=system.gpu_product() if on_gpu else None,
        cpu_budget=cpu_budget,
        device="cuda" if on_gpu else "cpu",
        reason=_clip(reason),
    )
    return result, {"bounds": bounds.as_dict(), "trials": [], "ranks": ranks, "per_rank_batch": bounds.batches[0]}


def _bounds(config: TuneConfig, yaml_path: Path, n_train: int, on_gpu: bool, ranks: int, cpu_budget: float) -> Bounds:
    """The search space on this pod: memory probe, CPU and memory budgets, the trajectory rule."""
    import torch

    from yolo_workloads import system
    from yolo_workloads.datasets.validate import class_count, split_images
    from yolo_workloads.tune.space import decoded_dataset_bytes, make_bounds, probe_memory_per_image

    memory_budget = config.memory_budget_bytes or system.memory_budget()
    probe = free = None
    if on_gpu and config.search.fixed_batch is None:
        nc = class_count(yaml_path)
        probe = probe_memory_per_image(config.model.ref, nc, config.imgsz, "cuda:0", config.task)
        free = float(torch.cuda.mem_get_info(0)[0])
    bounds = make_bounds(
        config.search,
        augmentation=config.augmentation,
        n_train=n_train,
        decoded_bytes=decoded_dataset_bytes(split_images(yaml_path), config.imgsz),
        memory_budget=memory_budget,
        cpu_budget=cpu_budget,
        ranks=ranks,
        on_gpu=on_gpu,
        memory_probe=probe,
        free_memory=free,
    )
    bounds.detail["on_gpu"] = on_gpu
    return bounds


class NoFeasibleSetting(Exception):
    pass


def _space(bounds: Bounds) -> Space:
    return Space(bounds.batches, bounds.workers, bounds.amp, bounds.cache, bounds.augmentation)


def _on_the_gpu(augmentation: str) -> Augmentation | None:
    """A result's or trial's `augmentation`: `gpu` for the GPU path, None for Ultralytics' loader, so results of
    the CPU path read as before the field existed (training takes the spec's own value first)."""
    return "gpu" if augmentation == "gpu" else None


def _augmentation_words(chosen: TrialSettings, bounds: Bounds, measured: list[TrialSettings]) -> str:
    """Why this augmentation, when tuning had the choice: the other was slower, or never measured in the budget."""
    others = [a for a in bounds.augmentation if a != chosen.augmentation]
    if not others:
        return ""
    beaten = [a for a in others if any(m.augmentation == a for m in measured)]
    words = f"augmentation {chosen.augmentation}"
    if beaten:
        return f"{words}: faster than {'/'.join(beaten)} as measured"
    return f"{words}: {'/'.join(others)} not measured within the budget"


def _timing(m: Measurement) -> dict[str, Any]:
    return {
        "seconds": round(m.seconds, 2),
        "setup_seconds": round(m.setup_seconds, 2),
        "warmup_batches": m.warmup_batches,
        "measured_batches": m.measured_batches,
        "measured_seconds": round(m.measured_seconds, 2),
        "data_wait_fraction": None if m.data_wait_fraction is None else round(m.data_wait_fraction, 3),
        "train_build_seconds": round(float(m.extra.get("train_build_seconds", 0.0)), 2),
    }


def _clip(reason: str) -> str:
    """The status' reason field holds REASON_LIMIT characters."""
    return reason if len(reason) <= REASON_LIMIT else reason[: REASON_LIMIT - 3] + "..."


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
