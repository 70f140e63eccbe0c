"""Autoscaling simulation: a day of diurnal traffic with spikes against autoscaled inference services.

Drives the operator's real HPA step (`yolo_operator.autoscale`) with utilisation from a queueing model of one
replica's capacity (benchmarks/sim/model.py) and compares behaviours against an oracle that knows the trace:
GPU-hours used, time below target capacity, time overloaded, images refused, scale events per hour.

    python benchmarks/autoscale_sim.py                       # 3 services x 24 h, HPA defaults vs tuned behaviours
    python benchmarks/autoscale_sim.py --capacity 2500 --hours 24 --services 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_operator.api.inference_service import Autoscaling, Behavior

from benchmarks.sim import Outcome, SimConfig, TraceConfig, diurnal_trace, simulate

# Behaviours compared. "hpa-defaults" is what a spec without `behavior` gets (the HPA's defaults).
BEHAVIORS: dict[str, dict[str, Any] | None] = {
    "hpa-defaults": None,
    # Lean: forget peaks after 2 min instead of 5; remove at most 20 % a minute so a dip does not strip the pool.
    "lean": {
        "scaleDown": {
            "stabilizationWindowSeconds": 120,
            "policies": [{"type": "Percent", "value": 20, "periodSeconds": 60}],
        }
    },
    # Safe: hold peaks for 10 min, then step down by at most 2 replicas a minute; scale up as the HPA does.
    "safe": {
        "scaleDown": {
            "stabilizationWindowSeconds": 600,
            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
        }
    },
}


def _service_traces(hours: float, services: int, seed: int) -> list[list[float]]:
    """Services of different sizes: the first peaks at 30k images/s, each next one at half the previous."""
    out = []
    for i in range(services):
        peak = 30_000.0 / (2**i)
        cfg = TraceConfig(hours=hours, base_rps=peak / 10.0, peak_rps=peak, seed=seed + i, peak_hour=12.0 + 2 * i)
        out.append(diurnal_trace(cfg))
    return out


def _sum(outcomes: list[Outcome]) -> dict[str, float]:
    seconds = sum(o.seconds for o in outcomes)
    gpu = sum(o.gpu_seconds for o in outcomes)
    oracle = sum(o.oracle_gpu_seconds for o in outcomes)
    offered = sum(o.offered_images for o in outcomes)
    hours = outcomes[0].hours
    return {
        "gpu_hours": gpu / 3600.0,
        "oracle_gpu_hours": oracle / 3600.0,
        "gpu_overhead_pct": 100.0 * (gpu / oracle - 1.0),
        "below_target_pct": 100.0 * sum(o.below_target_s for o in outcomes) / seconds,
        "overloaded_pct": 100.0 * sum(o.overloaded_s for o in outcomes) / seconds,
        "refused_pct": 100.0 * sum(o.refused_images for o in outcomes) / offered,
        "scale_events_per_hour": sum(o.scale_ups + o.scale_downs for o in outcomes) / hours,
        "peak_replicas": float(max(max(o.replicas_per_second) for o in outcomes)),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--capacity", type=float, default=2_500.0, help="images/s per replica (one H100)")
    p.add_argument("--hours", type=float, default=24.0)
    p.add_argument("--services", type=int, default=3)
    p.add_argument("--target", type=float, default=70.0, help="gpuUtilization target, percent")
    p.add_argument("--max-replicas", type=int, default=60)
    p.add_argument("--startup", type=int, default=60, help="seconds from replica creation to Ready")
    p.add_argument("--period", type=int, default=15, help="autoscaler period, seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.capacity <= 0 or args.hours <= 0 or args.services < 1:
        p.error("--capacity and --hours must be positive, --services at least 1")

    started = time.perf_counter()
    traces = _service_traces(args.hours, args.services, args.seed)
    cfg = SimConfig(capacity_rps=args.capacity, period_s=args.period, startup_s=args.startup, seed=args.seed)
    results: dict[str, dict[str, float]] = {}
    for name, behavior in BEHAVIORS.items():
        spec = Autoscaling(
            enabled=True,
            min_replicas=1,
            max_replicas=args.max_replicas,
            target=args.target,
            behavior=Behavior.model_validate(behavior) if behavior else None,
        )
        results[name] = _sum([simulate(tr, spec, cfg) for tr in traces])

    print(
        f"{args.services} services x {args.hours:g} h, capacity {args.capacity:g} images/s per replica, target "
        f"{args.target:g} %, period {args.period} s, startup {args.startup} s, seed {args.seed}"
    )
    cols = list(next(iter(results.values())))
    print("| behaviour | " + " | ".join(cols) + " |")
    print("| --- " * (len(cols) + 1) + "|")
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r[c]:.2f}" for c in cols) + " |")
    print(f"({time.perf_counter() - started:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
