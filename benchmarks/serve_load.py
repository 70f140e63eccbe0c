"""Load generator for `yolo-workload serve`: closed and open loop, several client processes, 640x480 JPEGs.

Closed loop: C concurrent clients each send the next request when the last one answered (finds peak
throughput). Open loop: Poisson arrivals at a fixed rate, latency measured from the scheduled send time so a
slow server cannot hide its queueing (no coordinated omission). `--sweep` runs closed loop at each concurrency,
takes the peak, then open loops at each `--load-fraction` (0.8) of its request rate: the p99 there is the
figure to hold against the latency target. `--images-per-request k` sends k images per request (v2: a BYTES
input of shape [k], like perf_analyzer's batch size; v1: k multipart files); images/s counts images, latency
is per request. --endpoint v1 (raw JPEG body, or multipart for k > 1) or v2 (Open Inference Protocol, binary
BYTES tensor, as tritonclient sends it).

    python benchmarks/serve_load.py --url http://127.0.0.1:8080 --sweep --concurrency 64,256,512 --processes 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import struct
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def make_payloads(count: int, height: int, width: int, seed: int = 0) -> list[bytes]:
    from yolo_workloads.serve import synthetic

    rng = np.random.default_rng(seed)
    return [synthetic.encode(synthetic.scene(height, width, rng)) for _ in range(count)]


def v2_body(jpegs: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """One v2 request with a BYTES input of shape [k]: each element a 4-byte little-endian length, then the bytes."""
    data = b"".join(struct.pack("<I", len(j)) + j for j in jpegs)
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "shape": [len(jpegs)],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return head + data, {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}


def v1_body(jpegs: list[bytes]) -> tuple[bytes, dict[str, str]]:
    if len(jpegs) == 1:
        return jpegs[0], {"Content-Type": "image/jpeg"}
    boundary = "yoloserveloadboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{i}.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + j
        + b"\r\n"
        for i, j in enumerate(jpegs)
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def make_bodies(opts: dict[str, Any], payloads: list[bytes]) -> list[tuple[bytes, dict[str, str]]]:
    """Requests of k images each, cycling through the payloads so consecutive requests differ."""
    k = opts["images_per_request"]
    groups = [[payloads[(i * k + j) % len(payloads)] for j in range(k)] for i in range(len(payloads))]
    return [(v1_body if opts["endpoint"] == "v1" else v2_body)(g) for g in groups]


async def _worker_main(opts: dict[str, Any], payloads: list[bytes], share: int, seed: int) -> dict[str, Any]:
    import aiohttp

    if opts["endpoint"] == "v1":
        url = opts["url"].rstrip("/") + "/v1/detect"
    else:
        url = opts["url"].rstrip("/") + f"/v2/models/{opts['model']}/infer"
    bodies = make_bodies(opts, payloads)
    lat: list[float] = []
    codes: dict[str, int] = {}
    rnd = random.Random(seed)
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:

        async def one(i: int, t_sched: float) -> None:
            body, headers = bodies[i % len(bodies)]
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    code = str(resp.status)
            except Exception as exc:
                code = type(exc).__name__
            codes[code] = codes.get(code, 0) + 1
            if code == "200":
                lat.append(time.perf_counter() - t_sched)

        if opts.get("started_file"):
            Path(opts["started_file"]).touch()
        t0 = time.perf_counter()
        stop = t0 + opts["duration"]
        if opts["mode"] == "closed":

            async def client(k: int) -> None:
                i = k
                while time.perf_counter() < stop:
                    await one(i, time.perf_counter())
                    i += share

            await asyncio.gather(*(client(k + seed * 7919) for k in range(share)))
        else:
            rate = opts["rate"] / opts["processes"]
            tasks = []
            t_next = t0
            i = seed
            while t_next < stop:
                now = time.perf_counter()
                if t_next > now:
                    await asyncio.sleep(t_next - now)
                tasks.append(asyncio.create_task(one(i, t_next)))
                i += 1
                t_next += rnd.expovariate(rate)
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    return {"latencies": lat, "codes": codes, "elapsed": elapsed}


def _worker(args: tuple[dict[str, Any], list[bytes], int, int]) -> dict[str, Any]:
    opts, payloads, share, seed = args
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_worker_main(opts, payloads, share, seed))


def run_level(opts: dict[str, Any], payloads: list[bytes], pool: Any) -> dict[str, Any]:
    procs = opts["processes"]
    shares = [
        opts.get("concurrency", 0) // procs + (1 if i < opts.get("concurrency", 0) % procs else 0) for i in range(procs)
    ]
    results = pool.map(_worker, [(opts, payloads, shares[i], i) for i in range(procs)])
    lat = np.array([x for r in results for x in r["latencies"]]) * 1000
    codes: dict[str, int] = {}
    for r in results:
        for k, v in r["codes"].items():
            codes[k] = codes.get(k, 0) + v
    elapsed = max(r["elapsed"] for r in results)
    ok = int(lat.size)
    sent = sum(codes.values())
    pct = (lambda q: float(np.percentile(lat, q))) if ok else (lambda q: float("nan"))
    return {
        "mode": opts["mode"],
        "endpoint": opts["endpoint"],
        "images_per_request": opts["images_per_request"],
        "concurrency": opts.get("concurrency"),
        "rate": opts.get("rate"),
        "images_per_second": ok * opts["images_per_request"] / elapsed,
        "requests_per_second": ok / elapsed,
        "offered_requests_per_second": opts.get("rate"),
        "requests_sent": sent,
        "requests_ok": ok,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": float(lat.max()) if ok else float("nan"),
        "codes": codes,
        "duration_s": elapsed,
    }


def fmt(r: dict[str, Any]) -> str:
    load = f"c={r['concurrency']}" if r["mode"] == "closed" else f"rate={r['rate']:.0f}req/s"
    return (
        f"{r['mode']:<6} k={r['images_per_request']:<3} {load:<16} {r['images_per_second']:>9.1f} img/s "
        f"{r['requests_per_second']:>8.1f} req/s  p50 {r['p50_ms']:7.1f} ms  "
        f"p90 {r['p90_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  codes {r['codes']}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--model", default="yolo")
    ap.add_argument("--endpoint", choices=["v1", "v2"], default="v2")
    ap.add_argument("--mode", choices=["closed", "open"], default="closed")
    ap.add_argument("--concurrency", default="64", help="closed loop: comma-separated levels")
    ap.add_argument("--rate", default="1000", help="open loop: comma-separated requests/s")
    ap.add_argument(
        "--sweep", action="store_true", help="closed loop at each concurrency, then open at a fraction of peak"
    )
    ap.add_argument("--load-fraction", default="0.8", help="--sweep: comma-separated fractions of the peak rate")
    ap.add_argument("--images-per-request", type=int, default=1, help="images in each request (k)")
    ap.add_argument("--peak-rps", type=float, help="open loop: the closed-loop peak req/s, to record the fraction")
    ap.add_argument("--label", default="", help="free text stored with each result (e.g. the server config)")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--processes", type=int, default=4)
    ap.add_argument("--images", type=int, default=64, help="distinct payloads")
    ap.add_argument("--image-size", default="480x640", help="HxW")
    ap.add_argument("--json", help="write all results here")
    ap.add_argument("--started-file", help="touched when the first measured window starts (for probes)")
    a = ap.parse_args()
    h, w = (int(v) for v in a.image_size.split("x"))
    payloads = make_payloads(a.images, h, w)
    print(
        f"payloads: {len(payloads)} JPEGs {w}x{h}, mean {np.mean([len(p) for p in payloads]) / 1024:.0f} KiB",
        flush=True,
    )
    if a.images_per_request < 1:
        ap.error("--images-per-request must be at least 1")
    base = {
        "url": a.url,
        "model": a.model,
        "endpoint": a.endpoint,
        "duration": a.duration,
        "processes": a.processes,
        "images_per_request": a.images_per_request,
        "started_file": a.started_file,
    }
    results = []
    with mp.get_context("fork").Pool(a.processes) as pool:
        if a.sweep or a.mode == "closed":
            for c in (int(x) for x in a.concurrency.split(",")):
                r = run_level({**base, "mode": "closed", "concurrency": c}, payloads, pool)
                results.append(r)
                print(fmt(r), flush=True)
        if a.sweep:
            # Fractions of the peak request rate (latency is per request; the server sees requests of k images).
            peak = max(r["requests_per_second"] for r in results)
            for frac in (float(x) for x in a.load_fraction.split(",")):
                r = run_level({**base, "mode": "open", "rate": frac * peak}, payloads, pool)
                r["fraction_of_peak"] = frac
                r["peak_requests_per_second"] = peak
                results.append(r)
                print(fmt(r), flush=True)
        elif a.mode == "open":
            for rate in (float(x) for x in a.rate.split(",")):
                r = run_level({**base, "mode": "open", "rate": rate}, payloads, pool)
                if a.peak_rps:
                    r["fraction_of_peak"] = rate / a.peak_rps
                    r["peak_requests_per_second"] = a.peak_rps
                results.append(r)
                print(fmt(r), flush=True)
    for r in results:
        r["label"] = a.label
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
