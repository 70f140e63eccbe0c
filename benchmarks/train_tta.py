"""Time to accuracy: Ultralytics' default settings against the tuned run, on the same data (issue 16).

Both runs go through `yolo-workload train` (the operator's training pod's verb: data, arguments, results): the
defaults run on Ultralytics' own DetectionTrainer (`--plain`: what `yolo train` runs, none of our trainer's work, as
it was before 2026-12-04, when it ran on ours and each of our trainer's gains sped the baseline up too) with
Ultralytics' batch 16, workers 8, AMP, no cache; the tuned run on our trainer, after `yolo-workload tune` (as the
operator's tuning pod would, with the job's epochs so the budget follows the job) or tuning inside the training
process, with its choice. Everything else is equal: model, data, epochs, seed, `deterministic=False` (what our
training pods run), plots off.

Reported per run: training seconds (Ultralytics' own clock: the epochs with their validation), whole seconds (wall
clock of every process, tuning included), the final mAP50-95 (last epoch), and the whole time until the run first
reached the defaults' final mAP50-95 (tuning included; taken at the end of each epoch's validation).

    python3 benchmarks/train_tta.py run --out DIR [--variant shapes] [--images 4000] [--val 800] [--imgsz 640]
        [--epochs 10] [--model yolov8n.yaml] [--json FILE] [--defaults-json EARLIER_REPORT]
        [--tuning pod|in-training] [--checkpoints async|sync] [--extra val=false,...]

The tuned run's report has a `trace`: the set-up before the first batch (`setup:` and `setup/` events around the
trainer's construction, data sets, RAM cache fill, dataloaders, ...), the first two epochs' stages, then every
epoch's end (validation, its stage times, the checkpoint), in seconds since its process started. With
TTA_PROFILE=FILE the tuned run's process is profiled (cProfile, the training thread, by cumulative time) into FILE.

`train-clocked` is the training pod with a wall clock written at each epoch's end (used by `run`).
"""

from __future__ import annotations

import time

_T0 = time.time()  # the training process's start: "whole time" counts imports and data caching too

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import yaml  # noqa: E402

MAP_KEY = "metrics/mAP50-95(B)"
DEFAULTS = {"batch": 16, "workers": 8, "amp": True, "cache": "none", "cuda_graphs": False}  # plain Ultralytics


def train_clocked(config: str, clock: str, plain: bool = False) -> int:
    """`yolo-workload train`, with (epoch, seconds since this process started) appended to `clock` per epoch; with
    `plain`, on Ultralytics' own trainer (`_plain_ultralytics`)."""
    from yolo_workloads.train import cli
    from yolo_workloads.train.metrics import TrainTelemetry

    if plain:
        _plain_ultralytics()

    register = TrainTelemetry.register

    def with_clock(self: TrainTelemetry, trainer: Any) -> None:
        register(self, trainer)

        def on_fit_epoch_end(t: Any) -> None:
            with open(clock, "a") as f:
                f.write(f"{int(t.epoch) + 1},{time.time() - _T0:.3f}\n")

        trainer.add_callback("on_fit_epoch_end", on_fit_epoch_end)
        _trace_start(trainer, clock + ".events")

    TrainTelemetry.register = with_clock  # type: ignore[method-assign]
    if os.environ.get("TTA_CHECKPOINTS") == "sync":  # --checkpoints sync: Ultralytics' own, on the training thread
        from yolo_workloads.train import trainer as trainers

        def save_model(self: Any) -> Any:
            return trainers._write_atomically(self, super(trainers._Offline, self).save_model)

        trainers._Offline.save_model = save_model  # type: ignore[method-assign]
    from yolo_workloads.tune import in_training, study

    for module in (study, in_training):  # the tuning's progress lines, timed: tune_space, tune_trial, ...
        said = module._log

        def log(line: str, said: Any = said) -> None:
            said(line)
            words = line.split()
            with open(clock + ".events", "a") as f:
                f.write(f"tune_{words[1].strip(':=') if len(words) > 1 else 'line'},0,{time.time() - _T0:.3f}\n")

        module._log = log  # type: ignore[assignment]
    _trace_setup(clock + ".events")
    return cli.run(argparse.Namespace(config=config))


