"""Small helpers shared by the tests: bounded waiting and reading the fake Ollama's records."""

from __future__ import annotations

import asyncio
import json
import socket
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


# --- ordering events without a clock ------------------------------------------------------------------------


def metric(url: str, name: str) -> float:
    """One sample of the service's /metrics, e.g. `retranslate_dedup_joins_total` or
    `http_requests_total{handler="/retranslate",method="POST",status="4xx"}`; 0 when it is not there yet (a
    labelled counter appears at its first increment)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == name:
            return float(value)
    return 0.0


async def await_until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    """`wait_until` for async tests: polls in a thread, so the test's own requests keep running."""
    return await asyncio.to_thread(wait_until, predicate, timeout_s)


GATE_SOURCE = "闸门占位"


def service_calls(fake: FakeOllama) -> list[dict]:
    """The chat calls the service made (a SlotGate's own call left out), in order."""
    return [r for r in chat_requests(fake) if r.get("source") != GATE_SOURCE]


def raw_post(host: str, port: int, path: str, body: dict, headers: str = "") -> socket.socket:
    """Send a JSON POST on a socket of our own and return the socket unread: closing it is a client that
    leaves (an HTTP client library would hide when its connection closes). `headers`: extra CRLF-ended lines."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{headers}"
        f"Content-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return sock


class SlotGate:
    """Holds the fake Ollama's only slot with a call of the test's own, so that the service's calls wait in
    the fake's queue (its stats' `waiting`) until `open()`: "the call is at the backend and not answered"
    then holds for exactly as long as the test needs, whatever the machine's load.

    `open()` closes the test's call (the fake sees its client leave, counts it abandoned and hands the slot
    on at once). The gate's call is a chat request of the fake's: count the service's with `service_calls`.
    """

    def __init__(self, fake: FakeOllama) -> None:
        self.fake = fake
        self._sock: socket.socket | None = None

    def close(self) -> SlotGate:
        fake = self.fake
        assert fake.stats()["in_flight"] == 0, "close the gate before the service's calls"
        rules = fake.stats()["config"]["failures"]
        # First, so that a test's own rule without a `match` cannot take the gate's call.
        fake.configure(parallel=1, failures=[{"mode": "hang", "count": 1, "match": GATE_SOURCE}, *rules])
        user = f"Target language: Korean (ko)\n<source>\n{GATE_SOURCE}\n</source>"
        body = {"model": "qwen3:4b", "stream": False, "messages": [{"role": "user", "content": user}]}
        self._sock = raw_post(fake.host, fake.port, "/api/chat", body)
        assert wait_until(lambda: fake.stats()["running"] == 1), "the gate's call did not take the slot"
        return self

    def open(self) -> None:
        if self._sock is None:
            return
        self._sock.close()
        self._sock = None

        def gate_done() -> bool:
            return any(r["t_end"] is not None for r in chat_requests(self.fake) if r.get("source") == GATE_SOURCE)

        assert wait_until(gate_done), "the fake did not let go of the gate's call"

    def __enter__(self) -> SlotGate:
        return self.close()

    def __exit__(self, *exc: object) -> None:
        self.open()


def post_and_leave(port: int, path: str, body: dict, until: Callable[[], bool], headers: str = "") -> None:
    """Send a request on a raw socket, wait (bounded) until `until()` holds, then disconnect without reading
    the answer: a client that goes away."""
    sock = raw_post("127.0.0.1", port, path, body, headers)
    try:
        assert wait_until(until), "the condition to leave on never came"
    finally:
        sock.close()


def requests_ended(url: str, path: str, status: str) -> float:
    """How many POSTs to `path` the service has finished with a `status` class ("2xx", "4xx", ...), by its
    own /metrics. A request whose client left ends as a 499 ("4xx") once its work has been cancelled."""
    return metric(url, f'http_requests_total{{handler="{path}",method="POST",status="{status}"}}')


def hanging_calls(fake: FakeOllama) -> int:
    """Calls the fake holds in a "hang" failure right now."""
    return sum(1 for r in chat_requests(fake) if r["failure"] == "hang" and r["t_end"] is None)
