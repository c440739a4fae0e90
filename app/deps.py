"""Typed dependencies: what the lifespan created, handed to routes so their signatures read plainly.

`async def` although nothing here awaits: FastAPI runs plain `def` dependencies in its thread pool, which
cost about 1 ms per request in a profile (bench/RESULTS.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.service import RetranslateService
from app.settings import Settings


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _service(request: Request) -> RetranslateService:
    service: RetranslateService = request.app.state.service
    return service


SettingsDep = Annotated[Settings, Depends(_settings)]
ServiceDep = Annotated[RetranslateService, Depends(_service)]
