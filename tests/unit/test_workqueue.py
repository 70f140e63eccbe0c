"""The reconcile work queue: a waiting key is not queued twice, one key never runs on two workers at once, a key
added while it runs runs once more, a failure is retried with per-key exponential backoff (capped, jittered, reset
by a success), one retry chain per resource whatever adds it, stop ends the workers."""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter

import pytest
from yolo_operator.runtime.workqueue import ItemBackoff, WorkQueue

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
    queue: WorkQueue[str] = WorkQueue("t", lambda k: runs.update([k]), workers=2, backoff=ItemBackoff(60, 60))
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

    queue: WorkQueue[str] = WorkQueue("t", fn, workers=4, backoff=ItemBackoff(60, 60))
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


def test_a_failed_run_is_retried_after_its_backoff() -> None:
    attempts: list[str] = []
    succeeded = threading.Event()

    def flaky(key: str) -> None:
        attempts.append(key)
        if len(attempts) < 3:
            raise RuntimeError("API server unavailable")
        succeeded.set()

    queue: WorkQueue[str] = WorkQueue("t", flaky, workers=1, backoff=ItemBackoff(0.05, 0.05))
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
    queue: WorkQueue[str] = WorkQueue("t", runs.append, workers=3, backoff=ItemBackoff(60, 60))
    queue.start()
    queue.stop(timeout_s=WAIT_S)
    queue.add("late")
    assert runs == []
    assert len(queue) == 0


def test_backoff_doubles_per_failure_up_to_the_cap_and_a_success_forgets() -> None:
    backoff = ItemBackoff(1.0, 30.0, jitter=0.0)
    assert [backoff.when("a") for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.when("b") == 1  # per key
    assert backoff.failures("a") == 7
    backoff.forget("a")
    assert backoff.when("a") == 1
    for _ in range(2000):  # no overflow after very many failures
        assert backoff.when("c") <= 30


def test_jitter_only_shortens_and_stays_within_its_fraction() -> None:
    for rand in (0.0, 0.5, 0.999999):
        backoff = ItemBackoff(2.0, 10.0, jitter=0.1, rand=functools.partial(float, rand))
        delays = [backoff.when("k") for _ in range(5)]
        for delay, plain in zip(delays, [2, 4, 8, 10, 10], strict=True):
            assert plain * 0.9 <= delay <= plain
    with pytest.raises(ValueError):
        ItemBackoff(5, 1)


def test_one_retry_chain_per_resource_whatever_adds_it() -> None:
    """The issue-17 regression: a resource failing for good, added by watch-like adds and a fast periodic resync,
    is attempted about log2(window / base) times, not once per add plus one chain per resync."""
    attempts: list[tuple[str, str]] = []

    def failing(key: tuple[str, str]) -> None:
        attempts.append(key)
        raise RuntimeError("HTTP 422")

    retried: Counter[str] = Counter()
    queue: WorkQueue[tuple[str, str]] = WorkQueue(
        "t", failing, workers=4, backoff=ItemBackoff(0.05, 0.4, jitter=0.0),
        chain=lambda key: key[1],  # ("full", "r") and ("event", "r") are the same resource
        cause=lambda exc: "Invalid", on_retry=lambda key, cause: retried.update([cause]),
    )  # fmt: skip
    queue.start()
    try:
        queue.add(("event", "r"))
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # a resync every 10 ms, for both routes
            queue.add_periodic(("full", "r"))
            queue.add_periodic(("event", "r"))
            time.sleep(0.01)
    finally:
        queue.stop()
    # Delays 0.05, 0.1, 0.2, 0.4, 0.4, ...: about 7 in 2 s (a resync may slip in only between a success and the
    # next failure, which never comes). Unbounded chains made this hundreds.
    assert 4 <= len(attempts) <= 10, attempts
    assert retried == {"Invalid": len(attempts)}


def test_a_success_resets_the_backoff_and_cancels_the_pending_retry() -> None:
    outcomes = iter([False, False, True])
    runs: list[float] = []

    def fn(key: str) -> None:
        runs.append(time.monotonic())
        if not next(outcomes, True):
            raise RuntimeError("transient")

    queue: WorkQueue[str] = WorkQueue("t", fn, workers=1, backoff=ItemBackoff(0.05, 10, jitter=0.0))
    queue.start()
    try:
        queue.add("a")
        deadline = time.monotonic() + WAIT_S
        while len(runs) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(runs) == 3
        assert runs[1] - runs[0] >= 0.05 and runs[2] - runs[1] >= 0.1
        assert not queue.pending_retry("a") and queue.backoff.failures("a") == 0
        queue.add_after("a", 30)  # a later failure starts over: an earlier retry replaces this one
        queue.add_after("a", 0.01)
        wait_idle(queue)
        time.sleep(0.1)
        assert len(runs) == 4
    finally:
        queue.stop()


def test_a_watch_add_runs_at_once_even_while_backing_off() -> None:
    runs: list[str] = []
    first = threading.Event()

    def fn(key: str) -> None:
        runs.append(key)
        first.set()
        if len(runs) == 1:
            raise RuntimeError("refused")

    queue: WorkQueue[str] = WorkQueue("t", fn, workers=1, backoff=ItemBackoff(30, 60))
    queue.start()
    try:
        queue.add("a")
        assert first.wait(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while not queue.pending_retry("a") and time.monotonic() < deadline:
            time.sleep(0.01)
        queue.add_periodic("a")  # skipped: the retry in ~30 s runs it
        time.sleep(0.1)
        assert runs == ["a"]
        queue.add("a")  # the user edited the resource
        wait_idle(queue)
        assert runs == ["a", "a"]
        assert not queue.pending_retry("a")  # succeeded: the retry is cancelled
    finally:
        queue.stop()
