"""Fetching an S3 prefix of many objects (a data set of images): one object at a time against CONNECTIONS at once.

A real MinIO on loopback (the binary the test suite builds) holds `--objects` objects of `--kb` KB under a prefix;
`yolo-workload fetch`'s own code (fetch/store.py) brings the prefix into an empty cache with 1 connection (how it
fetched until 2026-12-05) and with `fetch.remote.CONNECTIONS`. Loopback answers in well under a millisecond, where S3
answers a GET after its first-byte latency, so `--latency-ms` puts a proxy (a process of its own) between the two
that holds each request that long before passing it on: an emulation of that latency, not a measurement of S3.

    PYTHONPATH=workloads:tests/workloads .venv/bin/python benchmarks/fetch_tree_bench.py --objects 2000 --kb 50 \\
        --latency-ms 0 20
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PREFIX = "bench/"


def _proxy(port: int, upstream: tuple[str, int], latency: float, ready: Any) -> None:
    """A TCP proxy on `port` to `upstream` that holds each piece of a request `latency` seconds."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
        try:
            while data := await reader.read(1 << 16):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*upstream)
        await asyncio.gather(pipe(reader, up_writer, latency), pipe(up_reader, writer, 0.0), return_exceptions=True)

    async def serve() -> None:
        server = await asyncio.start_server(client, "127.0.0.1", port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fetch_seconds(endpoint: str, connections: int, work: Path) -> float:
    from yolo_workloads.contract import FetchSource
    from yolo_workloads.fetch import remote, store

    remote.CONNECTIONS = store.CONNECTIONS = connections  # type: ignore[misc]
    cache = work / f"cache-{connections}"
    shutil.rmtree(cache, ignore_errors=True)
    source = FetchSource(field="spec.data.source", uri=f"s3://data/{PREFIX}", kind="tree", max_bytes=1 << 40,
                         link=str(work / f"link-{connections}"), endpoint=endpoint, credentials_env=True)  # fmt: skip
    start = time.perf_counter()
    store.fetch(source, cache, timeout=60)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--kb", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 20.0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from remote_servers import ACCESS_KEY, SECRET_KEY, start_minio
    from yolo_workloads.fetch.remote import CONNECTIONS

    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    work = Path(tempfile.mkdtemp(prefix="fetch-tree-bench-"))
    (work / "minio").mkdir()
    minio = start_minio(work / "minio")
    try:
        minio.bucket("data")
        body = os.urandom(args.kb * 1024)
        for i in range(args.objects):
            minio.put("data", f"{PREFIX}images/{i:06d}.jpg", body)
        host, port = minio.endpoint.removeprefix("http://").split(":")
        rows = []
        for latency in args.latency_ms:
            ready = multiprocessing.Event()
            proxy_port = _free_port()
            proxy = multiprocessing.Process(
                target=_proxy, args=(proxy_port, (host, int(port)), latency / 1000, ready), daemon=True
            )
            proxy.start()
            ready.wait(30)
            seconds: dict[int, list[float]] = {1: [], CONNECTIONS: []}
            for _ in range(args.repeats):  # alternated
                for connections, runs in seconds.items():
                    runs.append(_fetch_seconds(f"http://127.0.0.1:{proxy_port}", connections, work))
            proxy.terminate()
            serial, parallel = (statistics.median(seconds[n]) for n in (1, CONNECTIONS))
            rows.append((latency, serial, parallel))
            print(f"latency {latency} ms: 1 connection {seconds[1]}, {CONNECTIONS}: {seconds[CONNECTIONS]}", flush=True)
        mb = args.objects * args.kb / 1024
        print(f"\n{args.objects} objects of {args.kb} KB ({mb:.0f} MB), MinIO on loopback, medians of {args.repeats}:")
        print(f"| latency held per request | 1 connection | {CONNECTIONS} connections | objects/s ({CONNECTIONS}) |")
        print("| --- | --- | --- | --- |")
        for latency, serial, parallel in rows:
            print(f"| {latency:g} ms | {serial:.2f} s | {parallel:.2f} s | {args.objects / parallel:.0f} |")
    finally:
        minio.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
