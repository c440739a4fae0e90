"""Any OpenAI-compatible `/v1` server (vLLM, a LiteLLM proxy, llama-server, Ollama's /v1, a hosted API).

Chat goes through the openai SDK with its own retries off (the translator owns retries, so no work is sent
twice), on the SDK's aiohttp transport (the one HTTP library of the service), wrapped so that every body it
reads is bounded (RETRANSLATE_MAX_RESPONSE_BYTES).
What the server is decides the extras: Ollama's /v1 gets the thinking switch it honours
(`reasoning_effort: "none"`), llama-server gets `chat_template_kwargs` and tells us its slots (`/props`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import httpx2
import openai
import pydantic

from app.backends.base import BackendBase, BackendKind, ChatReply, ChatRequest, Readiness
from app.backends.http import Inflater, JsonHttp, retry_after, too_large
from app.backends.timings import from_llama_server
from app.errors import BackendCallError, ErrorKind, error_for_status
from app.metrics import Metrics
from app.settings import Settings

log = logging.getLogger(__name__)


class _TooLarge(Exception):
    """Raised inside the SDK's body read; mapped to RESPONSE_TOO_LARGE in `_translate`."""


class _LimitedStream(httpx2.AsyncByteStream):
    """The body, decoded here (not by httpx: it would inflate a bomb whole) and bounded after decoding."""

    def __init__(self, inner: httpx2.AsyncByteStream, inflater: Inflater) -> None:
        self._inner = inner
        self._inflater = inflater

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield self._inflater.feed(chunk)
            yield self._inflater.flush()
        except BackendCallError as exc:
            if exc.kind is ErrorKind.RESPONSE_TOO_LARGE:
                raise _TooLarge from None
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


