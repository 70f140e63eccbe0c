"""The reconcile work queue: a waiting key is not queued twice, one key never runs on two workers at once, a key
added while it runs runs once more, a failure is retried, stop ends the workers."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from yolo_operator.handlers.workqueue import WorkQueue

pytestmark = pytest.mark.unit

WAIT_S = 10.0


def wait_idle(queue: WorkQueue[str]) -> None:
    done = threading.Event()

    def poll() -> None:
        while not queue.idle():
            threading.Event().wait(0.01)
        done.set()

    threading.Thread(target=poll, daemon=True).start()
    assert done.wait(WAIT_S), "queue never went idle"


def test_a_key_waiting_in_the_queue_is_not_added_twice() -> None:
    runs: Counter[str] = Counter()
    queue: WorkQueue[str] = WorkQueue("t", lambda k: runs.update([k]), workers=2, retry_s=60)
    for _ in range(10):  # before start: nothing runs, the adds collapse
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    queue.start()
    try:
        wait_idle(queue)
    finally:
        queue.stop()
    assert runs == {"a": 1, "b": 1}


def test_a_key_added_while_it_runs_runs_once_more_and_never_concurrently() -> None:
    started, release = threading.Event(), threading.Event()
    active: Counter[str] = Counter()
    overlaps: list[str] = []
    runs: list[str] = []
    guard = threading.Lock()

    def fn(key: str) -> None:
        with guard:
            active[key] += 1
            if active[key] > 1:
                overlaps.append(key)
            runs.append(key)
        if len(runs) == 1:
            started.set()
            assert release.wait(WAIT_S)
        with guard:
            active[key] -= 1

    queue: WorkQueue[str] = WorkQueue("t", fn, workers=4, retry_s=60)
    queue.start()
    try:
        queue.add("a")
        assert started.wait(WAIT_S)
        for _ in range(5):  # while "a" runs: queued once as dirty, not handed to a second worker
            queue.add("a")
        release.set()
        wait_idle(queue)
    finally:
        queue.stop()
    assert runs == ["a", "a"]
    assert overlaps == []


def test_a_failed_run_is_retried_after_the_retry_delay() -> None:
    attempts: list[str] = []
    succeeded = threading.Event()

    def flaky(key: str) -> None:
        attempts.append(key)
        if len(attempts) < 3:
            raise RuntimeError("API server unavailable")
        succeeded.set()

    queue: WorkQueue[str] = WorkQueue("t", flaky, workers=1, retry_s=0.05)
    queue.start()
    try:
        queue.add("a")
        assert succeeded.wait(WAIT_S)
    finally:
        queue.stop()
    assert attempts == ["a", "a", "a"]
    assert queue.failures == 2


def test_stop_ends_the_workers_and_later_adds_do_nothing() -> None:
    runs: list[str] = []
    queue: WorkQueue[str] = WorkQueue("t", runs.append, workers=3, retry_s=60)
    queue.start()
    queue.stop(timeout_s=WAIT_S)
    queue.add("late")
    assert runs == []
    assert len(queue) == 0
