"""The FastAPI application, built only by its factory: `create_app(settings)`.

Served by `python -m app` (or `retranslate-serve`), or by uvicorn itself:
`uvicorn --factory app.main:create_app`. Either way a SIGTERM (or Ctrl-C) drains: lines not yet sent fail
at once with "the service is shutting down", calls already at the backend get RETRANSLATE_SHUTDOWN_GRACE_S
to finish, and every batch in progress still answers before the server closes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from app.errors import register_exception_handlers
from app.logs import configure_logging
from app.metrics import Metrics
from app.middleware import BodyLimitMiddleware, HostCheckMiddleware, MethodLabelMiddleware, RequestIdMiddleware
from app.routes import router
from app.security import require_api_key
from app.service import RetranslateService
from app.settings import Settings, load_settings

log = logging.getLogger("app")


def shutdown_signals(signals: Any = signal) -> tuple[int, ...]:
    """The signals that drain: SIGTERM, Ctrl-C and, on Windows, Ctrl-Break (SIGBREAK), which stops a console
    program too. `signals` is the signal module (another OS's stand-in in tests)."""
    names = ("SIGTERM", "SIGINT", "SIGBREAK")
    return tuple(getattr(signals, name) for name in names if getattr(signals, name, None) is not None)


SHUTDOWN_SIGNALS = shutdown_signals()


def drain_on_signals(service: RetranslateService, grace_s: float) -> Callable[[], None]:
    """Chain a drain in front of the server's own SIGTERM/SIGINT handlers (uvicorn installs them before
    the lifespan starts, with `signal.signal`, so this works however uvicorn was started). Returns the undo.
    Signals can only be handled in the main thread: elsewhere (a server in a test's thread) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handler(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(service.drain, grace_s)
        before = previous.get(sig)
        if callable(before):
            before(sig, frame)
        elif sig != getattr(signal, "SIGTERM", None):
            raise KeyboardInterrupt  # Ctrl-C or Ctrl-Break with no server handler: stop as Ctrl-C does

    for sig in SHUTDOWN_SIGNALS:
        previous[sig] = signal.signal(sig, handler)

    def undo() -> None:
        for sig, before in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, before)

    return undo


def _document_open_access(app: FastAPI) -> None:
    """Without RETRANSLATE_API_KEY no route needs a key: the schema must not claim otherwise."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.pop("security", None)
                    operation.get("responses", {}).pop("401", None)
            schema.get("components", {}).pop("securitySchemes", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _live_description(app: FastAPI) -> None:
    """The docs page names the backend and model answering now (and warns when it is the demo model)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        service = getattr(app.state, "service", None)
        if service is None:
            return schema
        return {**schema, "info": {**schema["info"], "description": service.summary()}}

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = RetranslateService(settings, metrics)
        app.state.service = service
        undo = drain_on_signals(service, settings.shutdown_grace_s)
        try:
            await service.open()
            yield
        finally:
            undo()
            await service.close()

    # The editor runs offline: the docs page's Swagger UI assets are served from the package, not a CDN.
    app = FastAPIOffline(
        title="retranslate",
        version="0.1.0",
        summary="Re-translates subtitle lines that are too long for dubbing: shorter, colloquial, "
        "in the target script only.",
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.settings = settings
    app.state.metrics = metrics
    if settings.api_key is None:
        _document_open_access(app)
    _live_description(app)
    register_exception_handlers(app)
    app.include_router(router)
    metrics.instrument(app, [Depends(require_api_key)])
    app.add_middleware(MethodLabelMiddleware)  # outside the instrumentator: it sees only known methods
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
        expose_headers=["X-Request-ID"],
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(
        HostCheckMiddleware, allowed=[*settings.allowed_hosts, settings.host], origins=settings.cors_origins
    )
    # Outermost, so the id is set for everything below it (and echoed on CORS and error responses too).
    app.add_middleware(RequestIdMiddleware)
    return app
