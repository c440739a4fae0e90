"""Where a call's time went, as the engine reports it: the one place that reads (untrusted) engine timings.

Ollama's native answers carry `total_duration` (from the request's arrival, so the wait for a slot is in
it), `load_duration`, `prompt_eval_duration` and `eval_duration`, in nanoseconds (server/routes.go): the wait
inside Ollama is total - load - prompt_eval - eval. llama-server's answers carry `timings` with `prompt_ms`
and `predicted_ms` (no queue wait, no load). A server that reports nothing gets None, never a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# A duration above this is nonsense (or hostile): the field is dropped, not believed.
_MAX_SECONDS = 86_400.0


@dataclass(frozen=True)
class CallTimings:
    """One call's time, in seconds; None where nobody measured it."""

    service_wait: float | None = None  # in the service's own bound, before the call was sent
    engine_wait: float | None = None  # inside the engine, before it computed (its queue)
    load: float | None = None  # loading the model
    prompt: float | None = None  # reading the prompt
    generate: float | None = None  # generating the answer

    @property
    def compute(self) -> float | None:
        """The engine's compute time (load + prompt + generate), or None when it reported no split."""
        parts = [p for p in (self.load, self.prompt, self.generate) if p is not None]
        return sum(parts) if parts else None

    @property
    def at_engine(self) -> float | None:
        """The time the call spent at the engine, by the engine's own clock (queue included), when known."""
        compute = self.compute
        if compute is None or self.engine_wait is None:
            return None
        return self.engine_wait + compute


def _seconds(value: Any, unit: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value) * unit
    if not math.isfinite(seconds) or seconds < 0 or seconds > _MAX_SECONDS:
        return None
    return seconds


def from_ollama(body: dict[str, Any]) -> CallTimings | None:
    """Ollama's native answer (or the last object of a stream)."""
    total = _seconds(body.get("total_duration"), 1e-9)
    load = _seconds(body.get("load_duration"), 1e-9)
    prompt = _seconds(body.get("prompt_eval_duration"), 1e-9)
    generate = _seconds(body.get("eval_duration"), 1e-9)
    if prompt is None and generate is None:
        return None
    wait: float | None = None
    if total is not None:
        wait = total - (load or 0.0) - (prompt or 0.0) - (generate or 0.0)
        # Parts larger than the whole: the numbers do not add up, so the wait is not known. A few µs of
        # rounding below zero are the same as none.
        wait = None if wait < -1e-3 else max(0.0, wait)
    return CallTimings(engine_wait=wait, load=load, prompt=prompt, generate=generate)


def from_llama_server(timings: Any) -> CallTimings | None:
    """llama-server's `timings` object (its /v1 and /completion answers). It says nothing of a queue."""
    if not isinstance(timings, dict):
        return None
    prompt = _seconds(timings.get("prompt_ms"), 1e-3)
    generate = _seconds(timings.get("predicted_ms"), 1e-3)
    if prompt is None and generate is None:
        return None
    return CallTimings(prompt=prompt, generate=generate)
