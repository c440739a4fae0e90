"""The one reader of engine-reported timings: Ollama's native durations, llama-server's `timings`, and
what it refuses to believe."""

from __future__ import annotations

from typing import Any

import pytest

from app.backends.timings import CallTimings, from_llama_server, from_ollama

NS = 1_000_000_000


def test_ollama_wait_is_total_minus_the_parts() -> None:
    body = {"total_duration": 3 * NS, "load_duration": NS // 2, "prompt_eval_duration": NS // 4,
            "eval_duration": NS}  # fmt: skip
    timings = from_ollama(body)
    assert timings == CallTimings(engine_wait=1.25, load=0.5, prompt=0.25, generate=1.0)
    assert timings.compute == 1.75
    assert timings.at_engine == 3.0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, None),  # reports nothing: None, not zeros
        ({"total_duration": NS}, None),  # no split: nothing to say
        ({"prompt_eval_duration": True, "eval_duration": "5"}, None),  # wrong types
        ({"prompt_eval_duration": -1, "eval_duration": float("nan")}, None),  # negative, NaN
        ({"prompt_eval_duration": 10**30, "eval_duration": NS}, CallTimings(generate=1.0)),  # absurd: dropped
        # parts larger than the whole: the wait is unknown, not negative
        ({"total_duration": NS, "prompt_eval_duration": NS, "eval_duration": NS},
         CallTimings(prompt=1.0, generate=1.0)),
    ],
)  # fmt: skip
def test_ollama_hostile_or_partial(body: dict[str, Any], expected: CallTimings | None) -> None:
    assert from_ollama(body) == expected


def test_llama_server_timings_have_no_queue_and_no_load() -> None:
    timings = from_llama_server({"prompt_n": 12, "prompt_ms": 250.0, "predicted_n": 8, "predicted_ms": 750})
    assert timings == CallTimings(prompt=0.25, generate=0.75)
    assert timings.at_engine is None
    assert from_llama_server(None) is None
    assert from_llama_server({"prompt_ms": "fast"}) is None
    assert from_llama_server([1, 2]) is None
