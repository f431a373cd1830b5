import asyncio

import pytest

from townhall.platform.batching import Batcher


class Recorder:
    """A batch function that remembers its batches and can be held mid-batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def run(self, items):
        self.batches.append(list(items))
        await self.gate.wait()
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_an_idle_call_goes_at_once_and_calls_made_meanwhile_go_together():
    recorder = Recorder()
    batcher = Batcher(recorder.run, max_size=100)
    recorder.gate.clear()
    first = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert recorder.batches == [[0]]  # went alone, at once
    rest = [asyncio.create_task(batcher.submit(i)) for i in (2, 4, 6)]
    await asyncio.sleep(0)
    assert recorder.batches == [[0]]  # waiting for the batch under way
    recorder.gate.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [20, 40, 60]
    assert recorder.batches == [[0], [2, 4, 6]]
    assert (batcher.batches, batcher.items) == (2, 4)


async def test_each_call_gets_its_own_outcome_and_an_error_fails_only_its_call():
    batcher = Batcher(Recorder().run, max_size=100)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert outcomes[0] == 0 and outcomes[2] == 20
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == "odd 1"
    assert isinstance(outcomes[3], ValueError)


async def test_batches_are_at_most_max_size():
    recorder = Recorder()
    batcher = Batcher(recorder.run, max_size=3)
    recorder.gate.clear()
    calls = [asyncio.create_task(batcher.submit(i * 2)) for i in range(8)]
    await asyncio.sleep(0)
    recorder.gate.set()
    await asyncio.gather(*calls)
    assert [len(b) for b in recorder.batches] == [3, 3, 2]


async def test_a_failing_batch_fails_every_call_in_it_and_the_next_batch_still_runs():
    runs = 0

    async def flaky(items):
        nonlocal runs
        runs += 1
        if runs == 1:
            raise ConnectionError("database went away")
        return list(items)

    batcher = Batcher(flaky, max_size=10)
    first = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in first)
    assert await batcher.submit(3) == 3


async def test_a_batch_function_giving_the_wrong_number_of_outcomes_is_an_error():
    async def short(items):
        return []

    with pytest.raises(RuntimeError, match="got 0 outcomes"):
        await Batcher(short, max_size=10).submit(1)


async def test_a_cancelled_call_does_not_disturb_the_others():
    recorder = Recorder()
    batcher = Batcher(recorder.run, max_size=10)
    recorder.gate.clear()
    keep = asyncio.create_task(batcher.submit(2))
    drop = asyncio.create_task(batcher.submit(4))
    await asyncio.sleep(0)
    drop.cancel()
    recorder.gate.set()
    assert await keep == 20
    with pytest.raises(asyncio.CancelledError):
        await drop


async def test_idle_waits_for_the_batch_under_way():
    recorder = Recorder()
    batcher = Batcher(recorder.run, max_size=10)
    await batcher.idle()  # nothing under way: returns at once
    recorder.gate.clear()
    call = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(batcher.idle())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    recorder.gate.set()
    await waiter
    assert call.done() and call.result() == 20
