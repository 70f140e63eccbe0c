"""Properties of the dynamic batcher under any mix of request sizes and costs (no model, no HTTP).

Each request gets exactly its own items' results; no batch handed to the device passes max_batch_size or the
decoded-byte budget (except a single item that alone is over it, which the server refuses before it gets here);
a batch that raises is rerun request by request, so only the request holding the poison fails; a request with more
images than the whole queue is TooLarge (413), never QueueFull (503).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yolo_workloads.serve.batcher import Batcher, QueueFull, TooLarge

pytestmark = pytest.mark.workloads
POISON = -1


def _run(requests: list[list[int]], max_batch: int, max_cost: int) -> tuple[list[object], list[list[int]]]:
    """Submit all requests at once; items are their own cost (POISON costs 1 and makes its batch raise)."""
    batches: list[list[int]] = []

    def run_batch(items: list[int]) -> Sequence[int]:
        batches.append(list(items))
        if POISON in items:
            raise RuntimeError("poisoned batch")
        return [x * 10 for x in items]

    async def main() -> list[object]:
        b: Batcher[int, int] = Batcher(
            run_batch, max_batch, 20, 10_000, cost=lambda x: max(x, 1), max_batch_cost=max_cost
        )
        b.start()
        results = await asyncio.gather(*(b.submit(r) for r in requests), return_exceptions=True)
        await b.close()
        return list(results)

    return asyncio.run(main()), batches


requests_st = st.lists(
    st.lists(st.integers(1, 50) | st.just(POISON), min_size=1, max_size=6),
    min_size=1,
    max_size=12,
)


@settings(max_examples=80, deadline=None, database=None)
@given(requests=requests_st, max_batch=st.integers(1, 8), max_cost=st.integers(50, 200))
def test_each_request_gets_its_own_results_and_only_the_poisoned_fail(
    requests: list[list[int]], max_batch: int, max_cost: int
) -> None:
    results, batches = _run(requests, max_batch, max_cost)
    for request, result in zip(requests, results, strict=True):
        if POISON in request:
            assert isinstance(result, RuntimeError), (request, result)
        else:
            assert result == [x * 10 for x in request], (request, result)
    for batch in batches:
        assert len(batch) <= max_batch
        assert len(batch) == 1 or sum(max(x, 1) for x in batch) <= max_cost, batch


def test_a_request_larger_than_the_queue_is_too_large_not_queue_full() -> None:
    async def main() -> None:
        b: Batcher[int, int] = Batcher(lambda items: items, 4, 1000, 3)
        b.start()
        pending = asyncio.ensure_future(b.submit([1, 2, 3]))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull):  # the queue holds three: waiting helps
            await b.submit([4])
        with pytest.raises(TooLarge):  # four can never fit
            await b.submit([1, 2, 3, 4])
        assert await pending == [1, 2, 3]
        await b.close()

    asyncio.run(main())