def _plain_ultralytics() -> None:
    """The defaults' run on Ultralytics' own DetectionTrainer, as a user who runs `yolo train` gets it: none of our
    trainer's work (validation a batch at a time, checkpoints off the training thread, the label scan in processes,
    ...), which would otherwise speed the baseline up as much as the tuned run. Kept: the offline patches every
    process here needs (no network), and a results.csv reader that needs no polars (Ultralytics' reads the file into
    each checkpoint; polars is not installed on the device)."""
    from ultralytics.models.yolo.detect import DetectionTrainer
    from yolo_workloads.train import trainer as trainers

    class PlainDetectionTrainer(DetectionTrainer):  # type: ignore[misc]
        read_results_csv = trainers._Offline.read_results_csv

    def plain(task: str, augmentation: str = "cpu") -> type[Any]:
        if task != "detect" or augmentation != "cpu":
            raise SystemExit(
                f"the plain Ultralytics baseline trains detect on its own loader, not {task}/{augmentation}"
            )
        return PlainDetectionTrainer

    trainers.trainer_class = plain  # type: ignore[assignment]  (looked up by the verb when it builds the trainer)


_SETUP = (
    "ultralytics.engine.trainer:BaseTrainer.__init__",
    "ultralytics.engine.trainer:BaseTrainer.get_dataset",
    "ultralytics.engine.trainer:BaseTrainer._setup_train",
    "ultralytics.engine.trainer:BaseTrainer.build_optimizer",
    "ultralytics.engine.trainer:BaseTrainer.setup_model",
    "ultralytics.data.base:BaseDataset.__init__",
    "ultralytics.data.dataset:YOLODataset.get_labels",
    "ultralytics.data.base:BaseDataset.cache_images",
    "ultralytics.models.yolo.detect.train:build_dataloader",
    "ultralytics.engine.trainer:check_amp",
    "yolo_workloads.train.device_images:upload",
    "yolo_workloads.train.graphs:install",
)  # fmt: skip
"""What a training process does before its first batch, each traced as `setup:<module>.<name>` (start) and
`setup/<module>.<name>` (end) for its first four calls: where the seconds before `on_pretrain_routine_end` go.
Functions are replaced where their callers look them up (a module that imported a name keeps its own)."""


def _trace_setup(path: str) -> None:
    import functools
    import importlib

    for target in _SETUP:
        module_name, _, attribute = target.partition(":")
        owner: Any = importlib.import_module(module_name)
        *parents, name = attribute.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original, calls, event = getattr(owner, name), [0], f"{module_name.rsplit('.', 1)[-1]}.{attribute}"

        @functools.wraps(original)
        def traced(
            *args: Any, _original: Any = original, _calls: list[int] = calls, _name: str = event, **kwargs: Any
        ) -> Any:
            _calls[0] += 1
            if _calls[0] > 4:
                return _original(*args, **kwargs)
            with open(path, "a") as f:
                f.write(f"setup:{_name},{_calls[0]},{time.time() - _T0:.3f}\n")
            try:
                return _original(*args, **kwargs)
            finally:
                with open(path, "a") as f:
                    f.write(f"setup/{_name},{_calls[0]},{time.time() - _T0:.3f}\n")

        setattr(owner, name, traced)


_TRACED = ("on_pretrain_routine_start", "on_pretrain_routine_end", "on_train_start", "on_train_epoch_start",
           "on_train_batch_end", "on_train_epoch_end", "on_model_save", "on_fit_epoch_end")  # fmt: skip
_EPOCH_END = ("on_train_epoch_end", "on_val_start", "on_val_end", "save_model", "on_model_save", "on_fit_epoch_end")


