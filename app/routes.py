"""HTTP routes. Thin: validation is in the schemas, work in the translator, errors in app.errors."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import SupervisorDep, TranslatorDep
from app.languages import LANGUAGES, language_aliases
from app.schemas import HealthResponse, LanguageInfo, RetranslateRequest, RetranslateResponse

router = APIRouter()

_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "The backend cannot translate (not reachable, model missing); `detail` says how to fix it.",
        "content": {"application/json": {"example": {"detail": "Ollama is not reachable at ..."}}},
    }
}


@router.post(
    "/retranslate",
    response_model=RetranslateResponse,
    responses=_NOT_READY,
    summary="Re-translate subtitle lines shorter, in the target script",
)
async def retranslate(body: RetranslateRequest, translator: TranslatorDep) -> RetranslateResponse:
    """Every task comes back, in request order. A failed item has `translation: null` and an `error`."""
    return await translator.retranslate(body)


@router.get("/health", response_model=HealthResponse, summary="Backend, model and readiness (always 200)")
async def health(supervisor: SupervisorDep) -> dict[str, Any]:
    return await supervisor.health()


@router.get(
    "/ready",
    response_model=HealthResponse,
    responses=_NOT_READY,
    summary="200 when the service can translate, else 503 (for container healthchecks)",
)
async def ready(supervisor: SupervisorDep) -> Any:
    report = await supervisor.health()
    return JSONResponse(report, status_code=200 if report["status"] == "ready" else 503)


@router.get("/languages", response_model=list[LanguageInfo], summary="Supported target languages")
async def languages() -> list[LanguageInfo]:
    return [
        LanguageInfo(
            code=lang.code,
            name=lang.english,
            length_unit=lang.length_unit,
            editor_ratio=lang.editor_ratio,
            accepted_names=language_aliases(lang),
        )
        for lang in LANGUAGES
    ]


@router.get("/models", summary="Models the backend has, the default, and whether it is the demo model")
async def models(supervisor: SupervisorDep) -> dict[str, Any]:
    available = await supervisor.available_models()
    return {
        "default": supervisor.settings.model,
        "models": available,
        "backend": supervisor.kind or "none",
        "demo_model": supervisor.demo,
    }
