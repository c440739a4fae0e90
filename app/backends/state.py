"""What the selector knows about one backend: its readiness (cached), the batches holding it, the models
to unload when the last one ends, and whether to stop its engine when idle. One object per backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from app.backends.base import Backend, Readiness


class ReadinessCache:
    """Readiness of one backend: reused while younger than the TTL; one check in flight at a time."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.last: Readiness | None = None
        self._task: asyncio.Task[Readiness] | None = None

    def fresh(self) -> Readiness | None:
        last = self.last
        if last is not None and time.monotonic() - last.checked_at < self.ttl_s:
            return last
        return None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self, check: Callable[[], Awaitable[Readiness]]) -> Readiness:
        if not self.running:
            self._task = asyncio.create_task(self._record(check()))
        assert self._task is not None
        return await asyncio.shield(self._task)

    async def _record(self, work: Awaitable[Readiness]) -> Readiness:
        self.last = await work
        return self.last


@dataclass
class BackendState:
    backend: Backend
    readiness: ReadinessCache
    leases: int = 0
    pending_unloads: set[str] = field(default_factory=set)
    stop_when_idle: bool = False

    async def ensure(self) -> Readiness:
        """For a request: fresh readiness, starting the engine when allowed (the request waits for it)."""
        fresh = self.readiness.fresh()
        if fresh is not None and fresh.ok and fresh.serving:
            return fresh
        readiness = await self.readiness.run(self.backend.ensure_up)
        if readiness.ok and not readiness.serving:  # it joined a /health probe: start the engine now
            readiness = await self.readiness.run(self.backend.ensure_up)
        return readiness

    async def probe(self) -> Readiness:
        """For /health: cheap, never waits for a start or a model load in progress."""
        fresh = self.readiness.fresh()
        if fresh is not None:
            return fresh
        if self.readiness.running:
            return self.readiness.last or Readiness(False, problem=f"{self.backend.kind}: starting, check in progress")
        return await self.readiness.run(self.backend.probe)
