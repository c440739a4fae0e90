"""One circuit breaker per backend, for the whole service.

Closed: calls go through; RETRANSLATE_BREAKER_FAILURES timeouts or connection failures in a row open it.
Open: every call, and every readiness check, fails at once for RETRANSLATE_BREAKER_COOLDOWN_S with an
error saying so (a request arriving now waits on nothing). Then half-open: the first call is the probe;
calls arriving meanwhile wait for its verdict. A probe that gets any answer closes the breaker (the backend
is back, even if that answer is an error); a probe that times out or cannot connect opens it again.

A request never carries breaker state of its own: N concurrent or back-to-back requests against a hung
backend pay for the failures once, not N times.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from app.errors import POLICY, BackendCallError, ErrorKind

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    def __init__(
        self, name: str, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
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

    # --- the gate --------------------------------------------------------------------------------------

    def _open_error(self) -> BackendCallError:
        left = max(0.0, self._opened_at + self._cooldown_s - self._clock())
        return BackendCallError(
            ErrorKind.BREAKER_OPEN,
            f"the backend ({self.name}) stopped answering: {self._consecutive} calls in a row failed (last: "
            f"{self._last_error}). Calls fail at once for {left:.0f} s more (RETRANSLATE_BREAKER_COOLDOWN_S); "
            "then one probe call decides whether it is back",
        )

    def _cooling_down(self) -> bool:
        return self.state is BreakerState.OPEN and self._clock() < self._opened_at + self._cooldown_s

    def check(self) -> None:
        """For readiness checks: raise at once while the breaker is open (no network, no waiting)."""
        if self._cooling_down():
            raise self._open_error()

    async def admit(self) -> bool:
        """Let a call through, or raise BREAKER_OPEN. Returns whether this call is the probe."""
        for _ in range(1000):  # bounded: each turn waits for a probe verdict
            if self.state is BreakerState.CLOSED:
                return False
            if self._cooling_down():
                raise self._open_error()
            if self.state is BreakerState.OPEN:  # cooldown over
                self.state = BreakerState.HALF_OPEN
                log.warning("breaker for %s: cooldown over, probing with the next call", self.name)
            if not self._probe_in_flight:
                self._probe_in_flight = True
                self._verdict = asyncio.Event()
                return True
            await self._verdict.wait()
        raise self._open_error()  # pragma: no cover - a thousand probes without a verdict

    def recheck(self, probe: bool) -> None:
        """After waiting for a slot: a non-probe call fails fast if the breaker opened meanwhile."""
        if not probe and self._cooling_down():
            raise self._open_error()

    # --- verdicts --------------------------------------------------------------------------------------

    def record(self, kind: ErrorKind | None, probe: bool, message: str = "") -> None:
        """A call's outcome: None for success, else its error kind."""
        if kind is not None and POLICY[kind].breaker:
            self._consecutive += 1
            self._last_error = message[:300]
            if probe or (self.state is BreakerState.CLOSED and self._consecutive >= self._threshold):
                self._trip()
        elif self.state is BreakerState.CLOSED:
            self._consecutive = 0
        elif probe or kind is None:
            # Any answer to the probe, even an error, shows the backend is there again.
            log.warning("breaker for %s: closed again, the backend answers", self.name)
            self.state = BreakerState.CLOSED
            self._consecutive = 0
        if probe:
            self._end_probe()

    def abandon(self, probe: bool) -> None:
        """The call ended without a verdict (its caller went away): let another call be the probe."""
        if probe:
            self._end_probe()

    def _trip(self) -> None:
        self.state = BreakerState.OPEN
        self._opened_at = self._clock()
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
        self._verdict.set()

    def _end_probe(self) -> None:
        self._probe_in_flight = False
        self._verdict.set()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"state": self.state.value, "consecutive_failures": self._consecutive}
        if self.state is not BreakerState.CLOSED:
            info["last_error"] = self._last_error
            # Rounded up: 0 only once calls go out again (a client that waits this long is not refused).
            left = max(0.0, self._opened_at + self._cooldown_s - self._clock())
            info["retry_in_s"] = math.ceil(left * 10) / 10
        return info
