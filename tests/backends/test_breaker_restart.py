"""A sub-second engine restart with calls in flight loses no line (the breaker counts incidents and waits for
a restarting engine), and an engine really down still fails fast. Real processes: the fake Ollama runs as its
own process, SIGKILLed and started again on the same port."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from tests.conftest import make_settings
from tests.helpers import wait_until
from tests.servers.fake_ollama import FakeOllamaProcess
from tests.servers.service import ServiceServer, free_port

LINES = 40


def tasks(prefix: str) -> dict[str, Any]:
    return {
        "tasks": [
            {"task_id": f"{prefix}{i}", "source": f"重启第{i}句话", "target_language": "ko"} for i in range(LINES)
        ]
    }


def in_flight(fake: FakeOllamaProcess) -> int:
    try:
        return int(fake.stats()["in_flight"])
    except OSError:
        return 0


def post_in_background(service: ServiceServer, body: dict[str, Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """POST /retranslate on a thread of its own; the answer lands in the dict as "response"."""
    answer: dict[str, Any] = {}

    def post() -> None:
        with httpx.Client(base_url=service.url, timeout=120) as client:
            answer["response"] = client.post("/retranslate", json=body)

    poster = threading.Thread(target=post)
    poster.start()
    return poster, answer


def test_an_engine_killed_and_started_again_at_once_loses_no_line() -> None:
    port = free_port()
    # Calls take a while, so that 4 are in flight when the engine is killed.
    fake = FakeOllamaProcess(port, parallel=4, latency_s=0.3).start()
    # The case: default breaker settings (3 failures, 15 s cooldown), 4 calls at once.
    settings = make_settings(
        ollama_url=fake.url,
        max_concurrency=4,
        breaker_cooldown_s=15.0,
        breaker_restart_window_s=30.0,
        retry_backoff_s=0.05,
    )
    service = ServiceServer(settings).start()
    try:
        poster, answer = post_in_background(service, tasks("r"))
        assert wait_until(lambda: in_flight(fake) == 4, 30), "4 calls never were in flight together"
        fake.restart()  # SIGKILL with 4 calls in flight, started again at once on the same port
        poster.join(120)
        assert not poster.is_alive()
        response = answer["response"]
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        failed = [r for r in results if not r["success"]]
        assert not failed, [(r["task_id"], r["error_code"], r["attempts"], r["error"]) for r in failed]
        assert [r["task_id"] for r in results] == [f"r{i}" for i in range(LINES)]
    finally:
        service.stop()
        fake.kill()


def test_an_engine_really_down_still_fails_fast_after_the_restart_window() -> None:
    port = free_port()
    fake = FakeOllamaProcess(port, parallel=4, latency_s=0.3).start()
    settings = make_settings(
        ollama_url=fake.url, max_concurrency=4, breaker_cooldown_s=60.0, breaker_restart_window_s=1.0
    )
    service = ServiceServer(settings).start()
    try:
        poster, answer = post_in_background(service, tasks("d"))
        assert wait_until(lambda: in_flight(fake) == 4, 30)
        fake.kill()  # and never started again
        poster.join(120)
        assert not poster.is_alive()
        results = answer["response"].json()["results"]
        codes = {r["error_code"] for r in results if not r["success"]}
        assert codes <= {"connection", "breaker_open"}, results
        # The lines not sent when the window ended failed at once, unsent (the cooldown is 60 s: the batch
        # did not wait it out).
        assert any(r["error_code"] == "breaker_open" and r["attempts"] == 0 for r in results)
    finally:
        service.stop()
        fake.kill()
