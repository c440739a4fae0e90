"""Single-flight's lifecycle: a flight cancelled by its last waiter leaving is gone from the table at once."""

from __future__ import annotations

import asyncio

from app.translator.flights import Flight, Flights


async def test_a_request_arriving_while_a_cancelled_flight_unwinds_starts_a_fresh_one() -> None:
    """The editor cancels a batch and starts it again: the second request for the same line must not join the
    flight the first one's leaving cancelled (it would only get CancelledError and fail the whole batch)."""
    landed: list[Flight[str, list[str]]] = []
    flights: Flights[str, list[str]] = Flights(lambda key, flight: landed.append(flight))
    at_backend = asyncio.Event()
    unwinding = asyncio.Event()
    finish_unwinding = asyncio.Event()
    starts = 0

    async def compute(progress: list[str]) -> str:
        nonlocal starts
        starts += 1
        if starts > 1:
            return "fresh answer"
        at_backend.set()
        try:
            await asyncio.Event().wait()  # the first call hangs at the backend
        except asyncio.CancelledError:
            # Closing the connection takes loop turns: the task is cancelled but not done yet.
            unwinding.set()
            await finish_unwinding.wait()
            raise
        return "never"

    first, joined = flights.join("line", compute, [])
    assert not joined
    waiter = asyncio.create_task(flights.wait(first, None))
    await at_backend.wait()
    waiter.cancel()  # the first request's client leaves: its last waiter goes, the flight is cancelled
    await unwinding.wait()
    assert not first.task.done()

    second, joined = flights.join("line", compute, [])  # the same line, asked again while the first unwinds
    assert not joined, "joined a flight that can only raise CancelledError"
    assert await flights.wait(second, None) == "fresh answer"

    finish_unwinding.set()
    await asyncio.gather(first.task, waiter, return_exceptions=True)
    # The late landing of the cancelled flight does not remove the fresh one's entry (it had landed too).
    assert len(flights) == 0
    assert first in landed
    assert second in landed
