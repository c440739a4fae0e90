"""Typed dependencies: what the lifespan created, handed to routes so their signatures read plainly.

`async def` although nothing here awaits: FastAPI runs plain `def` dependencies in its thread pool, which
cost about 1 ms per request in a profile (bench/RESULTS.md).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.backend import Supervisor
from app.settings import Settings
from app.translator import Translator


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _supervisor(request: Request) -> Supervisor:
    supervisor: Supervisor = request.app.state.supervisor
    return supervisor


async def _translator(request: Request) -> Translator:
    translator: Translator = request.app.state.translator
    return translator


SettingsDep = Annotated[Settings, Depends(_settings)]
SupervisorDep = Annotated[Supervisor, Depends(_supervisor)]
TranslatorDep = Annotated[Translator, Depends(_translator)]
