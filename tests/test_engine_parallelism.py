"""Issue 31 over real HTTP: per-item timings from the engine's durations, measured parallelism, the advice on
/health, and the bound that follows what the engine serves (a fake Ollama whose slots change on one port)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import make_settings
from tests.helpers import metric, wait_ready
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer

PARTS = ("service_wait", "engine_wait", "load", "prompt", "generate")
# Each call's compute at the fake: long beside a loaded machine's scheduling delays (0.15 s failed under load).
LATENCY_S = 0.4
MAX_CONCURRENCY = 4


def tasks(prefix: str, n: int = 8) -> dict[str, Any]:
    """`n` distinct lines (no two share a call), in Korean: checking a Latin-script answer first loads the
    language identifier, a one-off wait that is in `elapsed` but is no call's."""
    return {"tasks": [{"task_id": f"{prefix}{i}", "source": f"第{prefix}{i}句话", "target_language": "ko"}
                      for i in range(n)]}  # fmt: skip


@pytest.fixture(scope="module")
def engine() -> Iterator[FakeOllama]:
    """This module's own fake Ollama: its slots are changed between runs, on the same port."""
    fake = FakeOllama(latency_s=LATENCY_S, parallel=1).start()
    yield fake
    fake.stop()


def adaptive_service(engine: FakeOllama, **overrides: Any) -> ServiceServer:
    settings = make_settings(
        ollama_url=engine.url, adapt_concurrency=True, max_concurrency=MAX_CONCURRENCY, **overrides
    )
    service = ServiceServer(settings).start()
    wait_ready(service.url)
    return service


@pytest.fixture
def service(engine: FakeOllama) -> Iterator[ServiceServer]:
    """A fresh service (nothing measured yet) on the module's fake, stopped after the test."""
    engine.reset(config=False)
    server = adaptive_service(engine)
    yield server
    server.stop()


