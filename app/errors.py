"""Typed errors, the one table of what each kind of failure means, and the mapping to HTTP responses.

Two families:
- `ServiceError`: the whole request cannot be served (backend down, model missing, bad input, bad
  credentials). Mapped here, once, to a status code and a `detail` that says what to do.
- `BackendCallError`: one backend call failed. Each transport classifies its failures once, where they
  happen, into an `ErrorKind`; retries, the breaker, metrics and an item's `error_code` read the kind from
  `POLICY` and never look at message text.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorKind(StrEnum):
    """Why a call or an item failed. The values are the `error_code` contract (README, "error_code")."""

    # One backend call.
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    BUSY = "busy"
    SERVER = "server"
    RESPONSE_TOO_LARGE = "response_too_large"
    REJECTED = "rejected"
    MODEL_MISSING = "model_missing"
    UNUSABLE_OUTPUT = "unusable_output"
    THINKING_EXHAUSTED = "thinking_exhausted"
    BREAKER_OPEN = "breaker_open"
    # One item, beyond its calls.
    RULE_VIOLATION = "rule_violation"
    DEADLINE = "deadline"
    ITEM_TIMEOUT = "item_timeout"
    SHUTTING_DOWN = "shutting_down"
    INVALID_TASK = "invalid_task"
    NOT_TRANSLATED = "not_translated"
    SERVICE_LOST = "service_lost"
    INTERNAL = "internal"


@dataclass(frozen=True)
class KindPolicy:
    """What a kind means for the machinery around a call, and for a person reading an item's error.

    `retry`: sending the same request again may help. `breaker`: counts toward "the backend stopped
    answering" (the breaker opens after RETRANSLATE_BREAKER_FAILURES of these in a row). `status`: the
    HTTP status when this is why the single line of `/api/translate-text` failed. The metric
    `retranslate_backend_calls_total{status}` is labelled with the kind's value.
    """

    retry: bool
    breaker: bool
    status: int
    meaning: str


POLICY: dict[ErrorKind, KindPolicy] = {
    ErrorKind.TIMEOUT: KindPolicy(True, True, 504, "a backend call took longer than RETRANSLATE_REQUEST_TIMEOUT_S"),
    ErrorKind.CONNECTION: KindPolicy(True, True, 503, "the backend refused the connection or it broke off"),
    ErrorKind.BUSY: KindPolicy(True, False, 503, "the backend said it is busy (429/503; its Retry-After is honoured)"),
    ErrorKind.SERVER: KindPolicy(True, False, 502, "the backend failed (5xx) or sent a reply that is not its API's"),
    # A backend that ignored the output cap once will do it again: a retry only burns a slot.
    ErrorKind.RESPONSE_TOO_LARGE: KindPolicy(
        False, False, 502, "the backend's reply was over RETRANSLATE_MAX_RESPONSE_BYTES (it ignored the output cap)"
    ),
    ErrorKind.REJECTED: KindPolicy(False, False, 502, "the backend refused the request (a 4xx other than busy)"),
    ErrorKind.MODEL_MISSING: KindPolicy(False, False, 503, "the backend does not have the model"),
    # Sampling differs per call: a second ask often parses.
    ErrorKind.UNUSABLE_OUTPUT: KindPolicy(
        True, False, 502, "the answer held no usable translation (empty, cut off, not parseable, our own prompt)"
    ),
    # The model thinks whatever the request says: a blind retry would do the same.
    ErrorKind.THINKING_EXHAUSTED: KindPolicy(
        False, False, 502, "the model spent its whole token allowance thinking (use a non-thinking build)"
    ),
    ErrorKind.BREAKER_OPEN: KindPolicy(
        False, False, 503, "not sent: the backend stopped answering and calls fail at once during the cooldown"
    ),
    ErrorKind.RULE_VIOLATION: KindPolicy(
        False, False, 502, "every answer broke a hard rule (wrong script or language, the source echoed)"
    ),
    ErrorKind.DEADLINE: KindPolicy(False, False, 504, "the request's deadline_s passed before the item finished"),
    ErrorKind.ITEM_TIMEOUT: KindPolicy(False, False, 504, "the item took longer than RETRANSLATE_ITEM_TIMEOUT_S"),
    ErrorKind.SHUTTING_DOWN: KindPolicy(False, False, 503, "the service is shutting down"),
    ErrorKind.INVALID_TASK: KindPolicy(False, False, 422, "the CLI's config task is invalid (never sent)"),
    ErrorKind.NOT_TRANSLATED: KindPolicy(
        False, False, 503, "the CLI or drop-in could not translate at all (no backend, demo model refused)"
    ),
    ErrorKind.SERVICE_LOST: KindPolicy(False, False, 503, "the drop-in lost its connection to the service"),
    ErrorKind.INTERNAL: KindPolicy(False, False, 500, "a bug in the service (logged); the rest of the batch ran"),
}


def markdown_table() -> str:
    """The README's `error_code` table, generated from POLICY (`python -m app.errors`)."""
    lines = ["| error_code | meaning | retried | counts toward the breaker |", "|---|---|---|---|"]
    for kind, policy in POLICY.items():
        retried = "yes" if policy.retry else "no"
        breaker = "yes" if policy.breaker else "no"
        lines.append(f"| `{kind.value}` | {policy.meaning} | {retried} | {breaker} |")
    return "\n".join(lines)


