"""Backend clients: Ollama's native API and any OpenAI-compatible `/v1` server.

Both speak one small interface to the translator (`ChatClient.chat`). Every transport or HTTP failure is
translated once, here, into a typed `BackendCallError`; nothing else looks at raw status codes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import httpx
import openai

from app.errors import (
    BackendBusy,
    BackendCallError,
    BackendConnectionError,
    BackendRejected,
    BackendServerError,
    BackendTimeout,
    ModelMissing,
)
from app.prompt import Message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatReply:
    content: str
    # Thinking text the backend returned in a separate field (Ollama `thinking`, /v1 `reasoning`).
    thinking: str
    # "stop", "length" (cut off by the cap), ...
    finish_reason: str | None


class ChatClient(Protocol):
    async def chat(
        self,
        model: str,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        timeout_s: float,
    ) -> ChatReply: ...


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from local servers; fall back to our own backoff


def _error_text(content: bytes, reason: str) -> str:
    """The message in an error body: Ollama's `{"error": "..."}` or OpenAI's `{"error": {"message"}}`."""
    try:
        body = json.loads(content)
    except ValueError:
        return content[:200].decode("utf-8", "replace") or reason
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message", error))
        return str(error)
    return str(body)[:200]


def error_for_status(status: int, message: str, retry_after: float | None) -> BackendCallError:
    """The typed error for a backend's non-2xx answer."""
    text = f"backend answered HTTP {status}: {message}"
    if status == 404 and "not found" in message.lower():
        return ModelMissing(text)
    if status in (429, 503):
        return BackendBusy(text, retry_after=retry_after)
    if status >= 500:
        return BackendServerError(text, retry_after=retry_after)
    return BackendRejected(text)