class _LimitedTransport(httpx2.AsyncBaseTransport):
    """Bounds every body the SDK reads, success and error answers alike."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.headers["Accept-Encoding"] = "identity"  # a peer that compresses anyway: see _LimitedStream
        response = await self._inner.handle_async_request(request)
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._limit:
            await response.aclose()
            raise _TooLarge
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        try:
            inflater = Inflater(response.headers.get("content-encoding"), self._limit)
        except BackendCallError:
            await response.aclose()
            raise
        # Decoded here: httpx must not decode again, and the declared length was the encoded one.
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in (b"content-encoding", b"content-length")]
        return httpx2.Response(
            response.status_code,
            headers=headers,
            stream=_LimitedStream(response.stream, inflater),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class _BoundedAioHttpClient(openai.DefaultAioHttpClient):
    """The SDK's aiohttp transport (`openai[aiohttp]`: the service's one HTTP library), every body it reads
    bounded (direct and proxied connections alike)."""

    def __init__(self, *, limit: int, **kwargs: Any) -> None:
        self._limit = limit
        super().__init__(**kwargs)

    def _init_transport(self, *args: Any, **kwargs: Any) -> httpx2.AsyncBaseTransport:
        return _LimitedTransport(super()._init_transport(*args, **kwargs), self._limit)

    def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> httpx2.AsyncBaseTransport:
        return _LimitedTransport(super()._init_proxy_transport(*args, **kwargs), self._limit)


def new_openai_client(base_url: str, api_key: str | None, settings: Settings) -> openai.AsyncOpenAI:
    pool = settings.max_concurrency + 4
    return openai.AsyncOpenAI(
        base_url=base_url,
        api_key=api_key or "not-needed",
        max_retries=0,
        timeout=httpx2.Timeout(settings.request_timeout_s, connect=5.0),
        http_client=_BoundedAioHttpClient(
            limit=settings.max_response_bytes,
            limits=httpx2.Limits(max_connections=pool, max_keepalive_connections=pool),
            timeout=httpx2.Timeout(settings.request_timeout_s, connect=5.0),
        ),
    )


def server_root(base_url: str) -> str:
    """`http://host:port/v1` -> `http://host:port` (where llama-server's /props and Ollama's /api live)."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class OpenAICompatBackend(BackendBase):
    kind: BackendKind = "openai"

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: str | None,
        *,
        name: str | None = None,
    ) -> None:
        super().__init__(settings, metrics, name or f"the OpenAI-compatible server at {base_url}")
        self.base_url = base_url
        self.client = new_openai_client(base_url, api_key, settings)
        self.root = JsonHttp(session, server_root(base_url), settings.max_response_bytes)
        # Learned from the server itself: "ollama", "llama-server" or "generic".
        self.server = "generic"
        self._extra_body: dict[str, Any] = {}
        # Detected once per reachable spell (not on every readiness check: that cost 2 requests every
        # RETRANSLATE_READINESS_TTL_S and 404s on hosted APIs); again after the server was unreachable.
        self._detected = False
        self.last: Readiness | None = None

    # --- readiness --------------------------------------------------------------------------------------

    async def _model_names(self) -> frozenset[str] | None:
        """The models the server offers, or None when it does not list them."""
        try:
            page = await self.client.models.list(timeout=10.0)
        except (openai.APIError, _TooLarge, ValueError, pydantic.ValidationError) as exc:
            error = self._translate(exc)
            if error.kind in (ErrorKind.CONNECTION, ErrorKind.TIMEOUT):
                raise error from None
            return None  # some servers do not offer /v1/models; only "not reachable" is a problem
        return frozenset(m.id for m in page.data)

    async def _detect(self) -> None:
        """Which server this is, from what it answers besides /v1 (cheap, bounded, errors ignored)."""
        try:
            await self.root.json("GET", "/api/version", timeout_s=2.0)
        except BackendCallError:
            pass
        else:
            self._set_server("ollama", {"reasoning_effort": "none"})
            return
        try:
            props = await self.root.json("GET", "/props", timeout_s=2.0)
        except BackendCallError:
            return
        slots = props.get("total_slots")
        if isinstance(slots, int) and not isinstance(slots, bool):
            self.set_slots(slots)
        self._set_server("llama-server", {"chat_template_kwargs": {"enable_thinking": False}})

    def _set_server(self, server: str, extra_body: dict[str, Any]) -> None:
        if server != self.server:
            log.info("%s is %s", self.name, server)
        self.server = server
        # The switch that turns thinking off where the server honours it: Ollama's /v1 maps
        # reasoning_effort "none" to think=false; llama-server's chat templates (Qwen3) read enable_thinking.
        self._extra_body = extra_body

    async def probe(self) -> Readiness:
        try:
            self.breaker.check()
            models = await self._model_names()
        except BackendCallError as exc:
            detail = str(exc) if exc.kind is ErrorKind.BREAKER_OPEN else (
                f"{self.name} does not answer ({exc}). Start it, or fix RETRANSLATE_OPENAI_BASE_URL."
            )  # fmt: skip
            readiness = Readiness(False, problem=detail)
            self._detected = False
        else:
            if not self._detected:
                await self._detect()
                self._detected = True
            readiness = Readiness(True, models=models)
        self.last = readiness
        return readiness

    async def ensure_up(self) -> Readiness:
        return await self.probe()

    async def capabilities(self, model: str) -> frozenset[str]:
        return frozenset()  # /v1 does not say; a thinking model's text is still recognised and stripped

    async def unload(self, model: str) -> None:
        """No /v1 way to unload: the server manages its own memory."""

    # --- chat ---------------------------------------------------------------------------------------------

    def _translate(self, exc: BaseException) -> BackendCallError:
        """The one mapping of the SDK's failures."""
        if isinstance(exc, _TooLarge):
            return too_large(self.settings.max_response_bytes)
        if isinstance(exc, BackendCallError):
            return exc
        if isinstance(exc, openai.APITimeoutError):
            return BackendCallError(ErrorKind.TIMEOUT, f"backend call timed out: {exc}")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            return BackendCallError(
                ErrorKind.CONNECTION, f"backend connection failed: {type(cause).__name__ if cause else exc}"
            )
        if isinstance(exc, openai.APIStatusError):
            return error_for_status(exc.status_code, str(exc.message)[:300], retry_after(exc.response.headers))
        return BackendCallError(ErrorKind.SERVER, f"the backend sent something unusable: {type(exc).__name__}")

    async def _chat(self, request: ChatRequest) -> ChatReply:
        extra: dict[str, Any] = {}
        if request.answer_schema is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "translation", "schema": request.answer_schema, "strict": True},
            }
        try:
            completion = await self.client.chat.completions.create(
                model=request.model,
                messages=request.messages,  # type: ignore[arg-type]
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                seed=request.seed if request.seed is not None else openai.omit,
                n=request.n if request.n > 1 else openai.omit,
                timeout=request.timeout_s,
                extra_body={**self._extra_body, **extra} or None,
            )
        except (openai.APIError, _TooLarge, ValueError, pydantic.ValidationError, json.JSONDecodeError) as exc:
            raise self._translate(exc) from None
        if not completion.choices:
            raise BackendCallError(ErrorKind.SERVER, "the backend answered without choices")
        first, *more = (_reply(choice) for choice in completion.choices[: max(1, request.n)])
        # llama-server's `timings` (an extra field the SDK keeps) are the request's; others report nothing: None.
        timings = from_llama_server((completion.model_extra or {}).get("timings"))
        return replace(first, more=tuple(more), timings=timings)

    @property
    def multi_completion(self) -> bool:
        return self.server == "llama-server"  # `n` since its PR #17775; Ollama's /v1 drops it

    @property
    def is_ollama(self) -> bool:
        return self.server == "ollama"

    def describe(self) -> dict[str, Any]:
        last = self.last
        return {
            "base_url": self.base_url,
            "server": self.server,
            "reachable": bool(last and last.ok),
            **self.describe_common(),
        }

    async def close(self) -> None:
        await self.client.close()


def _reply(choice: Any) -> ChatReply:
    message: Any = choice.message
    extra_fields = getattr(message, "model_extra", None) or {}
    thinking = extra_fields.get("reasoning") or extra_fields.get("reasoning_content") or ""
    content = message.content
    return ChatReply(
        content=content if isinstance(content, str) else "",
        thinking=thinking if isinstance(thinking, str) else "",
        finish_reason=choice.finish_reason,
    )
