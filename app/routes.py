"""HTTP routes. Thin: validation is in the schemas, work in the translator, errors in app.errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from app.bodies import StrictJSONRoute
from app.deps import ServiceDep, SettingsDep
from app.errors import DemoRefused, ErrorKind, TranslationFailed
from app.languages import LANGUAGES, language_aliases
from app.schemas import (
    HealthResponse,
    ItemResult,
    LanguageInfo,
    RetranslateRequest,
    RetranslateResponse,
    Task,
    TranslateTextRequest,
    TranslateTextResponse,
    check_limits,
)
from app.security import require_api_key
from app.translator.core import ResultCallback
from app.vocabulary import DEMO_WARNING

T = TypeVar("T")

_UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"description": "RETRANSLATE_API_KEY is set and the request did not carry it."}
}
_LIMITS: dict[int | str, dict[str, Any]] = {
    413: {"description": "Too many tasks (RETRANSLATE_MAX_TASKS) or too large a body (RETRANSLATE_MAX_BODY_BYTES)."}
}

# Translation routes need the API key when one is set; operations routes (health, docs) never do.
api = APIRouter(
    dependencies=[Depends(require_api_key)],
    responses={**_UNAUTHORIZED, **_LIMITS},
    # Bodies are parsed as strict JSON (app.bodies): a malformed one is a 422 in the documented shape.
    route_class=StrictJSONRoute,
)
ops = APIRouter(tags=["operations"])
router = APIRouter()

_NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "The backend cannot translate (not reachable, model missing); `detail` says how to fix it.",
        "content": {"application/json": {"example": {"detail": "Ollama is not reachable at ..."}}},
    }
}


class ClientGone(Exception):
    """The HTTP client disconnected; its work was cancelled."""


async def until_disconnect(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """Run `work`, cancelling it when the client goes away: items not yet sent are never sent, and
    in-flight backend calls are cancelled (their connections closed)."""
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        # The body has been read; the next ASGI message is the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            # Let the work finish being cancelled (its batch releases its lease) before we look at it.
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientGone
    return task.result()


@api.post(
    "/retranslate",
    response_model=RetranslateResponse,
    responses=_NOT_READY,
    summary="Re-translate subtitle lines shorter, in the target script",
)
async def retranslate(body: RetranslateRequest, service: ServiceDep, settings: SettingsDep, request: Request) -> Any:
    """Every task comes back, in request order. A failed item has `translation: null`, an `error` and an
    `error_code`."""
    check_limits(body, settings)
    lease = await service.acquire(body.model)
    try:
        return await until_disconnect(request, service.retranslate(body, lease))
    except ClientGone:
        return Response(status_code=499)  # nobody is listening; the status is for the access log
    finally:
        await service.release(lease, unload=body.unload_after)


@api.post(
    "/retranslate/stream",
    responses={
        200: {
            "description": "NDJSON: one line per item as it finishes (the item plus `index`, `done`, "
            '`total`), then `{"summary": ..., "model": ..., "backend": ...}`.',
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        },
        **_NOT_READY,
    },
    response_class=StreamingResponse,
    summary="Same as /retranslate, streamed: one JSON line per item as it finishes",
)
async def retranslate_stream(body: RetranslateRequest, service: ServiceDep, settings: SettingsDep) -> StreamingResponse:
    check_limits(body, settings)
    # Readiness first, so an unavailable backend is a 503 rather than a 200 stream of failures.
    lease = await service.acquire(body.model)
    lines: asyncio.Queue[bytes | None] = asyncio.Queue()

    def on_result(index: int, result: ItemResult, done: int, total: int) -> None:
        line = {**result.model_dump(), "index": index, "done": done, "total": total}
        lines.put_nowait(json.dumps(line, ensure_ascii=False).encode() + b"\n")

    callback: ResultCallback = on_result

    async def produce() -> None:
        try:
            response = await service.retranslate(body, lease, on_result=callback)
            final = {
                "summary": response.summary.model_dump(),
                "model": response.model,
                "backend": response.backend,
                "demo_model": response.demo_model,
                "model_reason": response.model_reason,
            }
            lines.put_nowait(json.dumps(final, ensure_ascii=False).encode() + b"\n")
        finally:
            lines.put_nowait(None)

    async def stream() -> AsyncIterator[bytes]:
        worker = asyncio.create_task(produce())
        try:
            while (line := await lines.get()) is not None:
                yield line
            await worker
        finally:
            # Starlette closes this generator when the client disconnects: stop the work with it.
            worker.cancel()
            try:
                await asyncio.wait({worker})  # its batch ends before the lease does
            finally:
                await service.release(lease, unload=body.unload_after)

    return StreamingResponse(stream(), media_type="application/x-ndjson", headers={"Cache-Control": "no-store"})


@api.post(
    "/api/translate-text",
    response_model=TranslateTextResponse,
    responses={
        502: {"description": "The backend answered, but no usable translation came back; `detail` says why."},
        504: {"description": "The backend or the line's time bound ran out; `detail` says which."},
        **_NOT_READY,
    },
    summary="One line, for the editor's subtitle panel (never a 200 carrying the untranslated source)",
)
async def translate_text(
    body: TranslateTextRequest, service: ServiceDep, settings: SettingsDep, request: Request
) -> Any:
    task = Task(
        task_id="translate-text", source=body.text, target_language=body.target_language, max_length=body.max_length
    )
    batch = RetranslateRequest(tasks=[task], model=body.model)
    check_limits(batch, settings)
    lease = await service.acquire(body.model)
    if lease.handle.demo and not body.allow_demo:
        await service.release(lease, unload=False)
        raise DemoRefused(f'{DEMO_WARNING} To get its answer anyway, send "allow_demo": true.')
    try:
        response = await until_disconnect(request, service.retranslate(batch, lease))
    except ClientGone:
        return Response(status_code=499)
    finally:
        await service.release(lease, unload=batch.unload_after)
    item = response.results[0]
    if not item.success or item.translation is None:
        kind = ErrorKind(item.error_code) if item.error_code else ErrorKind.INTERNAL
        raise TranslationFailed(f"translation failed ({kind.value}): {item.error}", kind)
    shared = item.model_dump(exclude={"task_id", "success", "error", "error_code"})
    return TranslateTextResponse(
        **shared,
        model=response.model,
        backend=response.backend,
        demo_model=response.demo_model,
        model_reason=response.model_reason,
    )


@ops.get("/health", response_model=HealthResponse, summary="Backend, model and readiness (always 200)")
async def health(service: ServiceDep) -> dict[str, Any]:
    return await service.health()


@ops.get(
    "/ready",
    response_model=HealthResponse,
    responses=_NOT_READY,
    summary="200 when the service can translate, else 503 (for container healthchecks)",
)
async def ready(service: ServiceDep) -> Any:
    report = await service.health()
    return JSONResponse(report, status_code=200 if report["status"] == "ready" else 503)


@ops.get("/languages", response_model=list[LanguageInfo], summary="Supported target languages")
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


@api.get(
    "/models", summary="Models the backend has, the one a request without a model gets, and whether it is the demo"
)
async def models(service: ServiceDep) -> dict[str, Any]:
    return await service.models()


router.include_router(api)
router.include_router(ops)
