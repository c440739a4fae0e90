"""Small helpers shared by the tests: bounded waiting and reading the fake Ollama's records."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import psutil

from tests.servers.fake_ollama import FakeOllama

CHAT_PATHS = ("/api/chat", "/v1/chat/completions")


def wait_until(predicate: Callable[[], bool], timeout_s: float = 30.0, interval_s: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `timeout_s` passes (every wait in the tests is bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def gone(pid: int) -> bool:
    """The process has exited (a zombie awaiting its parent counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def chat_requests(fake: FakeOllama) -> list[dict]:
    """The chat calls the fake Ollama received, in order."""
    return [r for r in fake.stats()["requests"] if r["path"] in CHAT_PATHS]


def chat_calls(fake: FakeOllama) -> int:
    return len(chat_requests(fake))


def breaker_ready(url: str) -> bool:
    """No backend breaker of the service at `url` is cooling down: the next call goes out (as the probe if
    one was open). The breaker is the service's, shared by every request: a test that tripped it leaves it
    open for RETRANSLATE_BREAKER_COOLDOWN_S."""
    try:
        backend = httpx.get(f"{url}/health", timeout=10).json()["backend"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    for info in backend.values():
        if isinstance(info, dict) and "breaker" in info:
            breaker = info["breaker"]
            if breaker["state"] == "open" and breaker.get("retry_in_s", 0) > 0:
                return False
    return True


def wait_breaker_ready(url: str, timeout_s: float = 30.0) -> None:
    assert wait_until(lambda: breaker_ready(url), timeout_s), f"the breaker of {url} stayed open"


def wait_ready(url: str, timeout_s: float = 60.0) -> dict:
    """Poll /health until the service says ready (a start or a model load runs in the background)."""
    last: dict = {}

    def ready() -> bool:
        nonlocal last
        try:
            last = httpx.get(f"{url}/health", timeout=10).json()
        except (httpx.HTTPError, ValueError):
            return False
        return last.get("status") == "ready"

    assert wait_until(ready, timeout_s), f"not ready: {last}"
    return last


def slots_busy(port: int) -> bool:
    """A llama-server on `port` is working on a request (its /slots answers an error object while loading)."""
    try:
        slots = httpx.get(f"http://127.0.0.1:{port}/slots", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(slots, list) and any(isinstance(s, dict) and s.get("is_processing") for s in slots)
