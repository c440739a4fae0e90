"""Ollama's native API (`/api/chat`, `/api/tags`, `/api/show`, `/api/pull`, ...).

Chat goes through `/api/chat` rather than `/v1`: only the native endpoint honours `think: false` for hybrid
models and `keep_alive`, and it reports `thinking` and `done_reason` explicitly. Structured output is the
`format` field (a JSON schema, Ollama >= 0.5.0).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from app.backends.base import BackendBase, BackendKind, ChatReply, ChatRequest, Readiness
from app.backends.breaker import BreakerState
from app.backends.http import JsonHttp, parse_object
from app.backends.ollama_process import diagnose_unreachable, find_binary, ollama_serve_process
from app.backends.timings import from_ollama
from app.errors import BackendCallError, ErrorKind
from app.metrics import Metrics
from app.processes import ManagedProcess, ProcessFailed, ProcessState
from app.settings import Settings

log = logging.getLogger(__name__)

ProgressCallback = Callable[[dict[str, Any]], Awaitable[None] | None]


class OllamaBackend(BackendBase):
    kind: BackendKind = "ollama"

    def __init__(
        self, settings: Settings, metrics: Metrics, session: aiohttp.ClientSession, *, allow_autostart: bool
    ) -> None:
        super().__init__(settings, metrics, f"Ollama at {settings.ollama_url}")
        self.url = settings.ollama_url
        self.http = JsonHttp(session, self.url, settings.max_response_bytes)
        self._allow_autostart = allow_autostart and settings.autostart_ollama
        self.process: ManagedProcess | None = None
        self._capabilities: dict[str, frozenset[str]] = {}
        self.last: Readiness | None = None

    # --- readiness --------------------------------------------------------------------------------------

    async def version(self) -> str:
        body = await self.http.json("GET", "/api/version", timeout_s=2.0)
        return str(body.get("version", "unknown"))

    async def model_names(self) -> frozenset[str]:
        body = await self.http.json("GET", "/api/tags", timeout_s=5.0)
        names: set[str] = set()
        entries = body.get("models")
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict):
                names.update(str(entry[key]) for key in ("name", "model") if entry.get(key))
        return frozenset(names)

    async def _answers(self) -> bool:
        try:
            await self.version()
        except BackendCallError:
            return False
        return True

    async def probe(self) -> Readiness:
        """Cheap: /api/version and /api/tags, each bounded; fails at once while the breaker is open."""
        try:
            self.breaker.check()
            version = await self.version()
            models = await self.model_names()
        except BackendCallError as exc:
            process = self.process
            if process is not None and process.state in (ProcessState.STARTING, ProcessState.RESTARTING):
                problem = f"`ollama serve` (pid {process.pid}) is {process.state.value}; it is not answering yet"
            else:
                problem = await self._down_detail(exc, None)
            readiness = Readiness(False, problem=problem)
        else:
            readiness = Readiness(True, version=version, models=models)
        self.last = readiness
        return readiness

    async def ensure_up(self) -> Readiness:
        """Ready, or started (when allowed) and then ready, or why not."""
        readiness = await self.probe()
        if readiness.ok or self.breaker.state is not BreakerState.CLOSED:
            return readiness  # a backend behind an open breaker is running but hung: starting one won't help
        why_not = self._why_not_startable()
        if why_not is None:
            try:
                await self._start_process()
            except ProcessFailed as exc:
                why_not = f"starting it failed: {exc}"
            else:
                return await self.probe()
        readiness = Readiness(False, problem=await self._down_detail(None, why_not))
        self.last = readiness
        return readiness

    def _why_not_startable(self) -> str | None:
        if not self._allow_autostart:
            return "autostart is off (RETRANSLATE_AUTOSTART_OLLAMA=false)"
        if self.process is not None:
            if self.process.state is ProcessState.FAILED:
                return self.process.problem or "the ollama this service started failed"
            if self.process.running:
                return "the ollama this service started is running but does not answer"
            return None
        if find_binary(self.settings.ollama_binary) is None:
            return f"`{self.settings.ollama_binary}` is not on PATH, so it cannot be started"
        return None

    async def _start_process(self) -> None:
        if self.process is None:
            binary = find_binary(self.settings.ollama_binary)
            assert binary is not None
            self.process = ollama_serve_process(
                binary,
                self.url,
                self.settings.max_concurrency,
                environ=dict(os.environ),
                ready=self._answers,
                start_timeout_s=self.settings.ollama_start_timeout_s,
                max_restarts=self.settings.ollama_max_restarts,
                on_ready=lambda: self.breaker.reset("`ollama serve` was (re)started"),
            )
        await self.process.ensure_running()
        # We set its OLLAMA_NUM_PARALLEL: its slots are known.
        self.set_slots(self.settings.max_concurrency)

    async def _down_detail(self, error: BackendCallError | None, why_not_started: str | None) -> str:
        if error is not None and error.kind is ErrorKind.BREAKER_OPEN:
            return str(error)
        parts = [f"Ollama is not reachable at {self.url}" + (f" ({error})." if error else ".")]
        diagnosis = await asyncio.to_thread(diagnose_unreachable, self.url)
        if diagnosis:
            parts.append(diagnosis[0].upper() + diagnosis[1:] + ".")
        if why_not_started:
            parts.append(f"It was not started: {why_not_started}.")
        parts.append(
            "Fix: start it with `ollama serve` (install it from https://ollama.com if needed), or set "
            "RETRANSLATE_OLLAMA_URL to where it runs."
        )
        return " ".join(parts)

    # --- models -------------------------------------------------------------------------------------------

    async def capabilities(self, model: str) -> frozenset[str]:
        """What `/api/show` says the model can do (e.g. "thinking"); cached per model."""
        if model not in self._capabilities:
            try:
                body = await self.http.json("POST", "/api/show", json_body={"model": model}, timeout_s=10.0)
            except BackendCallError as exc:
                log.warning("could not read the capabilities of %s: %s", model, exc)
                return frozenset()
            caps = body.get("capabilities")
            self._capabilities[model] = frozenset(str(c) for c in caps) if isinstance(caps, list) else frozenset()
        return self._capabilities[model]

    async def unload(self, model: str) -> None:
        """Free the model's (GPU) memory now, as `ollama stop <model>` does."""
        await self.http.request("POST", "/api/generate", json_body={"model": model, "keep_alive": 0}, timeout_s=30.0)

    async def pull(self, model: str, on_progress: ProgressCallback) -> None:
        """Pull a model, handing each NDJSON progress object to `on_progress`."""
        async for event in self.http.ndjson("POST", "/api/pull", json_body={"model": model, "stream": True}):
            if "error" in event:
                raise BackendCallError(ErrorKind.REJECTED, f"pull failed: {event['error']}")
            result = on_progress(event)
            if result is not None:
                await result

    # --- chat ---------------------------------------------------------------------------------------------

    async def _chat(self, request: ChatRequest) -> ChatReply:
        payload: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "stream": False,
            "think": False,
            "options": {"temperature": request.temperature, "num_predict": request.max_tokens},
        }
        if request.seed is not None:
            payload["options"]["seed"] = request.seed
        if request.answer_schema is not None:
            payload["format"] = request.answer_schema
        if self.settings.keep_alive is not None:
            payload["keep_alive"] = self.settings.keep_alive
        _, content = await self.http.request("POST", "/api/chat", json_body=payload, timeout_s=request.timeout_s)
        body = parse_object(content)
        message = body.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content", ""), str):
            raise BackendCallError(ErrorKind.SERVER, "the backend's reply has no message with text content")
        thinking = message.get("thinking")
        reason = body.get("done_reason")
        return ChatReply(
            content=message.get("content") or "",
            thinking=thinking if isinstance(thinking, str) else "",
            finish_reason=reason if isinstance(reason, str) else None,
            timings=from_ollama(body),
        )

    # --- status -------------------------------------------------------------------------------------------

    @property
    def is_ollama(self) -> bool:
        return True

    def describe(self) -> dict[str, Any]:
        last = self.last
        info: dict[str, Any] = {
            "url": self.url,
            "reachable": bool(last and last.ok),
            "version": last.version if last else None,
            "started_by_service": bool(self.process and self.process.running),
            "pid": self.process.pid if self.process else None,
            **self.describe_common(),
        }
        if self.process is not None:
            info["process"] = self.process.describe()
        return info

    def detach_process(self) -> None:
        """Leave a started Ollama running (the CLI: the editor's next steps call Ollama directly)."""
        if self.process is not None:
            self.process.detach()
            self.process = None

    async def close(self) -> None:
        if self.process is not None:
            await self.process.stop()
