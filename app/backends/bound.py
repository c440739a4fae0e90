"""A concurrency bound that can be resized while calls wait on it (the backend's slots become known late).

asyncio.Semaphore cannot change its size; anyio's CapacityLimiter can, but its borrower bookkeeping and
extra checkpoints cost about 4 % of the service's CPU per line (profiled, bench/RESULTS.md): this is the
plain FIFO semaphore we need, with a `capacity` setter.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType


class Bound:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def capacity(self) -> int:
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        self._capacity = max(1, value)
        self._wake()

    @property
    def in_use(self) -> int:
        return self._used

    def try_acquire(self) -> bool:
        """Take a free slot without waiting (and without jumping a queue): the extra completions of a
        several-answer request ride on slots that are free now, never on ones others wait for."""
        if self._used < self._capacity and not self._waiters:
            self._used += 1
            return True
        return False

    def release(self) -> None:
        """Give back a slot taken with `try_acquire`."""
        self._release()

    async def __aenter__(self) -> None:
        if self._used < self._capacity and not self._waiters:
            self._used += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # a slot was handed to us (counted) when this resolves
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot just as we were cancelled: give it on
            elif waiter in self._waiters:
                # Not there when _wake() already popped this cancelled waiter (and skipped it) before the
                # task got to run this handler: nothing to remove then.
                self._waiters.remove(waiter)
            raise

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def _release(self) -> None:
        self._used -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._used < self._capacity:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._used += 1
                waiter.set_result(None)


def follow_engine(current: int, measured: float | None, engine_bound: bool, slots: int | None, maximum: int) -> int:
    """The bound's size for an engine measured at `measured` calls at once.

    Slots the engine states (llama-server's /props, an Ollama we started) are known: exactly those (capped by
    the setting), as before. Otherwise, once measured: when the engine held calls back, measured + 1 (one call
    waiting at the engine, ready when a slot frees; the rest wait here, where a cancelled line costs nothing
    and a call's timeout measures the call); when it did not, one more than it computed, never less than now:
    the probe upward that finds slots added to a running engine. Never above `maximum`, never below 1."""
    if slots:
        return max(1, min(maximum, slots))
    if measured is None:
        return current
    target = round(measured) + 1
    if not engine_bound:
        target = max(current, target)
    return max(1, min(maximum, target))
