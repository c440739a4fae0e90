"""When to send a failed call again, and how long to wait first. Pure: unit-tested on its own."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from app.errors import BackendCallError


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    backoff_s: float
    backoff_max_s: float
    uniform: Callable[[float, float], float] = field(default=random.uniform, compare=False)

    def should_retry(self, error: BackendCallError, retries_done: int) -> bool:
        """Only kinds whose table entry says another call may help, and only `max_retries` times."""
        return error.policy.retry and retries_done < self.max_retries

    def backoff(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `retry` (1, 2, ...).

        The backend's Retry-After wins, capped at `backoff_max_s` (a local server that says "come back in an
        hour" must not hold the line that long). Otherwise exponential from `backoff_s`, with jitter in
        [base/2, base*1.5]: the retries of many items that failed together do not come back together.
        """
        if retry_after is not None:
            return min(max(0.0, retry_after), self.backoff_max_s)
        base = self.backoff_s * (2 ** (retry - 1))
        return min(self.backoff_max_s, self.uniform(base / 2, base * 1.5))
