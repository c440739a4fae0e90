"""Small helpers shared by the tests: bounded waiting and reading the fake Ollama's records."""

from __future__ import annotations

import time
from collections.abc import Callable

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
