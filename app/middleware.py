"""Pure ASGI middleware (Starlette's BaseHTTPMiddleware would hide client disconnects from the routes).

- `X-Request-ID`: taken from the request when it is a sane token, else generated; echoed in the response and
  attached to every log line written while the request runs (a context variable read by a logging filter).
  A request whose client went away (answered 499, which the server cannot send any more) still gets its one
  access line.
- Host and Origin: only the names in RETRANSLATE_ALLOWED_HOSTS are served (a web page rebound to 127.0.0.1,
  "DNS rebinding", sends its own name), and a browser's cross-site request is refused unless its origin is
  allowed.
- Body size: RETRANSLATE_MAX_BODY_BYTES, declared or streamed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import BodyTimeout, PayloadTooLarge
from app.logs import request_id

REQUEST_ID_HEADER = b"x-request-id"

# Echoing a caller's header into our logs and responses: only short, printable tokens.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(REQUEST_ID_HEADER, b"").decode("latin-1")
        rid = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != REQUEST_ID_HEADER]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER, rid.encode())]}
                if message["status"] == CLIENT_GONE:
                    _log_client_gone(scope)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


# nginx's "client closed request": the status our routes answer when the client has gone, for the logs and
# metrics (the server does not send it: there is nobody to send it to, so it writes no access line either).
CLIENT_GONE = 499
_access = logging.getLogger("uvicorn.access")


def _log_client_gone(scope: Scope) -> None:
    client = scope.get("client")
    address = f"{client[0]}:{client[1]}" if client else "-"
    path = scope.get("path", "")
    # uvicorn's access formatter reads exactly these five arguments.
    _access.info('%s - "%s %s HTTP/%s" %d', address, scope.get("method", ""), path, scope.get("http_version", ""),
                 CLIENT_GONE)  # fmt: skip


def _hostname(value: str) -> str:
    """`Host`/netloc without its port, lower case, no trailing dot: `[::1]:8642` -> `[::1]`."""
    value = value.strip().lower()
    if value.startswith("["):
        # The whole header counts: after `]` only `:port` may follow (`[::1]evil.example` is not `[::1]`).
        end = value.find("]") + 1
        rest = value[end:]
        if end and (rest == "" or (rest.startswith(":") and rest[1:].isdigit())):
            return value[:end]
        return value
    if value.count(":") == 1:
        name, port = value.split(":")
        return name.rstrip(".") if port.isdigit() else value
    return value.rstrip(".")


def _shown(header: str) -> str:
    """A client's header value fit to quote in our answer: its start only, non-ASCII escaped."""
    return header[:100].encode("ascii", "backslashreplace").decode()


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class HostCheckMiddleware:
    """400 for a Host header not in `allowed` (the setting names itself in the message); 403 for a browser
    request from an origin that is neither allowed for CORS nor this service's own."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str], origins: Iterable[str]) -> None:
        self.app = app
        self.allowed = {_hostname(host) for host in allowed}
        self.any_host = "*" in self.allowed
        self.origins = {origin.rstrip("/").lower() for origin in origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if host and not self.any_host and _hostname(host) not in self.allowed:
            shown = _shown(host)
            await _send_json(
                send,
                400,
                f"this service does not answer to the host name {shown!r} (a protection against DNS rebinding): "
                "if you reach it under that name on purpose, add it to RETRANSLATE_ALLOWED_HOSTS",
            )
            return
        origin = headers.get(b"origin", b"").decode("latin-1").rstrip("/").lower()
        if origin and origin != "null" and scope.get("method") != "OPTIONS" and origin not in self.origins:
            origin_host = _hostname(urlsplit(origin).netloc)
            if not (self.any_host or origin_host in self.allowed):
                shown = _shown(origin)
                await _send_json(
                    send,
                    403,
                    f"requests from the web page at {shown!r} are not allowed: add its origin to "
                    "RETRANSLATE_CORS_ORIGINS if it should drive this service",
                )
                return
        await self.app(scope, receive, send)


TOO_LARGE = "the request body is larger than {limit} bytes (RETRANSLATE_MAX_BODY_BYTES): send fewer tasks per request"


class BodyLimitMiddleware:
    """413 with a message that says what to do, for bodies over `max_bytes` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_413(send, self.max_bytes)
            return
        received = 0
        loop = asyncio.get_running_loop()
        body_deadline: float | None = None
        body_done = False

        async def counting_receive() -> Message:
            nonlocal received, body_deadline, body_done
            if self.timeout_s is None or body_done:
                message = await receive()  # after the body: a wait for the client to leave, unbounded
            else:
                # The whole body within RETRANSLATE_BODY_TIMEOUT_S of the app's first read.
                body_deadline = body_deadline or loop.time() + self.timeout_s
                try:
                    async with asyncio.timeout_at(body_deadline):
                        message = await receive()
                except TimeoutError:
                    raise BodyTimeout(
                        f"the request body was not sent within {self.timeout_s:g} s (RETRANSLATE_BODY_TIMEOUT_S): "
                        "send the whole body at once"
                    ) from None
            if message["type"] == "http.request":
                body_done = not message.get("more_body", False)
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the app's body read; app.errors maps it to the same 413.
                    raise PayloadTooLarge(TOO_LARGE.format(limit=self.max_bytes))
            return message

        await self.app(scope, counting_receive, send)


async def _send_413(send: Send, limit: int) -> None:
    await _send_json(send, 413, TOO_LARGE.format(limit=limit))


# The methods any route here or a browser's preflight can use; anything else gets its 404/405 as `OTHER`.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})


class MethodLabelMiddleware:
    """A made-up HTTP method is renamed `OTHER` before the metrics and the app see it: /metrics labels come
    from a fixed set (2,000 made-up methods once made 1.5 MB of series), and no client text reaches a label.
    The answer is the same 404/405 the made-up method got."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") not in KNOWN_METHODS:
            scope = {**scope, "method": "OTHER"}
        await self.app(scope, receive, send)
