"""What a person sees during a local run: phase lines, the tuning trials as a table, the final summary.

Formatting only (strings in, strings out), so it is unit-tested; the runner decides when to print.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import yaml
from yolo_workloads.contract import TrainSummary, TrialResult, TuneResult


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
        if (t.batch, t.workers, t.amp, t.cache) == (result.batch, result.workers, result.amp, result.cache)
        and t.ips is not None
    ]
    return max(matches, key=lambda t: t.ips or 0.0, default=None)


def trials_table(result: TuneResult) -> str:
    chosen = chosen_trial(result)
    rows = [
        [
            t.n,
            t.batch,
            t.workers,
            t.amp,
            t.cache,
            t.ips,
            t.state + (" *" if t is chosen else ""),
            (t.error or "")[:60],
        ]
        for t in result.trials
    ]
    return table(["trial", "batch", "workers", "amp", "cache", "images/s", "state", "note"], rows)


def tuning_summary(result: TuneResult, source: str) -> str:
    where = result.gpu_product or result.device
    return (
        f"tuning ({source.lower()}, {len(result.trials)} trials in {result.duration_seconds:.0f} s on {where}): "
        f"batch {result.batch}, workers {result.workers}, amp {_cell(result.amp)}, cache {result.cache} "
        f"-> {result.images_per_second:,.1f} images/s"
    )


def final_summary(
    name: str,
    phase: str,
    tuning: TuneResult | None,
    settings: dict[str, object],
    summary: TrainSummary | None,
    plots: Sequence[str],
    status_path: str,
) -> str:
    """The block printed at the end of a train job: settings, speed, accuracy, where the files are."""
    lines = [f"YoloTrainJob {name}: {phase}"]
    lines.append("  settings:   " + ", ".join(f"{k} {_cell(v)}" for k, v in settings.items() if v is not None) or "-")
    if tuning is not None:
        lines.append(
            f"  tuning:     {tuning.images_per_second:,.1f} images/s measured in {tuning.duration_seconds:.0f} s"
        )
    if summary is not None:
        ips = f"{summary.images_per_second:,.1f}" if summary.images_per_second is not None else "-"
        lines.append(
            f"  training:   {summary.epochs_completed} epochs, {ips} images/s" + (" (resumed)" * summary.resumed)
        )
        m = summary.metrics
        lines.append(f"  accuracy:   mAP50-95 {_fmt(m.map50to95)}, mAP50 {_fmt(m.map50)}")
        lines.append(f"  weights:    {summary.best_weights}")
    for plot in plots:
        lines.append(f"  plot:       {plot}")
    lines.append(f"  status:     {status_path}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def status_yaml(kind: str, name: str, status: dict[str, object]) -> str:
    """The status block as `kubectl get -o yaml` shows it (camelCase, only set fields)."""
    return yaml.safe_dump({"kind": kind, "metadata": {"name": name}, "status": status}, sort_keys=False)
