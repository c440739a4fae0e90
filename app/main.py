"""The FastAPI application: `create_app(settings)` for tests, `app` for uvicorn."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from app.backend import Supervisor
from app.cache import ResultCache
from app.errors import register_exception_handlers
from app.metrics import Metrics
from app.middleware import BodyLimitMiddleware, RequestIdFilter, RequestIdMiddleware
from app.routes import router
from app.settings import Settings, get_settings
from app.translator import Translator

log = logging.getLogger("app")

LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """Our log lines carry the request id; uvicorn's own handlers get the filter in app.__main__."""
    root = logging.getLogger()
    if not root.handlers:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(stream)
    for handler in root.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
    logging.getLogger("app").setLevel(level.upper())


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


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        supervisor = Supervisor(settings)
        cache = ResultCache(settings.cache_size, settings.cache_path)
        app.state.supervisor = supervisor
        app.state.translator = Translator(settings, supervisor, cache, metrics)
        try:
            await cache.open()
            await supervisor.start()
            yield
        finally:
            await supervisor.close()
            cache.close()

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
    register_exception_handlers(app)
    app.include_router(router)
    metrics.instrument(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "X-API-Key", "X-Request-ID"],
        expose_headers=["X-Request-ID"],
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Outermost, so the id is set for everything below it (and echoed on CORS and error responses too).
    app.add_middleware(RequestIdMiddleware)
    return app


app = create_app()
