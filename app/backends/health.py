"""What /health (and /ready, /models) report: judged by the selector's one decision tree with cheap checks
only (never waiting for an engine start or a model load)."""

from __future__ import annotations

from typing import Any

from app.backends.embedded import EmbeddedBackend
from app.backends.selector import NON_THINKING_ADVICE, BackendModel, Selector
from app.backends.state import BackendState
from app.errors import ModelUnavailable


async def health_report(selector: Selector) -> dict[str, Any]:
    backend, readiness = await selector.decide(BackendState.probe)
    problem = readiness.problem
    choice: BackendModel | None = None
    thinking_capable = False
    if backend is not None and readiness.ok:
        try:
            choice = await selector.choose_model(backend, None, refresh=False)
            selector.last_choice = choice
            thinking_capable = "thinking" in await backend.capabilities(choice.name)
        except ModelUnavailable as exc:
            problem = exc.detail
    if choice is None and selector.startup_problem:
        problem = f"{problem} ({selector.startup_problem})" if problem else selector.startup_problem
    report: dict[str, Any] = {"kind": backend.kind if backend and readiness.ok else "none",
                              "requested": selector.settings.backend}  # fmt: skip
    for candidate in (selector.ollama, selector.openai, selector.embedded):
        if candidate is not None:
            report[candidate.kind] = candidate.describe()
    if selector.pull_status is not None:
        report["pull"] = selector.pull_status
    thinks = bool(choice and selector.model_thinks.get(choice.name))
    model: dict[str, Any] = {
        "name": choice.name if choice else selector.settings.model,
        "available": choice is not None,
        "reason": choice.reason if choice else None,
        "thinking_capable": thinking_capable,
        "model_thinks": thinks,
        "demo_model": isinstance(backend, EmbeddedBackend) and backend.demo,
    }
    if thinks:
        model["advice"] = NON_THINKING_ADVICE
    return {
        "status": "ready" if choice is not None else "degraded",
        "backend": report,
        "model": model,
        "max_concurrency": selector.settings.max_concurrency,
        "backend_slots": backend.slots if backend else None,
        "effective_concurrency": backend.concurrency if backend else selector.settings.max_concurrency,
        "measured_parallelism": backend.measured_parallelism if backend else None,
        "parallelism_advice": backend.parallelism_advice() if backend else None,
        "problem": None if choice is not None else problem,
    }
