"""Fetching from S3 side by side: a prefix of many objects (a data set of images), and one large object (an archive).

A real MinIO on loopback (the binary the test suite builds) holds `--objects` objects of `--kb` KB under a prefix
and one object of `--large-mb` MB; `yolo-workload fetch`'s own code (fetch/store.py) brings each into an empty cache
as it did until 2026-12-05 (one connection: the prefix's objects one after another, the large object in one stream)
and as it does now (`fetch.remote.CONNECTIONS` objects at once; the large object in byte ranges of
`fetch.store.PART_BYTES`, as many at once). Loopback answers in well under a millisecond and at memory speed, where
S3 answers a GET after its first-byte latency and each connection at a bounded rate, so a proxy (a process of its
own) between the two holds each request `--latency-ms` before passing it on, and passes each connection's answer at
most at `--rate-mbs` MB/s: an emulation of those two limits, not a measurement of S3.

    PYTHONPATH=workloads:tests/workloads .venv/bin/python benchmarks/fetch_bench.py --objects 2000 --kb 50 \\
        --large-mb 256 --latency-ms 0 20 --rate-mbs 0 50
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from yolo_workloads.fetch.remote import CONNECTIONS
from yolo_workloads.fetch.store import PART_BYTES

PREFIX = "bench/"


def _proxy(port: int, upstream: tuple[str, int], latency: float, rate: float, ready: Any) -> None:
    """A TCP proxy on `port` to `upstream` that holds each piece of a request `latency` seconds and passes each
    connection's answers at most at `rate` bytes/s (0: as fast as they come)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, rate: float) -> None:
        try:
            while data := await reader.read(1 << 16):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
                if rate:
                    await asyncio.sleep(len(data) / rate)
        finally:
            writer.close()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*upstream)
        await asyncio.gather(
            pipe(reader, up_writer, latency, 0.0), pipe(up_reader, writer, 0.0, rate), return_exceptions=True
        )

    async def serve() -> None:
        server = await asyncio.start_server(client, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def _fetch_seconds(endpoint: str, uri: str, kind: str, side_by_side: bool, work: Path) -> float:
    """Seconds to fetch `uri` into an empty cache: as before 2026-12-05, or side by side (now)."""
    from yolo_workloads.contract import FetchSource
    from yolo_workloads.fetch import remote, store

    remote.CONNECTIONS = store.CONNECTIONS = CONNECTIONS if side_by_side else 1  # type: ignore[misc]
    store.PART_BYTES = PART_BYTES if side_by_side else 1 << 50  # type: ignore[misc]  (one part: the whole)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    source = FetchSource(field="spec.data.source", uri=uri, kind=kind, max_bytes=1 << 40, link=str(work / "link"),
                         endpoint=endpoint, credentials_env=True)  # type: ignore[arg-type]  # fmt: skip
    start = time.perf_counter()
    store.fetch(source, cache, timeout=60)
    return time.perf_counter() - start


def _compare(endpoint: str, uri: str, kind: str, repeats: int, work: Path) -> tuple[float, float]:
    """Medians of `repeats` fetches as before and side by side, alternated."""
    runs: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for side_by_side, seconds in runs.items():
            seconds.append(_fetch_seconds(endpoint, uri, kind, side_by_side, work))
    print(f"{uri} via {endpoint}: before {runs[False]}, side by side {runs[True]}", flush=True)
    return statistics.median(runs[False]), statistics.median(runs[True])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--kb", type=int, default=50)
    parser.add_argument("--large-mb", type=int, default=256)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 20.0])
    parser.add_argument("--rate-mbs", type=float, nargs="+", default=[0.0, 50.0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from remote_servers import ACCESS_KEY, SECRET_KEY, free_port, start_minio

    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    work = Path(tempfile.mkdtemp(prefix="fetch-bench-"))
    (work / "minio").mkdir()
    minio = start_minio(work / "minio")
    rows: list[str] = []
    try:
        minio.bucket("data")
        body = os.urandom(args.kb * 1024)
        for i in range(args.objects):
            minio.put("data", f"{PREFIX}images/{i:06d}.jpg", body)
        minio.put("data", "large.zip", os.urandom(args.large_mb << 20))
        host, port = minio.endpoint.removeprefix("http://").split(":")
        cases = [("prefix", latency, 0.0) for latency in args.latency_ms] + [("large", 0.0, r) for r in args.rate_mbs]
        for what, latency, rate in cases:
            ready, proxy_port = multiprocessing.Event(), free_port()
            proxy = multiprocessing.Process(
                target=_proxy, args=(proxy_port, (host, int(port)), latency / 1000, rate * 1e6, ready), daemon=True
            )
            proxy.start()
            ready.wait(30)
            endpoint = f"http://127.0.0.1:{proxy_port}"
            if what == "prefix":
                uri, kind, size = f"s3://data/{PREFIX}", "tree", f"{args.objects} objects of {args.kb} KB"
            else:
                uri, kind, size = "s3://data/large.zip", "file", f"one object of {args.large_mb} MB"
            before, now = _compare(endpoint, uri, kind, args.repeats, work)
            proxy.terminate()
            limits = f"{latency:g} ms held a request, " + (f"{rate:g} MB/s a connection" if rate else "no rate limit")
            rows.append(f"| {size} | {limits} | {before:.2f} s | **{now:.2f} s** | {before / now:.1f}x |")
    finally:
        minio.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nMinIO on loopback through the proxy, medians of {args.repeats} (connections {CONNECTIONS}, parts "
        f"{PART_BYTES >> 20} MB):"
    )
    print("| fetched | emulated limits | one connection (before) | side by side | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
