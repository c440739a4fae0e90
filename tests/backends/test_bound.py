"""The resizable FIFO bound: slots are counted exactly, whatever order waiters are cancelled and woken in."""

from __future__ import annotations

import asyncio
import contextlib

from app.backends.bound import Bound


async def _hold(bound: Bound, entered: asyncio.Event, release: asyncio.Event) -> None:
    async with bound:
        entered.set()
        await release.wait()


async def _full_bound() -> tuple[Bound, asyncio.Task[None], asyncio.Event]:
    """A bound of one slot, held by a task until the returned event is set."""
    bound = Bound(1)
    entered, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold(bound, entered, release))
    await entered.wait()
    return bound, holder, release


def test_a_waiter_cancelled_after_it_was_popped_leaves_the_count_right() -> None:
    async def scenario() -> None:
        bound, holder, release = await _full_bound()
        waiting = asyncio.create_task(_hold(bound, asyncio.Event(), asyncio.Event()))
        await asyncio.sleep(0)  # let it queue (one loop turn, not a clock)
        assert len(bound._waiters) == 1
        # Free the slot, then cancel the waiter: the holder runs first (it was woken first) and its _wake()
        # pops the already-cancelled waiter and skips it, so the waiter's handler finds it gone from the queue.
        release.set()
        waiting.cancel()
        await holder
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        assert waiting.cancelled()  # a plain cancellation, not a ValueError from the queue
        assert bound.in_use == 0
        assert not bound._waiters
        # The slot is still usable.
        async with bound:
            assert bound.in_use == 1

    asyncio.run(scenario())


def test_a_slot_handed_to_a_cancelled_waiter_is_given_on() -> None:
    async def scenario() -> None:
        bound, holder, release = await _full_bound()
        first = asyncio.create_task(_hold(bound, asyncio.Event(), asyncio.Event()))
        second_entered = asyncio.Event()
        second = asyncio.create_task(_hold(bound, second_entered, asyncio.Event()))
        await asyncio.sleep(0)
        assert len(bound._waiters) == 2
        release.set()
        await holder  # the slot goes to `first` (FIFO) ...
        first.cancel()  # ... which is cancelled before it runs: the slot must pass to `second`
        await asyncio.wait_for(second_entered.wait(), timeout=10)
        assert bound.in_use == 1
        second.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        assert bound.in_use == 0

    asyncio.run(scenario())


def test_growing_the_capacity_wakes_waiters_in_order() -> None:
    async def scenario() -> None:
        bound = Bound(1)
        order: list[int] = []
        gate = asyncio.Event()

        async def worker(i: int) -> None:
            async with bound:
                order.append(i)
                await gate.wait()

        tasks = [asyncio.create_task(worker(i)) for i in range(4)]
        await asyncio.sleep(0)
        assert order == [0]
        assert bound.in_use == 1
        bound.capacity = 3
        await asyncio.sleep(0)
        assert order == [0, 1, 2]
        assert bound.in_use == 3
        bound.capacity = 0  # never below one slot
        assert bound.capacity == 1
        gate.set()
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2, 3]
        assert bound.in_use == 0

    asyncio.run(scenario())
