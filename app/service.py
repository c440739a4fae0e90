"""The service's one door: choose the backend and model, run a batch, unload; health, models, the docs
summary, leaving Ollama running.

The HTTP routes, the CLI and the lifespan use only `RetranslateService` (never the selector or a backend
behind it); the lifespan (or the CLI) creates one and closes it, stopping in reverse order whatever it
started. ("Engine" means only the LLM server: Ollama, llama-server.)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app import langid
from app.backends import Lease, Selector
from app.backends.health import health_report
from app.cache import ResultCache
from app.metrics import Metrics
from app.schemas import RetranslateRequest, RetranslateResponse
from app.settings import Settings
from app.translator import Job, Translator
from app.translator.core import ResultCallback

log = logging.getLogger(__name__)


class RetranslateService:
    def __init__(self, settings: Settings, metrics: Metrics | None = None, *, allow_autostart: bool = True) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.cache = ResultCache(settings.cache_size, settings.cache_path, settings.cache_max_rows)
        self.selector = Selector(settings, self.metrics, allow_autostart=allow_autostart)
        self.translator = Translator(settings, self.cache, self.metrics, on_thinking=self.selector.note_thinking)
        self._releases: set[asyncio.Future[None]] = set()
        self._warmup: asyncio.Future[None] | None = None

    async def open(self, *, check_backend: bool = True) -> None:
        """Open the cache and, for the service, check (and start) the backend in the background."""
        await self.cache.open()
        # The language identifier's model takes about a second to load: in a thread, beside the backend check
        # (the first Latin-script answer waits for it if it comes sooner).
        self._warmup = asyncio.ensure_future(asyncio.to_thread(langid.load))
        if check_backend:
            await self.selector.start()

    async def close(self) -> None:
        if self._warmup is not None:
            await asyncio.wait({self._warmup})  # a thread cannot be cancelled: let it finish
        try:
            await self.translator.close()
            await self.selector.close()
        finally:
            await self.cache.close()

    async def settle(self, timeout_s: float) -> None:
        """Wait (bounded) for batches' releases and unloads still running, e.g. after a cancelled batch."""
        if self._releases:
            await asyncio.wait(set(self._releases), timeout=timeout_s)

    def drain(self, grace_s: float) -> None:
        self.translator.drain(grace_s)

    # --- what the routes and the CLI ask -----------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return await health_report(self.selector)

    async def available_models(self) -> list[str]:
        return await self.selector.available_models()

    async def models(self) -> dict[str, Any]:
        """GET /models: what the backend has, the model a request without one gets, and whether it is the demo."""
        available = await self.selector.available_models()
        health = await health_report(self.selector)
        current = self.selector.current
        return {
            "default": health["model"]["name"] if health["model"]["available"] else None,
            "default_reason": health["model"]["reason"],
            "models": available,
            "backend": current.kind if current else "none",
            "demo_model": self.selector.demo,
            # The most tasks one request may carry: the drop-in and the CLI split a bigger config into batches.
            "max_tasks": self.settings.max_tasks,
        }

    @property
    def demo(self) -> bool:
        """Whether the packaged demo model answers (its output must never reach a dub)."""
        return self.selector.demo

    def summary(self) -> str:
        return self.selector.summary()

    def detach_ollama(self) -> None:
        """Leave an `ollama serve` we started running after we exit (the CLI: the editor's next steps)."""
        if self.selector.ollama is not None:
            self.selector.ollama.detach_process()

    # --- a batch ----------------------------------------------------------------------------------------

    async def acquire(self, model: str | None) -> Lease:
        """The handle a batch will run on; raises 503-mapped errors that say how to fix the backend."""
        return await self.selector.acquire(model)

    async def release(self, lease: Lease, *, unload: bool) -> None:
        """End a batch's hold on its backend, unloading the model when the batch asked to. Whoever acquired
        the lease calls this, once the work is over or cancelled. Shielded: a cancelled caller still
        releases (and unloads: voice cloning runs next on the same GPU); `settle` waits for it."""
        release = asyncio.ensure_future(lease.release(unload=unload))
        self._releases.add(release)
        release.add_done_callback(self._releases.discard)
        await asyncio.shield(release)

    async def retranslate(
        self, body: RetranslateRequest, lease: Lease | None = None, on_result: ResultCallback | None = None
    ) -> RetranslateResponse:
        """Run one batch. `lease` comes from `acquire` when the caller needed to know before starting
        (a stream answers 503 before its first byte): that caller releases it. Without one, the batch
        acquires and releases its own."""
        if lease is None:
            own = await self.acquire(body.model)
            try:
                return await self.retranslate(body, own, on_result)
            finally:
                await self.release(own, unload=body.unload_after)
        handle = lease.handle
        jobs = [Job(t.task_id, t.source, t.target_language, t.max_length, t.context) for t in body.tasks]
        results, summary = await self.translator.run(
            jobs,
            handle,
            deadline_s=body.deadline_s,
            glossary=body.glossary,
            use_cache=body.use_cache,
            on_result=on_result,
            candidates=body.candidates,
        )
        return RetranslateResponse(
            model=handle.model,
            backend=handle.kind,
            demo_model=handle.demo,
            model_reason=handle.model_reason,
            results=results,
            summary=summary,
        )
