"""Which backend and model a batch runs on, and when engines are unloaded or stopped.

Created once in the lifespan (or by the CLI). It owns the long-lived HTTP session, the backends and any
process they spawned. Each batch gets a `Lease` on an immutable `BackendHandle` that it keeps to its end:
`auto` switches engines only between batches, and goes back to Ollama as soon as Ollama answers again.
Readiness is checked cheaply and reused for `readiness_ttl_s`; /health never waits for a model load or an
engine start (those run for the requests that need them, or in the background at startup). One decision
tree (`decide`) serves both a batch and /health (health.py); one `BackendState` per backend (state.py) holds
its readiness, its leases (leases.py) and what to free when the last one ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from app.backends.base import Backend, BackendHandle, Readiness
from app.backends.embedded import EmbeddedBackend, demo_model_path
from app.backends.http import new_session
from app.backends.leases import Lease
from app.backends.ollama import OllamaBackend
from app.backends.openai_compat import OpenAICompatBackend
from app.backends.state import BackendState, ReadinessCache
from app.errors import BackendCallError, BackendUnavailable, ModelUnavailable
from app.first_run import missing_model_fix, next_steps, next_steps_markdown
from app.metrics import Metrics
from app.settings import Settings
from app.vocabulary import (
    DEMO_WARNING,
    MODEL_PREFERENCE,
    RECOMMENDED_MODEL,
    first_installed,
    preference_hint,
    same_model,
)

log = logging.getLogger(__name__)

NON_THINKING_ADVICE = (
    "this model thinks before every answer whatever the request says (slow, and it can run out of "
    f"tokens): `ollama pull {RECOMMENDED_MODEL}`, then unset RETRANSLATE_MODEL (or set it to {RECOMMENDED_MODEL})"
)
# No backend answers: what a new user does next (Ollama per OS, a server they have, the demo).
OTHER_WAYS = next_steps()


@dataclass(frozen=True)
class BackendModel:
    """The model a backend will answer with, and why it was chosen."""

    name: str
    reason: str


class Selector:
    def __init__(self, settings: Settings, metrics: Metrics, *, allow_autostart: bool = True) -> None:
        self.settings = settings
        self.metrics = metrics
        self.session = new_session(settings.max_concurrency + 8)
        self.ollama: OllamaBackend | None = None
        self.openai: OpenAICompatBackend | None = None
        self.embedded: EmbeddedBackend | None = None
        if settings.backend in ("auto", "ollama"):
            self.ollama = OllamaBackend(settings, metrics, self.session, allow_autostart=allow_autostart)
        if settings.backend == "openai" and settings.openai_base_url:
            self.openai = OpenAICompatBackend(
                settings, metrics, self.session, settings.openai_base_url, settings.openai_api_key
            )
        self.current: Backend | None = None
        self._states: list[BackendState] = []
        self.model_thinks: dict[str, bool] = {}
        # The model the last batch (or check) resolved to, and why: for the docs page.
        self.last_choice: BackendModel | None = None
        self.startup_problem: str | None = None
        self.pull_status: dict[str, Any] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # --- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """At startup: find (or start) the backend, check the default model, pull it when allowed, say
        loudly what is used. In the background: the service answers /health (and /docs) meanwhile, and
        nothing that goes wrong here takes it down."""
        self._spawn(self._startup())

    def _spawn(self, work: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _startup(self) -> None:
        try:
            backend = await self._choose()
        except BackendUnavailable as exc:
            log.error("NOT READY: %s", exc.detail)
            return
        except Exception as exc:  # a startup check must never take the service down
            log.exception("backend check failed at startup")
            self.startup_problem = f"backend check failed: {exc}"
            return
        log.warning("backend in use: %s (%s)", backend.kind.upper(), self._describe_line(backend))
        if isinstance(backend, OllamaBackend) and self.settings.pull_missing_model:
            readiness = self._state(backend).readiness.last
            # The default model: the one named, else the first installed of the preference list; when none of
            # that list is installed, the recommended one is what to pull.
            wanted = [self.settings.model] if self.settings.model else list(MODEL_PREFERENCE)
            if readiness and readiness.models is not None and first_installed(wanted, readiness.models) is None:
                await self._pull(backend, self.settings.model or RECOMMENDED_MODEL)
        try:
            choice = await self.choose_model(backend, None, refresh=False)
        except ModelUnavailable as exc:
            log.error("%s", exc.detail)
            return
        self.last_choice = choice
        log.warning("model in use: %s (%s)", choice.name, choice.reason)

    async def _pull(self, backend: OllamaBackend, model: str) -> None:
        log.warning("pulling %s (RETRANSLATE_PULL_MISSING_MODEL=true)", model)
        self.pull_status = {"model": model, "state": "pulling", "status": "starting"}
        last = {"status": ""}

        def progress(event: dict[str, Any]) -> None:
            status = str(event.get("status", ""))
            total, completed = event.get("total"), event.get("completed")
            if isinstance(total, int) and isinstance(completed, int) and total:
                log.info("pull %s: %s %.0f%%", model, status, 100.0 * completed / total)
                self.pull_status = {"model": model, "state": "pulling", "status": status,
                                    "percent": round(100.0 * completed / total, 1)}  # fmt: skip
            elif status != last["status"]:
                log.info("pull %s: %s", model, status)
                self.pull_status = {"model": model, "state": "pulling", "status": status}
            last["status"] = status

        try:
            await backend.pull(model, progress)
        except Exception as exc:  # whatever the pull does, the service stays up and says why
            detail = str(exc) if isinstance(exc, BackendCallError) else f"{type(exc).__name__}: {exc}"
            self.pull_status = {"model": model, "state": "failed", "status": detail}
            self.startup_problem = f"pulling {model} failed: {detail}"
            log.error("%s", self.startup_problem)
            return
        self.pull_status = {"model": model, "state": "done", "status": "success"}
        self._state(backend).readiness.last = None  # the model list changed

    async def close(self) -> None:
        """Stop what we spawned (reverse order of creation), close the clients."""
        for task in list(self._background):
            task.cancel()
        for backend in (self.embedded, self.openai, self.ollama):
            if backend is not None:
                try:
                    await backend.close()
                except Exception:  # one backend failing to close must not leave the others running
                    log.exception("closing %s failed", backend.kind)
        await self.session.close()

    # --- readiness ------------------------------------------------------------------------------------

    def _state(self, backend: Backend) -> BackendState:
        for state in self._states:
            if state.backend is backend:
                return state
        state = BackendState(backend, ReadinessCache(self.settings.readiness_ttl_s))
        self._states.append(state)
        return state

    def _embedded_backend(self, explicit: bool) -> EmbeddedBackend | None:
        """The embedded engine: the user's GGUF, or (only when chosen explicitly) the demo model."""
        if self.embedded is not None:
            return self.embedded
        model_path = self.settings.embedded_model_path
        demo = model_path is None
        if model_path is None:
            if not explicit:
                return None
            model_path = demo_model_path()
            if model_path is None:
                raise BackendUnavailable(
                    "RETRANSLATE_BACKEND=embedded without RETRANSLATE_EMBEDDED_MODEL_PATH needs the packaged "
                    "demo model: `python scripts/serve.py --demo` installs the engine and the demo model"
                )
        self.embedded = EmbeddedBackend(self.settings, self.metrics, self.session, model_path, demo=demo)
        return self.embedded

    async def _choose(self) -> Backend:
        """The backend for the next batch, ready (starting it if needed); or BackendUnavailable saying how
        to fix it."""
        backend, readiness = await self.decide(BackendState.ensure)
        if backend is None or not readiness.ok:
            raise BackendUnavailable(readiness.problem or "no backend is ready")
        return self._switch(backend)

    async def decide(self, check: Callable[[BackendState], Awaitable[Readiness]]) -> tuple[Backend | None, Readiness]:
        """The one decision tree: which backend a batch arriving now runs on, by `check` (`ensure` for a batch,
        `probe` for /health), with its readiness; None with the problem when no backend can serve."""
        choice = self.settings.backend
        if choice == "openai":
            if self.openai is None:
                return None, Readiness(
                    False,
                    problem="RETRANSLATE_BACKEND=openai needs RETRANSLATE_OPENAI_BASE_URL (the server's /v1 URL).",
                )
            return self.openai, await check(self._state(self.openai))
        if choice == "embedded":
            try:
                embedded = self._embedded_backend(explicit=True)
            except BackendUnavailable as exc:
                return None, Readiness(False, problem=exc.detail)
            assert embedded is not None
            return embedded, await check(self._state(embedded))
        assert self.ollama is not None
        readiness = await check(self._state(self.ollama))
        if readiness.ok or choice == "ollama":
            return self.ollama, readiness
        embedded = self._embedded_backend(explicit=False)
        if embedded is not None:
            fallback = await check(self._state(embedded))
            if fallback.ok:
                return embedded, fallback
            return None, Readiness(
                False, problem=f"No backend is ready. {readiness.problem} Embedded: {fallback.problem}"
            )
        return None, Readiness(False, problem=f"No backend is ready. {readiness.problem} {OTHER_WAYS}")

    def _switch(self, backend: Backend) -> Backend:
        previous = self.current
        if previous is not backend:
            self.current = backend
            if previous is not None:
                log.warning("backend in use: %s (was %s)", backend.kind.upper(), previous.kind)
            if isinstance(previous, EmbeddedBackend):
                # auto went back to Ollama: the embedded engine's memory is freed once no batch uses it.
                state = self._state(previous)
                state.stop_when_idle = True
                if not state.leases:
                    self._spawn(self._stop_embedded(previous))
        return backend

    # --- models ---------------------------------------------------------------------------------------

    async def choose_model(self, backend: Backend, requested: str | None, *, refresh: bool) -> BackendModel:
        """A model named (request, then RETRANSLATE_MODEL) is used strictly; none named: the first installed
        of the preference list."""
        if isinstance(backend, EmbeddedBackend):
            reason = "the embedded llama-server's model" + (" (the packaged DEMO model)" if backend.demo else "")
            if requested and not same_model(requested, backend.model_name):
                reason = (
                    f"the embedded llama-server has one model, {backend.model_name}; it answers instead of the "
                    f"requested {requested}"
                )
            return BackendModel(backend.model_name, reason)
        named, source = (requested, "the request's model") if requested else (self.settings.model, "RETRANSLATE_MODEL")
        readiness = self._state(backend).readiness.last
        installed = readiness.models if readiness else None
        where = f"{backend.name}"
        if named:
            if installed is None:  # the server does not list its models: it may serve any name
                return BackendModel(named, source)
            found = first_installed([named], installed)
            if found is None and refresh:
                installed = (await self._state(backend).readiness.run(backend.probe)).models or frozenset()
                found = first_installed([named], installed)
            if found is None:
                fix = missing_model_fix(named, installed, ollama=isinstance(backend, OllamaBackend))
                what = "is not pulled in" if isinstance(backend, OllamaBackend) else "is not offered by"
                raise ModelUnavailable(f"model {named!r} {what} {where}. Fix: {fix}.")
            return BackendModel(named, source)
        if not installed:
            raise ModelUnavailable(
                f"{where} does not list its models, so none can be chosen: set RETRANSLATE_MODEL."
                if installed is None
                else f"{where}: {preference_hint([])}."
            )
        preferred = first_installed(MODEL_PREFERENCE, installed)
        if preferred is not None:
            return BackendModel(preferred, "RETRANSLATE_MODEL is unset: the first installed of the preference list")
        if len(installed) == 1 and not isinstance(backend, OllamaBackend):
            only = next(iter(installed))
            return BackendModel(only, "RETRANSLATE_MODEL is unset: the only model the server offers")
        raise ModelUnavailable(f"{where}: {preference_hint(sorted(installed))}.")

    async def _handle(self, backend: Backend, requested: str | None) -> BackendHandle:
        choice = await self.choose_model(backend, requested, refresh=True)
        if requested is None:
            self.last_choice = choice
        capabilities = await backend.capabilities(choice.name)
        return BackendHandle(
            backend=backend,
            model=choice.name,
            thinking_capable="thinking" in capabilities,
            demo=isinstance(backend, EmbeddedBackend) and backend.demo,
            model_reason=choice.reason,
        )

    # --- batches --------------------------------------------------------------------------------------

    async def acquire(self, model: str | None = None) -> Lease:
        """The handle a batch runs on (503-mapped errors say what to do)."""
        backend = await self._choose()
        handle = await self._handle(backend, model)
        self._state(backend).leases += 1
        return Lease(handle, self._release)

    async def _release(self, handle: BackendHandle, unload: bool) -> None:
        backend = handle.backend
        state = self._state(backend)
        if unload:
            state.pending_unloads.add(handle.model)
        state.leases = max(0, state.leases - 1)
        if state.leases:
            return  # another batch still runs on it: free the memory when the last one ends
        models, state.pending_unloads = sorted(state.pending_unloads), set()
        for model in models:
            if isinstance(backend, EmbeddedBackend):
                state.stop_when_idle = True
                continue
            try:
                await backend.unload(model)
                log.info("unloaded %s", model)
            except BackendCallError as exc:
                log.warning("unloading %s failed: %s", model, exc)
        if isinstance(backend, EmbeddedBackend) and state.stop_when_idle:
            await self._stop_embedded(backend)

    async def _stop_embedded(self, backend: EmbeddedBackend) -> None:
        state = self._state(backend)
        if state.leases:
            return
        state.stop_when_idle = False
        # Before the stop, not after: while it runs (seconds), a batch must not be handed an engine that is
        # going away; it starts the next one instead (which waits for this stop to end).
        state.readiness.last = None
        await backend.stop_engine()

    def note_thinking(self, model: str) -> None:
        if not self.model_thinks.get(model):
            log.warning("model %s answered with thinking although asked not to: %s", model, NON_THINKING_ADVICE)
        self.model_thinks[model] = True

    async def available_models(self) -> list[str]:
        backend = await self._choose()
        if isinstance(backend, EmbeddedBackend):
            return [backend.model_name]
        readiness = self._state(backend).readiness.last
        return sorted(readiness.models or []) if readiness else []

    @property
    def demo(self) -> bool:
        """Whether the packaged demo model answers (its output must never reach a dub)."""
        return isinstance(self.current, EmbeddedBackend) and self.current.demo

    def summary(self) -> str:
        """One paragraph (Markdown) for the docs page: what answers now, and a warning for the demo model."""
        backend = self.current
        if backend is None:
            return next_steps_markdown()
        choice = self.last_choice
        model = f" **Model:** `{choice.name}` ({choice.reason})." if choice else ""
        text = f"**Backend:** {self._describe_line(backend)}.{model}"
        if isinstance(backend, EmbeddedBackend) and backend.demo:
            text = f"**⚠ {DEMO_WARNING}**\n\n{text}"
        return text

    # --- /health ----------------------------------------------------------------------------------------

    def _describe_line(self, backend: Backend) -> str:
        if isinstance(backend, EmbeddedBackend):
            return backend.describe_line()
        if isinstance(backend, OllamaBackend):
            started = " (started by this service)" if backend.process and backend.process.running else ""
            version = backend.last.version if backend.last else None
            return f"Ollama {version} at {backend.url}{started}"
        if isinstance(backend, OpenAICompatBackend):
            return f"{backend.server} OpenAI-compatible server at {backend.base_url}"
        return backend.kind