def _trace_start(trainer: Any, path: str) -> None:
    """Seconds since the process started at each of the first two epochs' stages (event,epoch,seconds), so the
    report says where the time before steady training goes (each epoch's first two batch ends only); then every
    epoch's end: validation's start and end, the checkpoint's, and validation's own stage times (`valms_<stage>`:
    milliseconds an image, in the seconds field)."""
    batches: dict[int, int] = {}
    current = {"epoch": 0}

    def write(event: str, epoch: int, value: float) -> None:
        with open(path, "a") as f:
            f.write(f"{event},{epoch},{value:.3f}\n")

    def note(event: str) -> Any:
        def callback(t: Any) -> None:
            epoch = int(getattr(t, "epoch", current["epoch"]) or 0)
            current["epoch"] = epoch
            if epoch > 1 and event not in _EPOCH_END:
                return
            if event == "on_train_batch_end":
                batches[epoch] = batches.get(epoch, 0) + 1
                if batches[epoch] > 2:
                    return
            write(event, epoch, time.time() - _T0)
            if event == "on_val_end":
                for stage, ms in (getattr(t, "speed", None) or {}).items():
                    write(f"valms_{stage}", epoch, float(ms))

        return callback

    for event in dict.fromkeys(_TRACED + _EPOCH_END):
        if event != "save_model":
            trainer.add_callback(event, note(event))
    save, saving = trainer.save_model, note("save_model")

    def save_model() -> Any:
        saving(trainer)
        return save()

    trainer.save_model = save_model


def _run(cmd: list[str], log: Path) -> float:
    """Run a command to completion, its output to `log`; return its wall seconds (fail loudly)."""
    start = time.monotonic()
    with log.open("w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - start
    if code != 0:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"{' '.join(cmd)} exited {code} after {seconds:.0f} s:\n{tail}")
    return seconds


def _train(out: Path, name: str, base: dict[str, Any], settings: dict[str, Any], plain: bool = False) -> dict[str, Any]:
    """One training through `train-clocked` (`plain`: on Ultralytics' own trainer), its figures read back."""
    run_dir = out / name
    config = {**base, **settings, "output_dir": str(run_dir), "termination_log": str(out / f"{name}.term")}
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    clock = out / f"{name}.clock"
    clock.unlink(missing_ok=True)
    Path(str(clock) + ".events").unlink(missing_ok=True)
    shutil.rmtree(run_dir, ignore_errors=True)  # an earlier run's last.pt would be resumed (finished: no epochs)
    for labels_cache in (Path(base["data"]["root"]) / "labels").glob("*.cache"):
        labels_cache.unlink()  # Ultralytics' label scan, written by the run before: each run scans, as the first
    wall = _run([sys.executable, __file__, "train-clocked", "--config", str(path), "--clock", str(clock),
                 *(["--plain"] if plain else [])], out / f"{name}.log")  # fmt: skip
    with (run_dir / "results.csv").open() as f:
        rows = [{k.strip(): v.strip() for k, v in r.items() if k} for r in csv.DictReader(f)]
    ends = {int(e): float(s) for e, s in (line.split(",") for line in clock.read_text().split())}
    epochs = []
    offset = previous = 0.0
    for r in rows:  # Ultralytics' clock restarts when a run resumes (the warm-up switch): add the phases up
        t = float(r["time"])
        if t < previous:
            offset += previous
        previous = t
        epoch = int(float(r["epoch"]))
        epochs.append(
            {"epoch": epoch, "map": float(r[MAP_KEY]), "train_s": round(offset + t, 3), "wall_s": ends[epoch]}
        )
    summary = json.loads((run_dir / "summary.json").read_text())
    events = Path(str(clock) + ".events")
    trace = [line.split(",") for line in events.read_text().split()] if events.is_file() else []
    events = [{"event": e, "epoch": int(n), "s": float(t)} for e, n, t in trace]
    return {
        "trainer": "ultralytics" if plain else "yolo-workload",
        "trace": events,
        "stages": _stages(events),
        "settings": settings,
        "wall_s": round(wall, 1),
        "train_s": epochs[-1]["train_s"],
        "final_map": epochs[-1]["map"],
        "best_pt_map": summary["metrics"].get("map50to95"),
        "epochs": epochs,
    }