@asynccontextmanager
async def _translated_httpx_errors(what: str) -> AsyncIterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise BackendTimeout(f"{what} timed out ({type(exc).__name__})") from exc
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise BackendConnectionError(f"{what} failed: {type(exc).__name__}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise BackendConnectionError(f"{what} failed: {type(exc).__name__}: {exc}") from exc


class OllamaClient:
    """Ollama's native API.

    Chat goes through `/api/chat` rather than `/v1`: only the native endpoint honours `think: false` for
    hybrid models and `keep_alive`, and it reports `thinking` and `done_reason` explicitly.
    """

    def __init__(
        self, http: httpx.AsyncClient, chat_session: aiohttp.ClientSession, base_url: str, keep_alive: str | None
    ) -> None:
        self._http = http
        # The hot path (one call per line) goes through aiohttp: httpx cost ~2 ms of CPU per call here,
        # which capped the service near 400 lines/s; aiohttp about a third of that (bench/RESULTS.md).
        self._chat_session = chat_session
        self.base_url = base_url
        self._keep_alive = keep_alive

    async def _request(
        self, method: str, path: str, *, timeout_s: float | None = None, **kwargs: Any
    ) -> httpx.Response:
        url = f"{self.base_url}{path}"
        extra: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}
        async with _translated_httpx_errors(f"{method} {url}"):
            response = await self._http.request(method, url, **extra, **kwargs)
        if response.status_code >= 400:
            raise error_for_status(
                response.status_code,
                _error_text(response.content, response.reason_phrase),
                _retry_after(response.headers),
            )
        return response

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise BackendServerError(f"backend sent a body that is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise BackendServerError("backend sent JSON that is not an object")
        return body

    async def version(self, timeout_s: float = 2.0) -> str:
        body = self._json(await self._request("GET", "/api/version", timeout_s=timeout_s))
        return str(body.get("version", "unknown"))

    async def model_names(self) -> set[str]:
        body = self._json(await self._request("GET", "/api/tags", timeout_s=5.0))
        names: set[str] = set()
        for entry in body.get("models") or []:
            for key in ("name", "model"):
                if entry.get(key):
                    names.add(str(entry[key]))
        return names

    async def capabilities(self, model: str) -> list[str]:
        body = self._json(await self._request("POST", "/api/show", json={"model": model}, timeout_s=10.0))
        return [str(c) for c in body.get("capabilities") or []]

    async def loaded_models(self) -> list[str]:
        body = self._json(await self._request("GET", "/api/ps", timeout_s=5.0))
        return [str(m.get("name") or m.get("model")) for m in body.get("models") or []]

    async def unload(self, model: str) -> None:
        """Free the model's (GPU) memory now, as `ollama stop <model>` does."""
        await self._request("POST", "/api/generate", json={"model": model, "keep_alive": 0}, timeout_s=30.0)

    async def pull(self, model: str, on_progress: Callable[[dict[str, Any]], Awaitable[None] | None]) -> None:
        """Pull a model, handing each NDJSON progress object to `on_progress`."""
        url = f"{self.base_url}/api/pull"
        async with (
            _translated_httpx_errors(f"POST {url}"),
            self._http.stream(
                "POST", url, json={"model": model, "stream": True}, timeout=httpx.Timeout(None, connect=5.0)
            ) as response,
        ):
            if response.status_code >= 400:
                await response.aread()
                raise error_for_status(
                    response.status_code, _error_text(response.content, response.reason_phrase), None
                )
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                if "error" in event:
                    raise BackendRejected(f"pull failed: {event['error']}")
                result = on_progress(event)
                if result is not None:
                    await result

    async def chat(
        self,
        model: str,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        timeout_s: float,
    ) -> ChatReply:
        payload: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": False,
            "think": False,
            "options": {"temperature": temperature, "num_predict": max_tokens},
        }
        if self._keep_alive is not None:
            payload["keep_alive"] = self._keep_alive
        url = f"{self.base_url}/api/chat"
        try:
            async with self._chat_session.post(
                url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout_s, sock_connect=5.0)
            ) as response:
                content = await response.read()
                status, reason, headers = response.status, response.reason or "", response.headers
        except TimeoutError as exc:  # aiohttp's own timeout (ours cancel the task instead)
            raise BackendTimeout(f"POST {url} timed out after {timeout_s:g} s") from exc
        except aiohttp.ClientError as exc:
            raise BackendConnectionError(f"POST {url} failed: {type(exc).__name__}: {exc}") from exc
        if status >= 400:
            raise error_for_status(status, _error_text(content, reason), _retry_after(headers))
        try:
            body = json.loads(content)
        except ValueError as exc:
            raise BackendServerError(f"backend sent a body that is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise BackendServerError("backend sent JSON that is not an object")
        message = body.get("message") or {}
        return ChatReply(
            content=str(message.get("content") or ""),
            thinking=str(message.get("thinking") or ""),
            finish_reason=body.get("done_reason"),
        )


class OpenAICompatClient:
    """Any OpenAI-compatible `/v1` server (llama-server, vLLM, LiteLLM, a hosted API).

    `extra_body` carries the server-specific way to ask for no thinking (e.g. llama-server's
    `chat_template_kwargs`); nothing Ollama-specific is assumed.
    """

    def __init__(self, client: openai.AsyncOpenAI, extra_body: dict[str, Any] | None = None) -> None:
        self._client = client
        self._extra_body = extra_body or {}

    @property
    def base_url(self) -> str:
        return str(self._client.base_url).rstrip("/")

    async def model_names(self) -> set[str]:
        try:
            page = await self._client.models.list(timeout=10.0)
        except openai.APIError as exc:
            raise self._translate(exc) from exc
        return {m.id for m in page.data}

    @staticmethod
    def _translate(exc: openai.APIError) -> BackendCallError:
        if isinstance(exc, openai.APITimeoutError):
            return BackendTimeout(f"backend call timed out: {exc}")
        if isinstance(exc, openai.APIConnectionError):
            return BackendConnectionError(f"backend connection failed: {exc}")
        if isinstance(exc, openai.APIStatusError):
            return error_for_status(exc.status_code, str(exc.message), _retry_after(exc.response.headers))
        return BackendServerError(f"backend answered something unusable: {exc}")

    async def chat(
        self,
        model: str,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float,
        timeout_s: float,
    ) -> ChatReply:
        try:
            completion = await self._client.chat.completions.create(
                model=model,
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                timeout=timeout_s,
                extra_body=self._extra_body or None,
            )
        except openai.APIError as exc:
            raise self._translate(exc) from exc
        except ValueError as exc:  # a 200 whose body is not JSON
            raise BackendServerError(f"backend sent a body that is not JSON: {exc}") from exc
        if not completion.choices:
            raise BackendServerError("backend answered without choices")
        choice = completion.choices[0]
        message: Any = choice.message
        extra = getattr(message, "model_extra", None) or {}
        thinking = extra.get("reasoning") or extra.get("reasoning_content") or ""
        return ChatReply(
            content=str(message.content or ""),
            thinking=str(thinking),
            finish_reason=choice.finish_reason,
        )
