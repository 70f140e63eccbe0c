"""The quickstart's accuracy across training seeds and CPU core counts: is the demo's model good by design or by luck?

The demo (`make demo`) must end at mAP50 >= 0.5 on a two-core machine. One run says little: the trajectory of a
from-scratch model over 15 short epochs depends on the seed and, through the order of floating-point sums, on the
number of torch threads. This script trains the quickstart's own TrainConfig (rendered here by the local runner's
code, as `make demo` renders it) several times, each run pinned to its own cores, so one many-core machine gives the
spread of a dozen two-core demos at once.

    # here: write the quickstart's TrainConfig (and generate its data set once)
    python benchmarks/demo_accuracy.py render --out .work/demo-accuracy
    # on a machine with enough cores (each run gets `cores` of its own; nothing else should run there)
    python benchmarks/demo_accuracy.py run --dir .work/demo-accuracy --seeds 0 1 2 3 --cores 1 2
    python benchmarks/demo_accuracy.py run --dir .work/demo-accuracy --seeds 0 1 2 3 --cores 2 --epochs 18 21

Prints one row per run (cores, seed, mAP50, mAP50-95, training seconds, images/s) and the spread per core count;
writes `results.json` in `--dir` (or in $OUT where set).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "manifests" / "samples" / "quickstart" / "yolotrainjob.yaml"


def render(out: Path) -> None:
    """The TrainConfig `make demo` trains with (the quickstart's choice: no tuning trial changes it on a CPU)."""
    from yolo_operator.lifecycle.train_job import TrainChoice
    from yolo_operator.local.cli import load_manifest
    from yolo_operator.local.workdir import Machine, Workdir, train_config, tune_config
    from yolo_workloads.train.runtime import prepare_data

    job = load_manifest(QUICKSTART, gpus=None)
    workdir = Workdir(out / "work")
    machine = Machine(cpus=2, memory_bytes=8 * 2**30, gpu_product="cpu")
    tune = tune_config(job, workdir, {}, machine)
    search = tune.search
    choice = TrainChoice(batch=search.fixed_batch or 16, workers=0, amp=False, cache=(search.fixed_cache or "ram"))
    config = train_config(job, choice, workdir, {}, machine)
    prepare_data(config.data)
    data = config.data.model_dump()
    data["root"] = os.path.relpath(data["root"], out)  # the folder travels: paths relative to it
    (out / "train.json").write_text(json.dumps({**config.model_dump(mode="json"), "data": data}, indent=2))
    print(f"wrote {out / 'train.json'}")


def run(directory: Path, seeds: list[int], cores: list[int], epochs: list[int], results: Path) -> int:
    base = json.loads((directory / "train.json").read_text())
    base["data"]["root"] = str((directory / base["data"]["root"]).resolve())
    plan = [(c, s, e) for c in cores for s in seeds for e in (epochs or [base["epochs"]])]
    available = sorted(os.sched_getaffinity(0))
    if sum(c for c, _, _ in plan) > len(available):
        raise SystemExit(f"{sum(c for c, _, _ in plan)} cores needed, {len(available)} available")
    procs: list[tuple[int, int, int, Path, subprocess.Popen[bytes], float]] = []
    next_core = 0
    for n_cores, seed, n_epochs in plan:
        cpus = available[next_core : next_core + n_cores]
        next_core += n_cores
        out = directory / f"cores{n_cores}-seed{seed}-epochs{n_epochs}"
        out.mkdir(parents=True, exist_ok=True)
        config = {**base, "seed": seed, "epochs": n_epochs}
        config.update(output_dir=str(out / "training"), termination_log=str(out / "summary"))
        (out / "train.json").write_text(json.dumps(config))
        log = open(out / "train.log", "wb")  # noqa: SIM115  (closed with the process)
        cmd = ["taskset", "-c", ",".join(map(str, cpus)), sys.executable, "-m", "yolo_workloads.cli", "train"]
        proc = subprocess.Popen([*cmd, "--config", str(out / "train.json")], stdout=log, stderr=subprocess.STDOUT)
        procs.append((n_cores, seed, n_epochs, out, proc, time.monotonic()))
    rows = [_finished(*p) for p in procs]
    report = {"rows": rows, "spread": _spread(rows)}
    results.write_text(json.dumps(report, indent=2))
    print(_table(rows))
    print(json.dumps(report["spread"], indent=2))
    return 0


def _finished(
    n_cores: int, seed: int, epochs: int, out: Path, proc: subprocess.Popen[bytes], start: float
) -> dict[str, Any]:
    code = proc.wait()
    row: dict[str, Any] = {"cores": n_cores, "seed": seed, "epochs": epochs, "exit": code}
    row["wall_s"] = round(time.monotonic() - start, 1)
    summary_path = out / "training" / "summary.json"
    if code == 0 and summary_path.exists():
        summary = json.loads(summary_path.read_text())
        row.update(summary["metrics"], images_per_second=summary.get("images_per_second"))
    else:
        row["log_tail"] = (out / "train.log").read_text(errors="replace")[-1500:]
    return row


def _spread(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cores, epochs in sorted({(r["cores"], r["epochs"]) for r in rows}):
        done = [r for r in rows if (r["cores"], r["epochs"]) == (cores, epochs) and r.get("map50") is not None]
        values, walls = [r["map50"] for r in done], [r["wall_s"] for r in done]
        if values:
            out[f"{cores} cores, {epochs} epochs"] = {
                "runs": len(values), "map50_min": min(values), "map50_mean": round(statistics.mean(values), 3),
                "map50_max": max(values), "wall_s_mean": round(statistics.mean(walls), 1),
            }  # fmt: skip
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    lines = ["cores  epochs  seed  mAP50  mAP50-95  wall s  images/s"]
    for r in rows:
        m50, m = r.get("map50"), r.get("map50to95")
        ips = r.get("images_per_second")
        lines.append(
            f"{r['cores']:>5}  {r['epochs']:>6}  {r['seed']:>4}  {m50 if m50 is None else f'{m50:.3f}':>5}  "
            f"{m if m is None else f'{m:.3f}':>8}  {r['wall_s']:>6}  {ips if ips is None else f'{ips:.1f}':>8}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("render")
    r.add_argument("--out", type=Path, default=ROOT / ".work" / "demo-accuracy")
    x = sub.add_parser("run")
    x.add_argument("--dir", type=Path, default=ROOT / ".work" / "demo-accuracy")
    x.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    x.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    x.add_argument("--epochs", type=int, nargs="*", default=[], help="epochs to train (default: the config's)")
    args = p.parse_args(argv)
    if args.verb == "render":
        args.out.mkdir(parents=True, exist_ok=True)
        render(args.out.resolve())
        return 0
    results = Path(os.environ["OUT"]) / "results.json" if os.environ.get("OUT") else args.dir / "results.json"
    return run(args.dir.resolve(), args.seeds, args.cores, args.epochs, results)


if __name__ == "__main__":
    raise SystemExit(main())