def _stages(events: list[dict[str, Any]]) -> dict[str, float] | None:
    """Where a steady epoch's time goes (medians over the third to the second-last epoch, seconds): training (from
    the previous epoch's end to this one's last batch), validation, the checkpoint's share of the training thread,
    and the epoch's end (validation, checkpoint and the rest)."""
    import statistics

    at: dict[str, dict[int, float]] = {}
    for e in events:
        at.setdefault(e["event"], {}).setdefault(e["epoch"], e["s"])  # the first: final_eval validates again
    ends, fits = at.get("on_train_epoch_end", {}), at.get("on_fit_epoch_end", {})
    steady = [k for k in sorted(ends)[2:-1] if k - 1 in fits and k in fits]
    if not steady:
        return None
    spans = {
        "training_s": [ends[k] - fits[k - 1] for k in steady],
        "validation_s": [at["on_val_end"][k] - at["on_val_start"][k] for k in steady if k in at.get("on_val_end", {})],
        "checkpoint_s": [at["on_model_save"][k] - at["save_model"][k] for k in steady if k in at.get("save_model", {})],
        "epoch_end_s": [fits[k] - ends[k] for k in steady],
    }
    return {name: round(statistics.median(v), 3) for name, v in spans.items() if v}


def _tune(out: Path, base: dict[str, Any], rule: str, augmentation: str) -> tuple[dict[str, Any], float]:
    offered = augmentation.split(",")
    config = {
        "model": base["model"],
        "data": base["data"],
        "imgsz": base["imgsz"],
        "gpus": 1,
        "epochs": base["epochs"],
        "search": {"batch_rule": rule, **({"augmentation": offered} if offered != ["cpu"] else {})},
        "output_dir": str(out / "tuning"),
        "termination_log": str(out / "tune.term"),
    }
    path = out / "tune.yaml"
    path.write_text(yaml.safe_dump(config))
    wall = _run([sys.executable, "-m", "yolo_workloads.cli", "tune", "--config", str(path)], out / "tune.log")
    return json.loads((out / "tune.term").read_text()), wall


def _time_to(run: dict[str, Any], target: float, offset: float) -> float | None:
    """Whole seconds (plus `offset`: tuning) until the run's first epoch at or above `target`."""
    for e in run["epochs"]:
        if e["map"] >= target - 1e-9:
            return round(offset + e["wall_s"], 1)
    return None


def run(args: argparse.Namespace) -> int:
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data_root = out / f"data-{args.variant}-{args.images}-{args.imgsz}"
    base: dict[str, Any] = {
        "model": {"architecture": args.model},
        "data": {
            "shapes": {"images": args.images, "val_images": args.val, "imgsz": args.imgsz, "variant": args.variant},
            "root": str(data_root),
        },
        "imgsz": args.imgsz,
        "epochs": args.epochs,
        "seed": args.seed,
        "gpus": 1,
        "metrics_port": None,
        "extra_args": {"plots": False},
    }
    os.environ["TTA_CHECKPOINTS"] = args.checkpoints  # read by train-clocked, the tuned run's process
    tuned_base = {**base, "extra_args": {**base["extra_args"], **(_settings(args.extra) if args.extra else {})}}
    from yolo_workloads.datasets.shapes import ensure_shapes

    start = time.monotonic()
    ensure_shapes(data_root, n=args.images, imgsz=args.imgsz, val=args.val, seed=0, variant=args.variant)
    print(f"data {data_root.name}: {time.monotonic() - start:.0f} s", flush=True)

    if args.defaults_json:  # the defaults' run measured earlier on the same data (saves a device call's minutes)
        defaults = json.loads(Path(args.defaults_json).read_text())["defaults"]
        defaults["reused_from"] = str(args.defaults_json)
    else:
        settings = {**DEFAULTS, **_settings(args.baseline)} if args.baseline else DEFAULTS
        defaults = _train(out, "defaults", base, settings, plain=not args.baseline)  # a --baseline is ours
    print(f"defaults: {json.dumps({k: v for k, v in defaults.items() if k != 'epochs'})}", flush=True)
    if args.json and not args.defaults_json:  # kept even if the call ends during the tuned run: --defaults-json
        Path(args.json).write_text(json.dumps({**_machine(args), "defaults": defaults, "tuned": None}, indent=2) + "\n")
    from yolo_workloads.tune.trajectory import norm_batch, resolve_rule, warmup_batch

    rule = resolve_rule(args.batch_rule, args.epochs, 1, "detect")  # as the operator renders it for one GPU
    if args.tuning == "in-training" and not args.fixed:
        return _report(args, defaults, *_tuned_in_training(out, tuned_base, rule, args.augmentation, args.cuda_graphs))
    if args.fixed:  # a setting given by hand instead of tuning: what one setting does to the trajectory
        tuned_result, tune_wall = {**DEFAULTS, **_settings(args.fixed), "fixed_by_hand": True}, 0.0
    else:
        tuned_result, tune_wall = _tune(out, base, rule, args.augmentation)
    print(f"tuning: {tune_wall:.0f} s wall, {json.dumps(tuned_result)}", flush=True)
    chosen = {k: tuned_result[k] for k in ("batch", "workers", "amp", "cache")}
    if tuned_result.get("augmentation"):  # the GPU augmentation path (issue 23), fixed or tuning's choice
        chosen["augmentation"] = tuned_result["augmentation"]
    groups = tuned_result.get("norm_batch") or norm_batch(rule, chosen["batch"], 1)  # train/norm_groups.py
    if groups:
        chosen["norm_batch"] = groups
    chosen["cuda_graphs"] = args.cuda_graphs == "true"
    warm = warmup_batch(rule, chosen["batch"], 3.0, args.epochs, 1)  # what the operator renders
    if warm is not None:
        chosen["warmup_batch"] = warm
    tuned = _train(out, "tuned", tuned_base, chosen)
    tuned.update(tune_wall_s=round(tune_wall, 1), whole_s=round(tune_wall + tuned["wall_s"], 1))
    return _report(args, defaults, tuned, tuned_result, tune_wall)


