"""The service's own HTTP calls (Ollama's native API, llama-server's /health and /props, probes): aiohttp.

aiohttp costs about a third of httpx's CPU per call here (bench/RESULTS.md), and one library means one
place where transport failures become typed errors (`_transport_error`). Every body is read with a size
limit (RETRANSLATE_MAX_RESPONSE_BYTES): a backend that ignores the output cap cannot take the service's
memory with it.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from app.errors import BackendCallError, ErrorKind, error_for_status

CONNECT_TIMEOUT_S = 5.0


def new_session(max_connections: int) -> aiohttp.ClientSession:
    """One session for the service's lifetime, with a pool sized to the concurrency bound."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, limit_per_host=max_connections),
        # Redirects are not part of any backend API we speak; following one could leave the loopback.
        # No compression: asked for none, and a peer that sends it anyway is inflated by `Inflater`, counted
        # against the limit as it inflates (aiohttp's own decoding would inflate a 300 KB bomb to 300 MB).
        auto_decompress=False,
        headers={"Accept-Encoding": "identity"},
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from local servers; our own backoff applies


def error_text(content: bytes, reason: str) -> str:
    """The message in an error body: Ollama's `{"error": "..."}` or OpenAI's `{"error": {"message"}}`."""
    try:
        body = json.loads(content)
    except ValueError:
        return content[:300].decode("utf-8", "replace") or reason
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        if isinstance(error, dict):
            return str(error.get("message", error))[:300]
        return str(error)[:300]
    return str(body)[:300]


def too_large(limit: int) -> BackendCallError:
    return BackendCallError(
        ErrorKind.RESPONSE_TOO_LARGE,
        f"the backend's answer is larger than {limit} bytes (RETRANSLATE_MAX_RESPONSE_BYTES): it ignored the "
        "output cap; a subtitle line needs a few hundred bytes",
    )


def _transport_error(what: str, exc: BaseException, timeout_s: float | None) -> BackendCallError:
    """The one mapping of aiohttp's failures."""
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        after = f" after {timeout_s:g} s" if timeout_s else ""
        return BackendCallError(ErrorKind.TIMEOUT, f"{what} timed out{after}")
    if isinstance(exc, aiohttp.ClientResponseError):  # e.g. a malformed status line or headers
        return BackendCallError(ErrorKind.SERVER, f"{what}: the backend sent a malformed reply ({exc.message})")
    if isinstance(exc, aiohttp.ClientPayloadError):  # the body broke off (a reset mid-body)
        return BackendCallError(ErrorKind.CONNECTION, f"{what}: the reply broke off ({type(exc).__name__})")
    if isinstance(exc, aiohttp.ClientConnectorError):  # nothing listens (yet): e.g. the engine restarting
        return BackendCallError(ErrorKind.CONNECTION, f"{what} failed: {type(exc).__name__}: {exc}", refused=True)
    return BackendCallError(ErrorKind.CONNECTION, f"{what} failed: {type(exc).__name__}: {exc}")


class Inflater:
    """Decodes a reply's Content-Encoding as it arrives and counts the DECODED bytes against the limit
    (RETRANSLATE_MAX_RESPONSE_BYTES): the one place every backend body is bounded after decoding. We ask
    for identity; a peer that compresses anyway gets gzip/deflate inflated here at most limit + 1 bytes at
    a time, and any other encoding refused."""

    def __init__(self, encoding: str | None, limit: int) -> None:
        self.limit = limit
        self.size = 0
        name = (encoding or "identity").strip().lower()
        self._zlib: Any = None
        self._deflate = name == "deflate"
        if name in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self._deflate:
            self._zlib = zlib.decompressobj()
        elif name != "identity":
            raise BackendCallError(
                ErrorKind.SERVER,
                f"the backend sent Content-Encoding {name[:40]!r} although it was asked for identity",
            )

    def feed(self, chunk: bytes) -> bytes:
        if self._zlib is None:
            out = chunk
        else:
            room = self.limit - self.size + 1
            try:
                out = self._zlib.decompress(chunk, room)
            except zlib.error as exc:
                if not (self._deflate and self.size == 0):
                    broken = f"the backend's compressed reply is broken: {exc}"
                    raise BackendCallError(ErrorKind.SERVER, broken) from None
                # "deflate" is raw deflate for some servers (no zlib header).
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                self._deflate = False
                return self.feed(chunk)
        self.size += len(out)
        if self.size > self.limit:
            raise too_large(self.limit)
        return out

    def flush(self) -> bytes:
        return b"" if self._zlib is None else self.feed(b"")


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    inflater = Inflater(response.headers.get("Content-Encoding"), limit)
    declared = response.content_length
    if declared is not None and declared > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(inflater.feed(chunk))
    chunks.append(inflater.flush())
    return b"".join(chunks)


class JsonHttp:
    """JSON requests to one base URL, classified once into BackendCallError."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, max_body_bytes: int) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.max_body_bytes = max_body_bytes

    @contextlib.asynccontextmanager
    async def _open(
        self, method: str, path: str, json_body: Any, timeout_s: float | None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response, with every transport failure (here or in the caller's reading) classified."""
        url = f"{self.base_url}{path}"
        timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=CONNECT_TIMEOUT_S)
        try:
            async with self.session.request(
                method, url, json=json_body, timeout=timeout, allow_redirects=False
            ) as response:
                yield response
        except BackendCallError:
            raise
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise _transport_error(f"{method} {url}", exc, timeout_s) from exc

    async def request(
        self, method: str, path: str, *, json_body: Any = None, timeout_s: float | None
    ) -> tuple[int, bytes]:
        """(status, body) of a 2xx answer; a non-2xx answer or a failure raises BackendCallError."""
        async with self._open(method, path, json_body, timeout_s) as response:
            content = await _read_limited(response, self.max_body_bytes)
            status, reason, headers = response.status, response.reason or "", response.headers
        if status >= 300:
            raise error_for_status(status, error_text(content, reason), retry_after(headers))
        return status, content

    async def json(self, method: str, path: str, *, json_body: Any = None, timeout_s: float | None) -> dict[str, Any]:
        _, content = await self.request(method, path, json_body=json_body, timeout_s=timeout_s)
        return parse_object(content)

    async def ndjson(self, method: str, path: str, *, json_body: Any = None) -> AsyncIterator[dict[str, Any]]:
        """A streamed NDJSON answer (e.g. /api/pull progress), one object per line; each line bounded. No total
        time bound: a pull takes as long as the download."""
        async with self._open(method, path, json_body, None) as response:
            if response.status >= 300:
                content = await _read_limited(response, self.max_body_bytes)
                raise error_for_status(response.status, error_text(content, response.reason or ""), None)
            if response.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
                raise BackendCallError(ErrorKind.SERVER, "the backend compressed a streamed reply it was asked not to")
            while True:
                line = await response.content.readline()
                if not line:
                    return
                if len(line) > self.max_body_bytes:
                    raise too_large(self.max_body_bytes)
                if line.strip():
                    yield parse_object(line)


def parse_object(content: bytes) -> dict[str, Any]:
    """A JSON object from a backend, or a SERVER error (the body is not what the API promises)."""
    try:
        body = json.loads(content)
    except ValueError as exc:
        raise BackendCallError(ErrorKind.SERVER, f"the backend sent a body that is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BackendCallError(ErrorKind.SERVER, "the backend sent JSON that is not an object")
    return body