class BackendCallError(Exception):
    """One backend call failed, classified where it happened.

    `retry_after`: the backend said when to come back (429/503 with Retry-After), in seconds.
    """

    def __init__(
        self, kind: ErrorKind, message: str, *, retry_after: float | None = None, refused: bool = False
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        # The connection could not even be opened (nothing listens: an engine restarting, or down). The
        # request never reached the engine, so sending it again is safe; the breaker waits for a restart.
        self.refused = refused

    @property
    def policy(self) -> KindPolicy:
        return POLICY[self.kind]


def kind_for_status(status: int, message: str) -> ErrorKind:
    """The kind of a backend's non-2xx answer (both transports use this one rule)."""
    lowered = message.lower()
    if status == 404 and ("not found" in lowered or "does not exist" in lowered or "model" in lowered):
        return ErrorKind.MODEL_MISSING
    if status in (429, 503):
        return ErrorKind.BUSY
    if status >= 500:
        return ErrorKind.SERVER
    return ErrorKind.REJECTED


def error_for_status(status: int, message: str, retry_after: float | None) -> BackendCallError:
    return BackendCallError(
        kind_for_status(status, message), f"backend answered HTTP {status}: {message}", retry_after=retry_after
    )


# --- errors of a whole request ------------------------------------------------------------------------


class ServiceError(Exception):
    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BackendUnavailable(ServiceError):
    """The backend cannot translate right now (not reachable, not startable, breaker open)."""

    status_code = 503


class ModelUnavailable(ServiceError):
    """The backend answers but does not have the model."""

    status_code = 503


class TranslationFailed(ServiceError):
    """The single line of /api/translate-text failed; the status comes from its error kind."""

    def __init__(self, detail: str, kind: ErrorKind) -> None:
        super().__init__(detail)
        self.kind = kind
        self.status_code = POLICY[kind].status


class DemoRefused(ServiceError):
    """The packaged demo model answered and the caller did not accept demo output."""

    status_code = 503


class Unauthorized(ServiceError):
    status_code = 401


class HostNotAllowed(ServiceError):
    status_code = 400


class OriginNotAllowed(ServiceError):
    status_code = 403


class PayloadTooLarge(ServiceError):
    status_code = 413


class BodyTimeout(ServiceError):
    """The client did not finish sending its body within RETRANSLATE_BODY_TIMEOUT_S."""

    status_code = 408


class InvalidRequest(ServiceError):
    """Well-formed JSON that breaks a rule or a limit. Always answered as 422 in the one documented
    shape, `detail: [{loc, msg, type}]` (the OpenAPI schema's HTTPValidationError)."""

    status_code = 422

    def __init__(self, msg: str, *, loc: tuple[str | int, ...] = ("body",), type_: str = "value_error") -> None:
        super().__init__(msg)
        self.errors = [{"loc": list(loc), "msg": msg, "type": type_}]


# --- the one mapping to HTTP responses -----------------------------------------------------------------

# Validation errors echo nothing of the input: a 2 MB request must not get a 3 MB answer, and a body
# holding a lone surrogate must still produce a response that can be encoded.
_MAX_MSG_CHARS = 500
_MAX_LOC_PART_CHARS = 100


def _clipped(text: str, limit: int) -> str:
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clean_error(error: dict[str, Any]) -> dict[str, Any]:
    loc = [part if isinstance(part, int) else _clipped(str(part), _MAX_LOC_PART_CHARS) for part in error["loc"]]
    msg = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    return {"loc": loc, "msg": _clipped(msg, _MAX_MSG_CHARS), "type": str(error.get("type", "value_error"))}


def _service_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if isinstance(exc, InvalidRequest):
        return JSONResponse({"detail": [_clean_error(e) for e in exc.errors]}, status_code=422)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse({"detail": _clipped(exc.detail, 4000)}, status_code=exc.status_code, headers=headers)


def _validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": [_clean_error(e) for e in exc.errors()][:50]}, status_code=422)


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ServiceError):
        # Raised while FastAPI read the body (the strict JSON parser, the streamed-body size limit):
        # FastAPI wraps it in a 400.
        return _service_error_handler(request, exc.__cause__)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # Anything else that broke the body read: a malformed request like any other.
        error = InvalidRequest("the request body could not be read; send a JSON object as UTF-8")
        return _service_error_handler(request, error)
    return await http_exception_handler(request, exc)


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)


if __name__ == "__main__":
    print(markdown_table())