def _tuned_in_training(
    out: Path, base: dict[str, Any], rule: str, augmentation: str, cuda_graphs: str
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """The tuned run as one process (TrainConfig.tuning): its trials are the training's trainer, the chosen one
    trains on. Its whole time is that process's; `tune_wall_s` is the study's own duration inside it."""
    from yolo_workloads.tune.trajectory import norm_batch

    offered = augmentation.split(",")
    search = {"batch_rule": rule, **({"augmentation": offered} if offered != ["cpu"] else {})}
    tuned = _train(out, "tuned", base, {"cuda_graphs": cuda_graphs == "true", "tuning": {"search": search}})
    result = json.loads((out / "tuned" / "summary.json").read_text())["tuning"]
    settings = {k: result[k] for k in ("batch", "workers", "amp", "cache")}
    settings.update(augmentation=result.get("augmentation") or "cpu", cuda_graphs=cuda_graphs == "true")
    groups = norm_batch(rule, settings["batch"], 1)
    if groups:
        settings["norm_batch"] = groups
    tuned.update(settings=settings, tune_wall_s=result["duration_seconds"], whole_s=tuned["wall_s"])
    tuned["tuning"] = "in the training process"
    (out / "tuning").mkdir(exist_ok=True)  # where a tuning process of its own leaves it (train_tta_gpu_run.sh)
    shutil.copy(out / "tuned" / "tuning" / "tune_result.json", out / "tuning" / "tune_result.json")
    return tuned, result, 0.0


def _report(
    args: argparse.Namespace, defaults: dict[str, Any], tuned: dict[str, Any], tuned_result: dict[str, Any],
    tune_wall: float,
) -> int:  # fmt: skip
    """Both runs' figures against the defaults' final mAP, printed and (with --json) written."""
    defaults["whole_s"] = defaults["wall_s"]
    target = defaults["final_map"]
    defaults["time_to_target_s"] = _time_to(defaults, target, 0.0)
    tuned["time_to_target_s"] = _time_to(tuned, target, tune_wall)
    report = {
        **_machine(args),
        "target_map": target,
        "defaults": defaults,
        "tuned": tuned,
        "tuning": tuned_result,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(_table(report), flush=True)
    return 0


def _machine(args: argparse.Namespace) -> dict[str, Any]:
    """When, where and with what arguments: the head of every report."""
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "gpu": _gpu(),
        "cpus": os.cpu_count(),
        "args": {k: str(v) for k, v in vars(args).items() if k != "func"},
    }


def _settings(text: str) -> dict[str, Any]:
    """`batch=32,workers=8,cache=none,amp=true` as typed settings."""
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        out[key.strip()] = int(value) if value.isdigit() else {"true": True, "false": False}.get(value, value)
    return out


def _gpu() -> str:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:  # the report is still worth having
        return "unknown"


def _table(report: dict[str, Any]) -> str:
    lines = [
        f"{report['args']['model']} {report['args']['variant']} {report['args']['images']}/{report['args']['val']} "
        f"at {report['args']['imgsz']}, {report['args']['epochs']} epochs, {report['gpu']}, {report['cpus']} CPUs; "
        f"target mAP50-95 {report['target_map']:.3f}",
        "| run | settings | tuning s | training s | whole s | final mAP50-95 | whole s to defaults' final mAP |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ("defaults", "tuned"):
        r = report[name]
        s = r["settings"]
        lines.append(
            f"| {name} | batch {s['batch']}{' after warm-up at ' + str(s['warmup_batch']) if s.get('warmup_batch') else ''}{', norm groups of ' + str(s['norm_batch']) if s.get('norm_batch') else ''}, workers {s['workers']}, amp {s['amp']}, cache {s['cache']}"
            f"{', augmentation ' + s['augmentation'] if s.get('augmentation') else ''} "
            f"| {r.get('tune_wall_s', 0):.0f} | {r['train_s']:.0f} | {r['whole_s']:.0f} | {r['final_map']:.3f} "
            f"| {r['time_to_target_s'] if r['time_to_target_s'] is not None else 'not reached'} |"
        )
    stages = report["tuned"].get("stages")
    if stages:
        lines.append("tuned run, a steady epoch (medians, s): " + ", ".join(f"{k[:-2]} {v}" for k, v in stages.items()))
    return "\n".join(lines)


def _profiled(verb: Any, *args: Any) -> int:
    """The verb, under cProfile when TTA_PROFILE names a file: the training thread's functions by cumulative time
    (where the set-up before the first batch goes; relative figures, as the profiler slows Python code down)."""
    path = os.environ.get("TTA_PROFILE")
    if not path:
        return int(verb(*args))
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    try:
        return int(profiler.runcall(verb, *args))
    finally:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(int(os.environ.get("TTA_TOP", "90")))
        Path(path).write_text(text.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    clocked = sub.add_parser("train-clocked")
    clocked.add_argument("--config", required=True)
    clocked.add_argument("--clock", required=True)
    clocked.add_argument("--plain", action="store_true", help="on Ultralytics' own trainer (the defaults' run)")
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--variant", choices=("shapes", "crowded"), default="shapes")
    r.add_argument("--images", type=int, default=4000)
    r.add_argument("--val", type=int, default=800)
    r.add_argument("--imgsz", type=int, default=640)
    r.add_argument("--epochs", type=int, default=10)
    r.add_argument("--model", default="yolov8n.yaml")
    r.add_argument("--json", default=None)
    r.add_argument(
        "--batch-rule",
        default="auto",
        choices=("auto", "defaults", "defaults_then_nbs", "nbs", "grouped", "any"),
        help="tuning's batch rule (the operator's default: auto, resolved by the epochs on one GPU)",
    )
    r.add_argument("--seed", type=int, default=0, help="training seed of both runs (the data is always seed 0)")
    r.add_argument("--fixed", default="", help="train with these settings instead of tuning: batch=32,workers=8")
    r.add_argument(
        "--augmentation", default="cpu,gpu", help="the paths tuning may measure (the operator's default on a GPU)"
    )
    r.add_argument(
        "--tuning",
        default="pod",
        choices=("pod", "in-training"),
        help="tune in a process of its own before training (pod) or inside the training process (TrainConfig.tuning)",
    )
    r.add_argument("--cuda-graphs", default="true", help="the tuned run's training forward/backward as CUDA graphs")
    r.add_argument("--baseline", default="", help="the first run's settings instead of Ultralytics' defaults")
    r.add_argument("--defaults-json", default=None, help="reuse the defaults' run from an earlier report")
    r.add_argument(
        "--checkpoints", choices=("async", "sync"), default="async",
        help="sync: the tuned run writes checkpoints on the training thread, as Ultralytics does (for comparing)",
    )  # fmt: skip
    r.add_argument("--extra", default="", help="Ultralytics arguments for the tuned run only: val=false,...")
    args = parser.parse_args()
    if args.verb == "train-clocked":
        return _profiled(train_clocked, args.config, args.clock, args.plain)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
