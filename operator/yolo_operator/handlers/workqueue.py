"""The keyed work queue every reconcile goes through (client-go's workqueue semantics, small).

Why (issue 10): watch events used to run reconciles inside Kopf's handler calls, one per event, so a burst of
events for one resource ran it several times and Kopf's event loop waited on our API round trips. Here a watch
event only adds the resource's key: a key waiting in the queue is not added twice (ten events, one reconcile), a
key is never processed by two workers at once, and a key added while it is being processed runs once more after,
so no change is missed. A failed run is retried after `retry_s`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, name: str, fn: Callable[[K], object], workers: int, retry_s: float) -> None:
        self.name, self.fn, self.workers, self.retry_s = name, fn, workers, retry_s
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._later: list[tuple[float, int, K]] = []
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        """Workers wait on this one; the retry thread on `_timer` (same lock), so a notify always wakes a worker."""
        self._timer = threading.Condition(self._lock)
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self.processed = 0
        self.failures = 0

    def add(self, key: K) -> None:
        with self._cond:
            if key in self._dirty or self._stopping:
                return
            self._dirty.add(key)
            if key not in self._processing:
                self._queue.append(key)
                self._cond.notify()

    def add_after(self, key: K, delay_s: float) -> None:
        with self._cond:
            heapq.heappush(self._later, (time.monotonic() + delay_s, next(self._order), key))
            self._timer.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def idle(self) -> bool:
        """Nothing queued and nothing in progress (tests wait for this)."""
        with self._cond:
            return not self._queue and not self._processing

    def start(self) -> None:
        with self._cond:
            self._stopping = False
        for i in range(self.workers):
            t = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._delayed, name=f"{self.name}-delayed", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout_s: float = 30) -> None:
        """Stop taking work; the runs in progress finish."""
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
            self._timer.notify_all()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    def _next(self) -> K | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            key = self._queue.popleft()
            self._dirty.discard(key)
            self._processing.add(key)
            return key

    def _done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty and not self._stopping:  # added again while it ran: run once more
                self._queue.append(key)
                self._cond.notify()
            self.processed += 1

    def _work(self) -> None:
        while (key := self._next()) is not None:
            try:
                self.fn(key)
            except Exception as exc:  # one resource's failure must not stop the worker
                self.failures += 1
                log.warning("%s of %s failed (next try in %.0f s): %s", self.name, key, self.retry_s, exc)
                self.add_after(key, self.retry_s)
            finally:
                self._done(key)

    def _delayed(self) -> None:
        """Moves keys whose retry time has come into the queue."""
        with self._lock:
            while not self._stopping:
                now = time.monotonic()
                while self._later and self._later[0][0] <= now:
                    _, _, key = heapq.heappop(self._later)
                    if key not in self._dirty:
                        self._dirty.add(key)
                        if key not in self._processing:
                            self._queue.append(key)
                            self._cond.notify()
                timeout = self._later[0][0] - now if self._later else None
                self._timer.wait(timeout)
