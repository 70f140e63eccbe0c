"""`yolo-operator run` for a YoloTrainJob: observe the local processes → the shared lifecycle decides → act.

The decisions (phases, conditions, when to tune, when to train, what the status says) come from
`lifecycle.train_job.decide`, the same function the controller calls; this module only adapts a machine to it:
child processes stand in for Jobs (`backend.LocalJob`), files for termination messages, `status.yaml` in the work
directory for the status subresource (and so for the memory across runs: a second run on the same directory
reuses the measured tuning result and resumes training from its checkpoint), and a file per key for the tuning
cache ConfigMap.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TextIO

import yaml
from pydantic import ValidationError
from yolo_workloads.contract import ULTRALYTICS_METRIC_KEYS, TrainSummary, TuneResult, headline_key

from yolo_operator.api.train_job import Progress, TuningStatus, YoloTrainJob, YoloTrainJobStatus
from yolo_operator.lifecycle import train_job as lifecycle
from yolo_operator.lifecycle.tuning_cache import cache_key, decode_entry, encode_entry
from yolo_operator.local import plots, report, serving
from yolo_operator.local.backend import JobObservation, LocalJob
from yolo_operator.local.workdir import (
    Machine,
    Workdir,
    local_fetch_config,
    local_sources,
    train_config,
    tune_config,
    write_config,
)
from yolo_operator.render.common import workload_env
from yolo_operator.settings import CACHE_ENV

POLL_SECONDS = 1.0
EXIT_INTERRUPTED = 130


@dataclass
class RunOptions:
    workdir: Path
    serve: bool = False
    volumes: dict[str, Path] = field(default_factory=dict)
    cache_dir: Path | None = None
    out: TextIO = sys.stdout


class Stop:
    """Set by SIGINT/SIGTERM; the loop notices and stops the children itself (nothing dies mid-write)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # a second Ctrl-C: stop waiting politely
            raise KeyboardInterrupt
        self.requested = True
        self.signal = signum

    def install(self) -> None:
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)


def child_env(gpus: int) -> dict[str, str]:
    """Children get the pods' environment (render.common.workload_env: offline, unbuffered) and run headless; with
    no GPUs asked for, they must not touch one either."""
    env = {var["name"]: var["value"] for var in workload_env()} | {"MPLBACKEND": "Agg"}
    if gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def default_cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "yolo-operator")
    return Path(root) / "tuning"


def load_status(path: Path) -> YoloTrainJobStatus | None:
    if not path.exists():
        return None
    try:
        return YoloTrainJobStatus.model_validate(yaml.safe_load(path.read_text()) or {})
    except (ValidationError, yaml.YAMLError):
        return None  # an unreadable status is a fresh start, as a status subresource that was never written


def save_status(path: Path, status: YoloTrainJobStatus) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(status.to_wire(), sort_keys=False))
    os.replace(tmp, path)


def retry_status(previous: YoloTrainJobStatus) -> YoloTrainJobStatus:
    """After a failed run, a new local run starts over, keeping only a measured tuning choice."""
    tuning = previous.tuning if previous.tuning and previous.tuning.source in ("Measured", "Cache") else None
    return YoloTrainJobStatus(tuning=tuning)


def step_observation(obs: JobObservation, gpu_product: str | None) -> lifecycle.StepObservation:
    """A local process's facts in the lifecycle's terms (the controller builds the same from Jobs and Pods)."""
    state = lifecycle.StepState(obs.state)
    reason = None
    if obs.state == "failed":
        reason = "BackoffLimitExceeded" if obs.restarts else "ProcessFailed"
    return lifecycle.StepObservation(
        state=state,
        message=obs.termination_message,
        exit_code=obs.exit_code,
        failure_reason=reason,
        failure_message=exit_said(obs.exit_code),
        restarts=obs.restarts,
        gpu_product=gpu_product,
    )


def exit_said(code: int | None) -> str | None:
    """A process's end in words: its exit code, or the signal that killed it (SIGKILL is what the kernel's
    out-of-memory killer sends, the local twin of a pod's OOMKilled)."""
    if code is None or code >= 0:
        return None if code is None else f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    oom = " (what the kernel sends a process when memory runs out: lower the batch, or cache none)"
    return f"killed by {name}" + (oom if name == "SIGKILL" else "")


