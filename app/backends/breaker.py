"""One circuit breaker per backend, for the whole service.

Closed: calls go through; RETRANSLATE_BREAKER_FAILURES timeouts or connection failures in a row open it.
Open: every call, and every readiness check, fails at once for RETRANSLATE_BREAKER_COOLDOWN_S with an
error saying so (a request arriving now waits on nothing). Then half-open: the first call is the probe;
calls arriving meanwhile wait for its verdict. A probe that gets any answer closes the breaker (the backend
is back, even if that answer is an error); a probe that times out or cannot connect opens it again.

A request never carries breaker state of its own: N concurrent or back-to-back requests against a hung
backend pay for the failures once, not N times.

It counts incidents, not calls: connection failures of calls that were in flight together (an engine killed
under them) are one incident, not one failure per call. Timeouts still count per call (a hung engine is
down, and each of them cost a whole RETRANSLATE_REQUEST_TIMEOUT_S).

A restart is not an outage: while the connection failures that opened it are refusals (nothing listens
on the port) and the outage is younger than RETRANSLATE_BREAKER_RESTART_WINDOW_S, calls wait for the
half-open probe instead of failing at once, each until its own deadline; probes go out after a short gap
(0.25 s, doubling, at most the cooldown). A call fails `breaker_open` only when its deadline would pass
before the next probe. After the window the engine counts as down: calls fail at once during the cooldown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from app.errors import POLICY, BackendCallError, ErrorKind

log = logging.getLogger(__name__)

# The first gap before probing an engine that refuses connections (a restart takes about a second).
RESTART_FIRST_GAP_S = 0.25


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    def __init__(
        self,
        name: str,
        failures: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        restart_window_s: float = 0.0,
    ) -> None:
        self.name = name
        self._threshold = failures
        self._cooldown_s = cooldown_s
        self._clock = clock
        self.state = BreakerState.CLOSED
        self._consecutive = 0
        self._opened_at = 0.0
        self._last_error = ""
        self._probe_in_flight = False
        self._verdict = asyncio.Event()
        self._restart_window_s = restart_window_s
        # When the current incident began: a connection failure of a call sent before it is the same incident.
        self._incident_at = -math.inf
        # The outage (breaker opened from closed) began at; whether it looks like a restart (refusals).
        self._outage_at = 0.0
        self._restarting = False
        self._gap_s = cooldown_s

    # --- the gate --------------------------------------------------------------------------------------

    def _open_error(self) -> BackendCallError:
        left = max(0.0, self._opened_at + self._gap_s - self._clock())
        return BackendCallError(
            ErrorKind.BREAKER_OPEN,
            f"the backend ({self.name}) stopped answering: {self._consecutive} calls in a row failed (last: "
            f"{self._last_error}). Calls fail at once for {left:.0f} s more (RETRANSLATE_BREAKER_COOLDOWN_S); "
            "then one probe call decides whether it is back",
        )

    def _cooling_down(self) -> bool:
        return self.state is BreakerState.OPEN and self._clock() < self._opened_at + self._gap_s

    def now(self) -> float:
        return self._clock()

    def restarting(self) -> bool:
        """The engine refuses connections since less than RETRANSLATE_BREAKER_RESTART_WINDOW_S: calls wait."""
        return (
            self._restarting
            and self.state is not BreakerState.CLOSED
            and self._clock() < self._outage_at + self._restart_window_s
        )

    async def _wait(self, until: float) -> None:
        """Wait for the pending probe's verdict (if one is pending) or until `until` (breaker clock)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if until == math.inf else max(0.0, until - self._clock())):
                if self._verdict.is_set():
                    await asyncio.Event().wait()  # no verdict pending: just the time
                await self._verdict.wait()

    def check(self) -> None:
        """For readiness checks: raise at once while the breaker is open (no network, no waiting)."""
        if self._cooling_down():
            raise self._open_error()

    async def admit(self, deadline: float | None = None) -> bool:
        """Let a call through, or raise BREAKER_OPEN. Returns whether this call is the probe. `deadline`
        (breaker clock): how long this call may wait for a restarting engine."""
        for _ in range(1000):  # bounded: each turn waits for a probe verdict
            if self.state is BreakerState.CLOSED:
                return False
            if self._cooling_down():
                next_probe = self._opened_at + self._gap_s
                if not self.restarting() or (deadline is not None and deadline <= next_probe):
                    raise self._open_error()
                await self._wait(next_probe)
                continue
            if self.state is BreakerState.OPEN:  # cooldown over
                self.state = BreakerState.HALF_OPEN
                log.warning("breaker for %s: cooldown over, probing with the next call", self.name)
            if not self._probe_in_flight:
                self._probe_in_flight = True
                self._verdict = asyncio.Event()
                return True
            await self._wait(math.inf if deadline is None or not self.restarting() else deadline)
            if deadline is not None and self._clock() >= deadline and self.state is not BreakerState.CLOSED:
                raise self._open_error()
        raise self._open_error()  # pragma: no cover - a thousand probes without a verdict

    def recheck(self, probe: bool) -> None:
        """After waiting for a slot: a non-probe call fails fast if the breaker opened meanwhile."""
        if not probe and self._cooling_down():
            raise self._open_error()

    # --- verdicts --------------------------------------------------------------------------------------

    def record(
        self,
        kind: ErrorKind | None,
        probe: bool,
        message: str = "",
        *,
        sent_at: float | None = None,
        refused: bool = False,
    ) -> None:
        """A call's outcome: None for success, else its error kind. `sent_at` (breaker clock): when the call
        went out; `refused`: the connection could not be opened."""
        if kind is not None and POLICY[kind].breaker:
            self._last_error = message[:300]
            same = kind is ErrorKind.CONNECTION and sent_at is not None and sent_at <= self._incident_at
            if not same:
                self._consecutive += 1
                if kind is ErrorKind.CONNECTION:
                    self._incident_at = self._clock()
            # A refusal is unambiguous (nothing listens): waiting for the threshold would only let the calls
            # queued behind it burn their retries on a closed port.
            restart = refused and self._restart_window_s > 0
            closed = self.state is BreakerState.CLOSED
            if probe or (closed and (self._consecutive >= self._threshold or restart)):
                self._trip(refused)
        elif self.state is BreakerState.CLOSED:
            self._consecutive = 0
        elif probe or kind is None:
            # Any answer to the probe, even an error, shows the backend is there again.
            log.warning("breaker for %s: closed again, the backend answers", self.name)
            self.state = BreakerState.CLOSED
            self._consecutive = 0
            self._restarting = False
        if probe:
            self._end_probe()

    def abandon(self, probe: bool) -> None:
        """The call ended without a verdict (its caller went away): let another call be the probe."""
        if probe:
            self._end_probe()

    def _trip(self, refused: bool) -> None:
        now = self._clock()
        if self.state is BreakerState.CLOSED:
            self._outage_at = now
            self._restarting = refused and self._restart_window_s > 0
            self._gap_s = RESTART_FIRST_GAP_S if self._restarting else self._cooldown_s
        elif self.restarting() and refused:
            self._gap_s = min(self._gap_s * 2, self._cooldown_s)
        else:
            self._restarting = False
            self._gap_s = self._cooldown_s
        self.state = BreakerState.OPEN
        self._opened_at = now
        log.error(
            "breaker for %s: open for %g s after %d failures in a row (last: %s)",
            self.name,
            self._cooldown_s,
            self._consecutive,
            self._last_error,
        )

    def reset(self, why: str) -> None:
        """The backend was started again by us (its process restarted): earlier failures say nothing about it."""
        if self.state is not BreakerState.CLOSED:
            log.warning("breaker for %s: closed again, %s", self.name, why)
        self.state = BreakerState.CLOSED
        self._consecutive = 0
        self._restarting = False
        self._verdict.set()

    def _end_probe(self) -> None:
        self._probe_in_flight = False
        self._verdict.set()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"state": self.state.value, "consecutive_failures": self._consecutive}
        if self.state is not BreakerState.CLOSED:
            info["last_error"] = self._last_error
            # Rounded up: 0 only once calls go out again (a client that waits this long is not refused).
            left = max(0.0, self._opened_at + self._gap_s - self._clock())
            info["restarting"] = self.restarting()
            info["retry_in_s"] = math.ceil(left * 10) / 10
        return info
