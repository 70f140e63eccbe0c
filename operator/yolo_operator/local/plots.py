"""PNG plots a person looks at after a local run: the training curves and what the tuning trials measured.

Ultralytics writes its own results.png, but only after training ends and with its own fonts; these are small,
always written, and drawn with matplotlib's Agg backend and its bundled DejaVu font (nothing downloaded). Reading
results.csv is separated from drawing, so the reading is unit-tested without matplotlib.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yolo_workloads.contract import TrialResult

LOSS_COLUMNS = ("train/box_loss", "train/cls_loss", "train/dfl_loss", "val/box_loss", "val/cls_loss", "val/dfl_loss")
METRIC_COLUMNS = ("metrics/mAP50(B)", "metrics/mAP50-95(B)", "metrics/precision(B)", "metrics/recall(B)")


def read_results_csv(path: Path) -> dict[str, list[float]]:
    """Ultralytics' results.csv as columns of floats (header names stripped; unparsable cells become NaN)."""
    columns: dict[str, list[float]] = {}
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        for name in header:
            columns[name] = []
        for row in reader:
            if not row:
                continue
            for name, cell in zip(header, row, strict=False):
                try:
                    columns[name].append(float(cell))
                except ValueError:
                    columns[name].append(math.nan)
    return columns


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display, no GUI toolkit
    import matplotlib.pyplot as plt

    return plt


def plot_training(results_csv: Path, out: Path) -> Path | None:
    """Losses and validation metrics per epoch; None when there is no epoch to draw."""
    columns = read_results_csv(results_csv)
    epochs = columns.get("epoch", [])
    if not epochs:
        return None
    plt = pyplot()
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for name in LOSS_COLUMNS:
        if name in columns:
            loss_ax.plot(epochs, columns[name], marker="o", label=name)
    loss_ax.set_title("losses")
    loss_ax.set_xlabel("epoch")
    loss_ax.legend(fontsize=7)
    for name in METRIC_COLUMNS:
        if name in columns:
            metric_ax.plot(epochs, columns[name], marker="o", label=name.removeprefix("metrics/"))
    metric_ax.set_title("validation")
    metric_ax.set_xlabel("epoch")
    metric_ax.set_ylim(bottom=0)
    metric_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_trials(trials: Sequence[TrialResult], out: Path, chosen: TrialResult | None = None) -> Path | None:
    """Measured images/s against batch size, one line per (workers, amp, cache); failed trials as crosses."""
    if not trials:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict[tuple[int, bool, str], list[TrialResult]] = {}
    for trial in trials:
        groups.setdefault((trial.workers, trial.amp, trial.cache), []).append(trial)
    for index, ((workers, amp, cache), group) in enumerate(sorted(groups.items())):
        colour = f"C{index % 10}"
        label = f"workers {workers}, amp {'on' if amp else 'off'}, cache {cache}"
        ok = sorted((t for t in group if t.state == "ok" and t.ips is not None), key=lambda t: t.batch)
        if ok:
            ax.plot([t.batch for t in ok], [t.ips for t in ok], marker="o", color=colour, label=label)
        # Pruned trials stopped early: what they measured, hollow; infeasible ones (no figure) as crosses at 0.
        pruned = [t for t in group if t.state == "pruned" and t.ips is not None]
        if pruned:
            ax.scatter(
                [t.batch for t in pruned],
                [t.ips for t in pruned],
                facecolors="none",
                edgecolors=colour,
                label=None if ok else label + " (pruned)",
            )
        failed = [t for t in group if t.ips is None]
        if failed:
            ax.scatter([t.batch for t in failed], [0] * len(failed), marker="x", color="grey")
    if chosen is not None and chosen.ips is not None:
        ax.scatter([chosen.batch], [chosen.ips], s=160, facecolors="none", edgecolors="red", label="chosen")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("training images/s")
    ax.set_title("tuning trials (hollow: pruned early; x: infeasible)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
