"""Periodic re-reconcile of every known resource, in place of Kopf's per-object timers.

Why: a Kopf timer is an asyncio task per object and a finalizer on it (two PATCHes per object and their watch
events), and every tick goes through Kopf's handler machinery on the one event-loop thread; at 1,300 resources that
loop was the operator's bottleneck (issue 10). Here the watch handlers tell a `Resync` which resources exist (and a
little state, e.g. the phase); one thread walks them, spread evenly over the period, with at most `workers`
reconciles in flight, so watch-driven reconciles keep most of the handler threads. A failed run is logged and
tried again one period later (the timers' backoff was one period too). The controllers' resyncs only queue keys
(`Runtime.enqueue_periodic`), which leaves a resource that is backing off to its one retry chain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T", bound=Hashable)


class Resync(Generic[T]):
    def __init__(
        self,
        name: str,
        period_s: float,
        fn: Callable[[str, str], object],
        when: Callable[[T], bool] | None = None,
        workers: int = 4,
    ) -> None:
        self.name, self.period_s, self.fn, self.when, self.workers = name, period_s, fn, when, workers
        self._known: dict[tuple[str, str], T] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def seen(self, namespace: str, name: str, info: T) -> None:
        with self._lock:
            self._known[(namespace, name)] = info

    def gone(self, namespace: str, name: str) -> None:
        with self._lock:
            self._known.pop((namespace, name), None)

    def due(self) -> list[tuple[str, str]]:
        """The resources the next round visits (those whose info passes `when`)."""
        with self._lock:
            return [k for k, info in self._known.items() if self.when is None or self.when(info)]

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"resync-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 30) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        slots = threading.BoundedSemaphore(self.workers)
        with ThreadPoolExecutor(self.workers, thread_name_prefix=f"resync-{self.name}") as pool:
            while not self._stop.wait(0):
                started = time.monotonic()
                keys = self.due()
                gap = self.period_s / len(keys) if keys else self.period_s
                for key in keys:
                    if self._stop.wait(gap):
                        return
                    while not slots.acquire(timeout=1.0):
                        if self._stop.is_set():
                            return
                    pool.submit(self._run, key).add_done_callback(lambda _: slots.release())
                if not keys:
                    self._stop.wait(max(0.0, self.period_s - (time.monotonic() - started)))

    def _run(self, key: tuple[str, str]) -> None:
        with self._lock:
            if key not in self._known:
                return  # deleted since the round started
        try:
            self.fn(*key)
        except Exception as exc:
            log.warning("%s of %s/%s failed (next try in %.0f s): %s", self.name, *key, self.period_s, exc)