def read_tune_result(path: Path) -> TuneResult | None:
    try:
        return TuneResult.model_validate_json(path.read_text())
    except (OSError, ValidationError, ValueError):
        return None


def read_train_summary(path: Path) -> TrainSummary | None:
    try:
        return TrainSummary.model_validate_json(path.read_text())
    except (OSError, ValidationError, ValueError):
        return None


class TrainJobRunner:
    """One local run of a YoloTrainJob; `run()` returns the process exit code."""

    def __init__(self, job: YoloTrainJob, options: RunOptions, machine: Machine | None = None) -> None:
        self.job = job
        self.options = options
        self.out = options.out
        self.workdir = Workdir(options.workdir)
        self.machine = machine or Machine.detect(job.spec.resources.gpus)
        self.cache_dir = options.cache_dir or default_cache_dir()
        env = child_env(job.spec.resources.gpus)
        backoff = job.spec.run_policy.backoff_limit
        w = self.workdir
        # Both steps' output goes straight to the terminal: tuning prints a line per trial, training
        # Ultralytics' epoch progress.
        self.tuning = LocalJob("tuning", "tune", w.tuning / "tune.yaml", w.tune_result, None, backoff, env=env)
        self.training = LocalJob(
            "training", "train", w.training / "train.yaml", w.train_summary, None, backoff, env=env
        )
        self.stop = Stop()
        self.tune_result: TuneResult | None = None
        self._shown_trials = False
        self._phase: str | None = None
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # --- one reconcile --------------------------------------------------------------------------------------------

    def observe(self) -> lifecycle.Observed:
        product = self.machine.gpu_product
        cached = None
        spec = self.job.spec
        if spec.tuning.enabled and spec.tuning.reuse == "IfAvailable" and product:
            key = cache_key(spec, product)
            entry_path = self.cache_dir / f"{key}.json"
            entry = decode_entry(entry_path.read_text()) if entry_path.exists() else None
            if entry is not None:
                cached = lifecycle.CachedTuning(key, entry)
        return lifecycle.Observed(
            now=datetime.now(UTC),
            tuning=step_observation(self.tuning.observe(), product),
            training=step_observation(self.training.observe(), product),
            cached=cached,
        )

    def act(self, decision: lifecycle.Decision, observed: lifecycle.Observed) -> None:
        for action in decision.actions:
            if isinstance(action, lifecycle.CreateTuningJob):
                self.start_tuning()
            elif isinstance(action, lifecycle.CreateTrainingJob):
                self.start_training(action.choice)
            elif isinstance(action, lifecycle.WriteCache):
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                (self.cache_dir / f"{action.key}.json").write_text(encode_entry(action.result))
            # SuspendJobs/ResumeJobs: a suspended local run simply ends (see run()).
        if observed.cached is not None and self.tune_result is None:
            self.tune_result = observed.cached.result

    def start_tuning(self) -> None:
        if self.tuning.running():
            return
        config = tune_config(self.job, self.workdir, self.options.volumes, self.machine)
        write_config(self.tuning.config_path, config)
        self.tuning.init_config = self.fetch_config(self.workdir.tuning, self.workdir.tune_result)
        self.tuning.start()
        self.say(
            report.note_line(
                f"tuning: up to {config.max_trials} trials in {config.time_budget_seconds:.0f} s "
                f"(batch {config.search.batch.min}-{config.search.batch.max}, workers "
                f"{config.search.workers.min}-{config.search.workers.max}, cpu budget {config.cpu_budget})"
            )
        )

    def start_training(self, choice: lifecycle.TrainChoice) -> None:
        if self.training.running():
            return
        config = train_config(self.job, choice, self.workdir, self.options.volumes, self.machine)
        write_config(self.training.config_path, config)
        self.training.init_config = self.fetch_config(self.workdir.training, self.workdir.train_summary)
        last = self.workdir.training / "weights" / "last.pt"
        resuming = f"; resuming from {last}" if last.exists() else ""
        settings = f"batch {config.batch}, workers {config.workers}, amp {config.amp}, cache {config.cache}"
        if config.tuning is not None:
            settings = (
                f"tuning inside the training process first (up to {config.tuning.max_trials} trials in "
                f"{config.tuning.time_budget_seconds:.0f} s, cpu budget {config.tuning.cpu_budget})"
            )
        self.say(report.note_line(f"training: {config.epochs} epochs at {config.imgsz}px, {settings}{resuming}"))
        self.training.start()

    def tuning_result(self) -> TuneResult | None:
        """Tuning's result: cached, from the tuning step, or from the training step that tuned inside itself."""
        if self.tune_result is not None:
            return self.tune_result
        summary = read_train_summary(self.workdir.train_summary)
        return read_tune_result(self.workdir.tune_result) or (summary.tuning if summary is not None else None)

    def fetch_config(self, folder: Path, termination_log: Path) -> Path | None:
        """The step's fetch config (sources by URI), written beside its config; None when nothing is fetched."""
        config = local_fetch_config(self.job, self.workdir, self.options.volumes)
        if config is None:
            return None
        config = config.model_copy(update={"termination_log": str(termination_log.resolve())})
        return write_config(folder / "fetch.yaml", config)

    def show(self, decision: lifecycle.Decision) -> None:
        for event in decision.events:
            self.say(report.note_line(f"event {event.type} {event.reason}: {event.message}"))
        phase = decision.phase
        if phase != self._phase:
            self.say(report.phase_line(str(phase), decision.status.message or ""))
            self._phase = phase
        tuning = decision.status.tuning
        if not self._shown_trials and tuning is not None and tuning.source in ("Measured", "Cache"):
            self._shown_trials = True
            result = self.tuning_result()
            self.tune_result = result
            if result is not None:
                self.say(report.tuning_summary(result, tuning.source or "Measured"))
                self.say(report.trials_table(result))

    def progress(self, status: YoloTrainJobStatus) -> YoloTrainJobStatus:
        """status.progress from results.csv (the controller reads the pod's metrics instead)."""
        csv_path = self.workdir.training / "results.csv"
        if status.phase not in ("Training", "Succeeded") or not csv_path.exists():
            return status
        columns = plots.read_results_csv(csv_path)
        epochs = columns.get("epoch") or []
        if not epochs:
            return status
        maps = columns.get(ULTRALYTICS_METRIC_KEYS["map50to95"]) or []
        accuracy = columns.get(headline_key(self.job.spec.effective_task())) or []
        progress = (status.progress or Progress()).model_copy(
            update={
                "epoch": int(epochs[-1]),
                "epochs": self.job.spec.train.epochs,
                "map50to95": round(maps[-1], 4) if maps and maps[-1] == maps[-1] else None,
                "accuracy": round(accuracy[-1], 4) if accuracy and accuracy[-1] == accuracy[-1] else None,
                "updated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
        return status.model_copy(update={"progress": progress})

    # --- the loop -------------------------------------------------------------------------------------------------

    def prepare(self) -> None:
        local_sources(self.job, self.workdir, self.options.volumes)  # unmapped or missing volumes: fail first
        self.workdir.prepare()
        self.workdir.claim_spec(self.job.spec.to_wire())
        previous = load_status(self.workdir.status)
        if previous is not None and previous.phase == "Failed":
            self.say(report.note_line(f"the last run failed ({previous.message}); running again"))
            previous = retry_status(previous)
            self.tuning.forget()
            self.training.forget()
        elif previous is not None and previous.phase is not None:
            self.say(report.note_line(f"continuing the run in {self.workdir.root} (was {previous.phase})"))
        self.job = self.job.model_copy(update={"status": previous})

    def run(self) -> int:
        self.started = time.monotonic()
        self.prepare()
        self.stop.install()
        try:
            decision = self.loop()
        finally:
            self.tuning.stop()
            self.training.stop()
        return self.finish(decision)

    def loop(self) -> lifecycle.Decision | None:
        while True:
            observed = self.observe()
            decision = lifecycle.decide(self.job, observed)
            status = self.progress(decision.status)
            self.job = self.job.model_copy(update={"status": status})
            save_status(self.workdir.status, status)
            self.show(decision)
            if decision.phase in lifecycle.FINAL_PHASES:
                return decision
            if decision.phase == "Suspended":
                self.say(report.note_line("spec.runPolicy.suspend is set: nothing runs; unset it to run"))
                return decision
            if self.stop.requested:
                return None
            self.act(decision, observed)
            deadline = time.monotonic() + POLL_SECONDS
            while time.monotonic() < deadline and not self.stop.requested:
                time.sleep(0.1)
            if self.stop.requested:
                self.say(report.note_line("interrupted: stopping the workload (SIGTERM, then SIGKILL after 20 s)"))
                self.tuning.stop()
                self.training.stop()
                save_status(self.workdir.status, self.job.status or YoloTrainJobStatus())
                return None

    def finish(self, decision: lifecycle.Decision | None) -> int:
        status = self.job.status or YoloTrainJobStatus()
        if decision is None:
            self.say(report.phase_line(str(status.phase), "interrupted; run the same command again to resume"))
            return EXIT_INTERRUPTED
        written = self.write_plots()
        self.say("")
        self.say(report.status_yaml(self.job.kind, self.job.metadata.name, status.to_wire()))
        code = 1 if status.phase == "Failed" else 0
        served: report.Served | None = None
        command: str | None = None
        if status.phase == "Succeeded":
            command = serving.write_service_manifest(self.job, self.workdir.root)
            if self.options.serve:
                from yolo_operator.local.serve_run import serve_trained

                code, served = serve_trained(self)
        self.say("")
        self.say(report.final_summary(self.outcome(status, written, served, command)))
        return code

    def outcome(
        self, status: YoloTrainJobStatus, plots_written: list[Path], served: report.Served | None, command: str | None
    ) -> report.Outcome:
        csv_path = self.workdir.training / "results.csv"
        return report.Outcome(
            name=self.job.metadata.name,
            phase=str(status.phase),
            seconds=time.monotonic() - self.started,
            settings=self.settings(status.tuning),
            status_path=str(self.workdir.status),
            tuning=self.tuning_result(),
            summary=read_train_summary(self.workdir.train_summary),
            imgsz=self.job.spec.train.imgsz,
            train_seconds=training_seconds(csv_path) if csv_path.exists() else None,
            val_images=count_images(self.workdir.shapes / "images" / "val") or None,
            served=served,
            serve_command=command,
            plots=[str(p) for p in plots_written],
        )

    def settings(self, tuning: TuningStatus | None) -> dict[str, object]:
        try:
            ran = yaml.safe_load(self.training.config_path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            ran = {}
        return _settings(tuning, ran if isinstance(ran, dict) else {})

    def write_plots(self) -> list[Path]:
        written: list[Path] = []
        try:
            csv_path = self.workdir.training / "results.csv"
            if csv_path.exists():
                path = plots.plot_training(csv_path, self.workdir.root / "training-curves.png")
                written += [path] if path else []
            result = self.tuning_result()
            if result is not None:
                path = plots.plot_trials(
                    result.trials, self.workdir.root / "tuning-trials.png", report.chosen_trial(result)
                )
                written += [path] if path else []
        except Exception as exc:  # a plot is a convenience: never fail a finished run over it
            self.say(report.note_line(f"could not draw plots: {exc}"))
        return written


def training_seconds(results_csv: Path) -> float | None:
    """Ultralytics' own clock: results.csv's `time` column is the seconds of training so far, epoch by epoch."""
    times = [t for t in plots.read_results_csv(results_csv).get("time", []) if not math.isnan(t)]
    return times[-1] if times else None


def count_images(folder: Path) -> int:
    """Images in a data set's split folder (the validation split's size, for the summary)."""
    return sum(1 for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if folder.is_dir() else 0


def _settings(tuning: TuningStatus | None, ran: dict[str, object]) -> dict[str, object]:
    """What training ran with (its config: workers may be capped by this machine's cores), else the status."""
    if tuning is None:
        return {}
    if ran.get("tuning"):  # tuned inside training: the config's settings were placeholders the choice replaced
        ran = {}
    return {
        "batch": ran.get("batch", tuning.batch),
        "workers": ran.get("workers", tuning.workers),
        "amp": ran.get("amp", tuning.amp),
        "cache": ran.get("cache", tuning.cache),
        **({"augmentation": "gpu"} if ran.get("augmentation", tuning.augmentation) == "gpu" else {}),
        "source": (tuning.source or "").lower() or None,
    }
