"""What a person sees during a local run: phase lines, the tuning trials as a table, the final summary.

Formatting only (strings in, strings out), so it is unit-tested; the runner decides when to print.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import yaml
from yolo_workloads.contract import HEADLINE_METRIC, TrainSummary, TrialResult, TuneResult


def stamp() -> str:
    return time.strftime("%H:%M:%S")


def phase_line(phase: str, message: str = "") -> str:
    """`==> 12:00:01 phase Tuning: measuring ...` — easy to spot between Ultralytics' own lines."""
    return f"==> {stamp()} phase {phase}" + (f": {message}" if message else "")


def note_line(text: str) -> str:
    return f"--> {text}"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table with right-aligned columns."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def chosen_trial(result: TuneResult) -> TrialResult | None:
    """The trial whose settings tuning chose (the fastest measurement of them)."""
    matches = [
        t
        for t in result.trials
        if (t.batch, t.workers, t.amp, t.cache, t.aug)
        == (result.batch, result.workers, result.amp, result.cache, result.augmentation)
        and t.ips is not None
    ]
    return max(matches, key=lambda t: t.ips or 0.0, default=None)


def trials_table(result: TuneResult) -> str:
    if not result.trials:
        return f"(no trial measured: {result.reason or 'the bounds allowed one setting'})"
    chosen = chosen_trial(result)
    both = any(t.aug == "gpu" for t in result.trials)  # the augmentation column only when tuning tried the GPU's
    rows = [
        [
            t.n,
            t.batch,
            t.workers,
            t.amp,
            t.cache,
            *([t.aug or "cpu"] if both else []),
            t.ips,
            t.state + (" *" if t is chosen else ""),
            (t.error or "")[:60],
        ]
        for t in result.trials
    ]
    names = ["trial", "batch", "workers", "amp", "cache", *(["augmentation"] if both else []), "images/s"]
    return table([*names, "state", "note"], rows)


def tuning_summary(result: TuneResult, source: str) -> str:
    where = result.gpu_product or result.device
    return (
        f"tuning ({source.lower()}, {_plural(len(result.trials), 'trial')} in {result.duration_seconds:.0f} s "
        f"on {where}): batch {result.batch}, workers {result.workers}, amp {_cell(result.amp)}, "
        f"cache {result.cache}{', augmentation gpu' if result.augmentation == 'gpu' else ''} -> {_measured(result)}"
    )


def _measured(result: TuneResult) -> str:
    if result.images_per_second is None:
        return "chosen without a trial"
    return f"{result.images_per_second:,.1f} images/s"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class Served:
    """What `--serve` showed: one request of a few validation images, and the picture of its answer."""

    images: int
    seconds: float
    picture: str | None = None
    found: int = 0
    labelled: int = 0


@dataclass(frozen=True)
class Outcome:
    """Everything the closing summary of a train job reports; each part is None when this run did not get there."""

    name: str
    phase: str
    seconds: float
    settings: dict[str, object]
    status_path: str
    tuning: TuneResult | None = None
    summary: TrainSummary | None = None
    imgsz: int | None = None
    train_seconds: float | None = None
    val_images: int | None = None
    served: Served | None = None
    serve_command: str | None = None
    plots: Sequence[str] = ()


def duration(seconds: float) -> str:
    """`48 s`, `3 min 05 s`."""
    whole = round(seconds)
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"


def final_summary(outcome: Outcome) -> str:
    """The closing block, read as a result: how accurate, how long, how fast, what to look at, how to serve it."""
    o = outcome
    lines = [f"YoloTrainJob {o.name}: {o.phase} in {duration(o.seconds)} (this run, set-up excluded)"]
    lines += _accuracy_lines(o)
    if o.summary is not None:
        lines.append("  training:   " + _training_text(o, o.summary))
    if o.tuning is not None:
        t = o.tuning
        measured = "the only setting allowed, chosen without a trial"
        if t.images_per_second is not None:
            measured = f"{t.images_per_second:,.1f} images/s measured for the chosen settings"
        lines.append(f"  tuning:     {_plural(len(t.trials), 'trial')} in {duration(t.duration_seconds)}, {measured}")
    lines += _served_lines(o.served)
    if o.summary is not None:
        lines.append(f"  weights:    {o.summary.best_weights}")
    if o.serve_command:
        lines.append(f"  serve them: {o.serve_command}")
    if o.plots:
        lines.append(f"  plots:      {', '.join(o.plots)}")
    lines.append(f"  status:     {o.status_path}")
    return "\n".join(lines)


def _accuracy_lines(o: Outcome) -> list[str]:
    if o.summary is None:
        return []
    m, task = o.summary.metrics, o.summary.task
    on = f" on {o.val_images} validation images" if o.val_images else " on the validation split"
    if task == "detect":
        return [f"  accuracy:   mAP50 {_fmt(m.map50)}, mAP50-95 {_fmt(m.map50to95)}{on}"]
    own = f"{HEADLINE_METRIC[task][1]} {_fmt(m.headline(task))}"
    boxes = f", box mAP50-95 {_fmt(m.map50to95)}" if task != "classify" else f", top-5 {_fmt(m.top5)}"
    return [f"  accuracy:   {task}: {own}{boxes}{on}"]


_SOURCES = {"measured": "tuned now", "cache": "from the tuning cache", "fixed": "fixed by the spec"}


def _training_text(o: Outcome, summary: TrainSummary) -> str:
    size = f" at {o.imgsz} px" if o.imgsz else ""
    took = f" in {duration(o.train_seconds)}" if o.train_seconds is not None else ""
    ips = f", {summary.images_per_second:,.1f} images/s" if summary.images_per_second is not None else ""
    used = ", ".join(f"{k} {_cell(v)}" for k, v in o.settings.items() if v is not None and k != "source")
    source = _SOURCES.get(str(o.settings.get("source")))
    used += f"; {source}" if used and source else ""
    resumed = " (resumed)" if summary.resumed else ""
    return f"{summary.epochs_completed} epochs{size}{took}{ips}{resumed}" + (f" ({used})" if used else "")


def _served_lines(served: Served | None) -> list[str]:
    if served is None:
        return []
    lines = []
    if served.picture:
        lines.append(
            f"  picture:    {served.picture} ({served.images} validation images: "
            f"{served.found} of {served.labelled} shapes found, boxes and labels drawn)"
        )
    rate = served.images / served.seconds if served.seconds > 0 else 0.0
    lines.append(
        f"  serving:    {served.images} images in one request answered in {served.seconds:.2f} s ({rate:,.1f} images/s)"
    )
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def status_yaml(kind: str, name: str, status: dict[str, object]) -> str:
    """The status block as `kubectl get -o yaml` shows it (camelCase, only set fields)."""
    return yaml.safe_dump({"kind": kind, "metadata": {"name": name}, "status": status}, sort_keys=False)
