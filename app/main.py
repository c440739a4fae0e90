"""The FastAPI application: `create_app(settings)` for tests, `app` for uvicorn."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.backend import Supervisor
from app.cache import ResultCache
from app.errors import register_exception_handlers
from app.routes import router
from app.settings import Settings, get_settings
from app.translator import Translator

log = logging.getLogger("app")


def configure_logging(level: str) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("app").setLevel(level.upper())


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        supervisor = Supervisor(settings)
        cache = ResultCache(settings.cache_size, settings.cache_path)
        app.state.supervisor = supervisor
        app.state.translator = Translator(settings, supervisor, cache)
        try:
            await cache.open()
            await supervisor.start()
            yield
        finally:
            await supervisor.close()
            cache.close()

    app = FastAPI(
        title="retranslate",
        version="0.1.0",
        summary="Re-translates subtitle lines that are too long for dubbing: shorter, colloquial, "
        "in the target script only.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    register_exception_handlers(app)
    app.include_router(router)
    return app


app = create_app()
