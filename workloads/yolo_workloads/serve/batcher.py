"""Dynamic batching: a bounded queue of requests, batches of up to max_batch_size images or max_queue_delay_ms.

Requests (each one or more images) wait in a deque; a single batcher task waits for a free device slot, then for
the oldest request to be `max_queue_delay_ms` old or the batch to be full, whichever comes first, and hands the
batch to a worker thread. Two slots let the host prepare the next batch while the device runs the current one.
Admission counts images not yet handed to the device: over `max_queue_size` the caller gets QueueFull (HTTP 503
with Retry-After) instead of memory growing without bound, and a request that alone holds more images than the
queue gets TooLarge (HTTP 413: waiting cannot help). A batch also closes before its items' cost (decoded bytes)
would pass `max_batch_cost`, so the memory two batches in flight hold is bounded whatever the images' sizes.
A batch that raises is run again request by request, so one request's bad input fails that request only.
`close()` stops admission and drains what is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class QueueFull(Exception):
    """The bounded queue has no room; `retry_after_s` is a hint for the client."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__("queue full")
        self.retry_after_s = retry_after_s


class Closed(Exception):
    """The server is draining and accepts no new work."""


class TooLarge(Exception):
    """The request can never be admitted, however long it waits (more images than the whole queue)."""


@dataclass
class _Job(Generic[T, R]):
    items: list[T]
    future: asyncio.Future[list[R]]
    cost: int = 0
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher(Generic[T, R]):
    """Collects items from concurrent callers into batches for `run_batch` (called in a worker thread)."""

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        max_batch_size: int,
        max_queue_delay_ms: float,
        max_queue_size: int,
        pipeline_depth: int = 2,
        on_batch: Callable[[int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        cost: Callable[[T], int] | None = None,
        max_batch_cost: int | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.cost = cost or (lambda item: 0)
        self.max_batch_cost = max_batch_cost
        self.max_queue_delay_ms = max_queue_delay_ms
        self.max_queue_size = max_queue_size
        self._on_batch = on_batch or (lambda n: None)
        self._on_depth = on_depth or (lambda n: None)
        self._queue: deque[_Job[T, R]] = deque()
        self._pending = 0  # images queued, not yet on the device
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(pipeline_depth)
        self._pool = ThreadPoolExecutor(pipeline_depth, thread_name_prefix="device")
        self._running: set[asyncio.Task[None]] = set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.batch_time_ema_s = 0.05  # for Retry-After hints

    @property
    def depth(self) -> int:
        return self._pending

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="batcher")

    def configure(self, max_batch_size: int, max_queue_delay_ms: float) -> None:
        """Change the batching parameters (serving tuning); takes effect with the next batch."""
        self.max_batch_size = max_batch_size
        self.max_queue_delay_ms = max_queue_delay_ms

    async def submit(self, items: list[T]) -> list[R]:
        if self._closing:
            raise Closed()
        n = len(items)
        if n > self.max_queue_size:
            raise TooLarge(f"{n} images in one request, over max_queue_size={self.max_queue_size}")
        if self._pending + n > self.max_queue_size:
            batches_ahead = self._pending / max(self.max_batch_size, 1) + 1
            raise QueueFull(max(1, round(batches_ahead * self.batch_time_ema_s + 0.5)))
        cost = sum(self.cost(item) for item in items)
        job: _Job[T, R] = _Job(items, asyncio.get_running_loop().create_future(), cost)
        self._queue.append(job)
        self._pending += n
        self._on_depth(self._pending)
        self._wakeup.set()
        return await job.future

    async def _wait(self, timeout: float | None) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _loop(self) -> None:
        while True:
            await self._slots.acquire()
            while not self._queue:
                if self._closing:
                    self._slots.release()
                    return
                await self._wait(None)
            # Wait until the oldest request is max_queue_delay old or the batch is full.
            deadline = self._queue[0].enqueued + self.max_queue_delay_ms / 1000
            while self._pending < self.max_batch_size and not self._closing:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                await self._wait(left)
            jobs: list[_Job[T, R]] = []
            count = cost = 0
            while self._queue and (not jobs or self._fits(count, cost, self._queue[0])):
                job = self._queue.popleft()
                jobs.append(job)
                count += len(job.items)
                cost += job.cost
            self._pending -= count
            self._on_depth(self._pending)
            task = asyncio.get_running_loop().create_task(self._dispatch(jobs, count))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    def _fits(self, count: int, cost: int, job: _Job[T, R]) -> bool:
        """Whether `job` joins a batch that already holds `count` items costing `cost`."""
        if count + len(job.items) > self.max_batch_size:
            return False
        return self.max_batch_cost is None or cost + job.cost <= self.max_batch_cost

    async def _dispatch(self, jobs: list[_Job[T, R]], count: int) -> None:
        items = [item for job in jobs for item in job.items]
        t0 = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            results: Sequence[R] = await loop.run_in_executor(self._pool, self._run_chunks, items)
        except Exception as exc:
            if len(jobs) > 1:  # isolate: run each request alone, so only the one that fails gets the error
                log.warning(
                    "batch of %d failed (%s: %s); running its %d requests one by one",
                    count,
                    type(exc).__name__,
                    exc,
                    len(jobs),
                )
                for job in jobs:
                    await self._run_alone(job)
            else:  # a device failure fails this request, not the server
                log.exception("batch of %d failed", count)
                _fail(jobs[0], exc)
            return
        finally:
            self._slots.release()
        self.batch_time_ema_s = 0.8 * self.batch_time_ema_s + 0.2 * (time.perf_counter() - t0)
        self._on_batch(count)
        start = 0
        for job in jobs:
            n = len(job.items)
            if not job.future.done():
                job.future.set_result(list(results[start : start + n]))
            start += n

    async def _run_alone(self, job: _Job[T, R]) -> None:
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._pool, self._run_chunks, job.items)
        except Exception as exc:
            log.exception("request of %d images failed", len(job.items))
            _fail(job, exc)
            return
        if not job.future.done():
            job.future.set_result(list(results))

    def _run_chunks(self, items: list[T]) -> list[R]:
        """A single request may carry more images (or bytes) than one batch holds: run it in chunks."""
        out: list[R] = []
        chunk: list[T] = []
        cost = 0
        for item in items:
            c = self.cost(item)
            over_cost = self.max_batch_cost is not None and cost + c > self.max_batch_cost
            if chunk and (len(chunk) >= self.max_batch_size or over_cost):
                out.extend(self.run_batch(chunk))
                chunk, cost = [], 0
            chunk.append(item)
            cost += c
        if chunk:
            out.extend(self.run_batch(chunk))
        return out

    async def close(self) -> None:
        """Stop admitting, finish what is queued and running, then stop the worker threads."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
        self._pool.shutdown(wait=True)


def _fail(job: _Job[Any, Any], exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)
