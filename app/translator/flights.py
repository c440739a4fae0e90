"""Single-flight: identical items (same cache key) share one computation, within a request and across
concurrent requests. A flight is cancelled only when the last item waiting on it has gone, and it leaves the
table in that same step: a request for the same line arriving while the cancelled task unwinds starts a
fresh flight rather than joining one that can only raise CancelledError."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
P = TypeVar("P")


@dataclass
class Flight(Generic[T, P]):
    key: str
    task: asyncio.Task[T]
    # What the computation has got so far (read by a waiter that leaves before the end).
    progress: P
    waiters: int = 0


class Flights(Generic[T, P]):
    def __init__(self, on_land: Callable[[str, Flight[T, P]], None]) -> None:
        self._flights: dict[str, Flight[T, P]] = {}
        self._on_land = on_land

    def __len__(self) -> int:
        return len(self._flights)

    def join(self, key: str, start: Callable[[P], Coroutine[Any, Any, T]], progress: P) -> tuple[Flight[T, P], bool]:
        """The flight for `key`, started with `start(progress)` unless one is in the air. Returns it and
        whether this caller joined an existing one."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight, True
        task = asyncio.get_running_loop().create_task(start(progress))
        flight = Flight(key, task, progress)
        self._flights[key] = flight
        task.add_done_callback(lambda _task: self._land(key, flight))
        return flight, False

    def _land(self, key: str, flight: Flight[T, P]) -> None:
        self._forget(flight)
        self._on_land(key, flight)

    def _forget(self, flight: Flight[T, P]) -> None:
        if self._flights.get(flight.key) is flight:
            del self._flights[flight.key]

    async def wait(self, flight: Flight[T, P], deadline: float | None) -> T:
        """Wait for the flight's result until `deadline` (loop time; TimeoutError after it). This waiter
        leaving (deadline, client gone) never cancels a flight that others still wait on."""
        flight.waiters += 1
        try:
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                # Out of the table first: the task may take several loop turns to unwind (closing its
                # connection), and nobody may join it meanwhile.
                self._forget(flight)
                flight.task.cancel()
