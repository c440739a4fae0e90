"""Typed errors, and the one place that maps them to HTTP responses.

Two families:
- `ServiceError`: the whole request cannot be served (backend down, model missing, bad credentials).
  Mapped to a status code and a `detail` that says what to do.
- `BackendCallError`: one backend call failed. Never reaches HTTP: the translator turns it into a retry
  or a failed item.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException


class ServiceError(Exception):
    status_code = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BackendUnavailable(ServiceError):
    """The backend cannot translate right now (not reachable, not startable, not ready)."""

    status_code = 503


class ModelUnavailable(ServiceError):
    """The backend answers but does not have the model."""

    status_code = 503


class TranslationFailed(ServiceError):
    """A single-line translation failed (the backend answered, but not usably)."""

    status_code = 502


class Unauthorized(ServiceError):
    status_code = 401


class InvalidRequest(ServiceError):
    """The request is well-formed JSON but breaks a limit or rule (422)."""

    status_code = 422


class PayloadTooLarge(ServiceError):
    status_code = 413


class BackendCallError(Exception):
    """One backend call failed.

    `transient`: worth retrying (timeouts, connection errors, 5xx, busy, unusable output).
    `breaker`: counts toward "the backend stopped answering" (timeouts and refused connections).
    `retry_after`: the backend said when to come back (503 with Retry-After).
    """

    transient = True
    breaker = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BackendTimeout(BackendCallError):
    breaker = True


class BackendConnectionError(BackendCallError):
    breaker = True


class BackendBusy(BackendCallError):
    pass


class BackendServerError(BackendCallError):
    pass


class UnusableOutput(BackendCallError):
    """The call worked but the answer holds no translation (empty, placeholder, cut off...)."""


class BackendRejected(BackendCallError):
    """A 4xx other than busy: sending the same request again cannot help."""

    transient = False


class ModelMissing(BackendRejected):
    pass


class ThinkingExhausted(BackendRejected):
    """The model spent the whole token allowance thinking. A blind retry would do the same."""


def _service_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ServiceError):
        # Raised while FastAPI read the body (e.g. the streamed-body size limit): FastAPI wraps it in a 400.
        return _service_error_handler(request, exc.__cause__)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # FastAPI's answer to a body that is not UTF-8: a malformed request like any other, so a 422
        # that says how to fix it.
        return JSONResponse(
            {"detail": "the request body could not be read as JSON: send UTF-8 encoded JSON"}, status_code=422
        )
    return await http_exception_handler(request, exc)


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error_handler)
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)