def run_batch(service: ServiceServer, prefix: str) -> dict[str, Any]:
    response = httpx.post(f"{service.url}/retranslate", json=tasks(prefix), timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["summary"]["succeeded"] == len(body["results"]), body
    return dict(body)


def health(service: ServiceServer) -> dict[str, Any]:
    return dict(httpx.get(f"{service.url}/health", timeout=10).json())


def assert_timings_add_up(results: list[dict[str, Any]]) -> None:
    """Every part measured, and together they are the item's elapsed: never more (they are parts of it), and
    the rest (HTTP and the service's own work between calls) smaller than what they explain."""
    for item in results:
        timings = item["timings"]
        assert all(timings[part] is not None and timings[part] >= 0 for part in PARTS), item
        parts = sum(timings[part] for part in PARTS)
        # elapsed is rounded to 1 ms, each part to 0.1 ms
        assert parts <= item["elapsed"] + 0.001 + 0.0001 * len(PARTS), item
        assert item["elapsed"] - parts < parts, item


def test_one_slot_parallelism_one_advice_and_at_most_two_at_the_engine(
    engine: FakeOllama, service: ServiceServer
) -> None:
    engine.configure(parallel=1)
    first = run_batch(service, "a")
    assert_timings_add_up(first["results"])
    # Sent 4 at once to one slot: the engine computed one at a time, and the later lines waited inside it.
    assert 0.7 <= first["summary"]["engine_parallelism"] <= 1.3, first["summary"]
    assert max(item["timings"]["engine_wait"] for item in first["results"]) >= LATENCY_S
    report = health(service)
    assert report["measured_parallelism"] is not None
    assert report["measured_parallelism"] <= 1.5, report
    assert report["effective_concurrency"] == 2, report  # measured + 1
    advice = report["parallelism_advice"]
    assert advice is not None
    fixes = (
        f"OLLAMA_NUM_PARALLEL={MAX_CONCURRENCY}",
        "Edit environment variables for your account",
        "tray",
        "systemctl edit ollama",
        f'Environment="OLLAMA_NUM_PARALLEL={MAX_CONCURRENCY}"',
        "parallel x context",
    )
    for words in fixes:
        assert words in advice, (words, advice)

    engine.reset(config=False)  # counters only
    second = run_batch(service, "b")
    assert_timings_add_up(second["results"])
    stats = engine.stats()
    assert stats["max_in_flight"] <= 2, stats  # the rest waited in the service, where a cancel costs nothing
    assert stats["max_in_flight"] == 2, stats  # ... and one waited ready at the engine
    # The timings reach /metrics.
    assert metric(service.url, 'retranslate_item_timing_seconds_count{part="engine_wait"}') >= 16


def test_four_slots_about_four_no_advice_no_throttling(engine: FakeOllama, service: ServiceServer) -> None:
    engine.configure(parallel=4)
    for prefix in ("c", "d"):
        body = run_batch(service, prefix)
        assert_timings_add_up(body["results"])
        assert body["summary"]["engine_parallelism"] >= 2.5, body["summary"]
    report = health(service)
    assert report["measured_parallelism"] >= 2.5, report
    assert report["parallelism_advice"] is None, report
    assert report["effective_concurrency"] == MAX_CONCURRENCY, report
    assert engine.stats()["max_in_flight"] == MAX_CONCURRENCY


def test_slots_raised_on_the_same_port_are_found_without_a_restart(engine: FakeOllama, service: ServiceServer) -> None:
    engine.configure(parallel=1)
    run_batch(service, "e")
    assert health(service)["effective_concurrency"] == 2
    engine.configure(parallel=4)  # the user restarted Ollama with OLLAMA_NUM_PARALLEL=4, same port
    found_after = None
    for batch in range(1, 7):
        run_batch(service, f"f{batch}-")
        if health(service)["effective_concurrency"] == MAX_CONCURRENCY:
            found_after = batch
            break
    assert found_after is not None, health(service)
    report = health(service)
    assert report["parallelism_advice"] is None, report
    engine.reset(config=False)
    run_batch(service, "g")
    assert engine.stats()["max_in_flight"] == MAX_CONCURRENCY


@pytest.mark.parametrize(
    ("knobs", "reported"),
    [
        ({"durations": False}, ()),  # a server that reports nothing
        ({"v1_timings": True}, ("prompt", "generate")),  # llama-server: no queue, no load
    ],
)
def test_what_the_engine_does_not_report_is_null_and_the_bound_stays(
    engine: FakeOllama, knobs: dict[str, Any], reported: tuple[str, ...]
) -> None:
    engine.reset(config=False)
    engine.configure(**{"parallel": 1, "durations": True, "v1_timings": False, **knobs})
    # durations=False is tried on the native path, v1_timings on the OpenAI-compatible one.
    overrides: dict[str, Any] = {}
    if "v1_timings" in knobs:
        overrides = {"backend": "openai", "openai_base_url": f"{engine.url}/v1"}
    service = adaptive_service(engine, **overrides)
    try:
        body = run_batch(service, "h")
        for item in body["results"]:
            timings = item["timings"]
            assert timings["service_wait"] is not None
            for part in PARTS[1:]:
                assert (timings[part] is not None) == (part in reported), item
        report = health(service)
        if reported:
            # llama-server says nothing of its queue: our own clock measures the stay, the compute is its.
            assert body["summary"]["engine_parallelism"] is not None
        else:
            assert body["summary"]["engine_parallelism"] is None
            assert report["measured_parallelism"] is None
            assert report["parallelism_advice"] is None
            assert report["effective_concurrency"] == MAX_CONCURRENCY  # behaviour unchanged
            assert engine.stats()["max_in_flight"] == MAX_CONCURRENCY
    finally:
        service.stop()
        engine.configure(durations=True, v1_timings=False)


def test_stream_lines_carry_the_timings(engine: FakeOllama, service: ServiceServer) -> None:
    engine.configure(parallel=1)
    with httpx.stream("POST", f"{service.url}/retranslate/stream", json=tasks("s"), timeout=120) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line]
    *items, last = lines
    assert_timings_add_up(items)
    assert 0.7 <= last["summary"]["engine_parallelism"] <= 1.3, last
