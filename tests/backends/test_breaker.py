"""The breaker's state machine (pure: a fake clock, no network)."""

from __future__ import annotations

import asyncio

import pytest

from app.backends.breaker import Breaker, BreakerState
from app.errors import BackendCallError, ErrorKind


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, failures: int = 3, cooldown_s: float = 10.0) -> Breaker:
    return Breaker("test backend", failures, cooldown_s, clock)


def fail(b: Breaker, kind: ErrorKind = ErrorKind.TIMEOUT, probe: bool = False) -> None:
    b.record(kind, probe, f"{kind.value} happened")


async def probing(clock: Clock) -> Breaker:
    """A breaker that opened, waited out its cooldown, and let this call through as the probe."""
    b = breaker(clock)
    for _ in range(3):
        fail(b)
    clock.now += 10.0
    assert await b.admit() is True
    return b


async def test_opens_after_n_timeouts_or_connection_failures_in_a_row() -> None:
    clock = Clock()
    b = breaker(clock)
    fail(b)
    fail(b, ErrorKind.CONNECTION)
    assert b.state is BreakerState.CLOSED
    assert await b.admit() is False
    fail(b)
    assert b.describe()["state"] == "open"
    with pytest.raises(BackendCallError) as info:
        await b.admit()
    assert info.value.kind is ErrorKind.BREAKER_OPEN
    assert "RETRANSLATE_BREAKER_COOLDOWN_S" in str(info.value)
    assert "3 calls in a row" in str(info.value)


async def test_an_answer_in_between_resets_the_count() -> None:
    b = breaker(Clock())
    fail(b)
    fail(b)
    b.record(ErrorKind.BUSY, False)  # the backend answered (503 busy): it is there
    fail(b)
    fail(b)
    assert b.state is BreakerState.CLOSED
    b.record(None, False)
    fail(b)
    fail(b)
    assert b.state is BreakerState.CLOSED


async def test_readiness_checks_fail_at_once_while_open_and_pass_after_the_cooldown() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        fail(b)
    with pytest.raises(BackendCallError):
        b.check()
    clock.now += 10.0
    b.check()  # cooldown over: a readiness check may go, and a call becomes the probe


async def test_one_probe_decides_and_the_others_wait_for_its_verdict() -> None:
    clock = Clock()
    b = await probing(clock)
    assert b.describe()["state"] == "half_open"
    waiting = asyncio.ensure_future(b.admit())
    await asyncio.sleep(0)
    assert not waiting.done()  # a second call waits for the probe instead of going out
    b.record(None, True)  # the probe got an answer
    assert await waiting is False
    assert b.state is BreakerState.CLOSED


async def test_a_failed_probe_opens_it_again_for_a_new_cooldown() -> None:
    clock = Clock()
    b = await probing(clock)
    waiting = asyncio.ensure_future(b.admit())
    await asyncio.sleep(0)
    fail(b, probe=True)
    assert b.state is BreakerState.OPEN
    with pytest.raises(BackendCallError):
        await waiting
    clock.now += 9.0
    with pytest.raises(BackendCallError):
        await b.admit()


async def test_a_probe_that_gets_an_error_answer_still_closes_it() -> None:
    clock = Clock()
    b = await probing(clock)
    b.record(ErrorKind.SERVER, True)  # HTTP 500: the server is there
    assert b.state is BreakerState.CLOSED


async def test_an_abandoned_probe_lets_the_next_call_probe() -> None:
    clock = Clock()
    b = await probing(clock)
    b.abandon(True)  # its caller went away before a verdict
    assert await b.admit() is True


def test_describe_says_when_it_retries() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        fail(b)
    clock.now += 4.0
    info = b.describe()
    assert info["state"] == "open"
    assert info["retry_in_s"] == 6.0
    assert "timeout happened" in info["last_error"]
    # Rounded up: "0" only once a call would go out, never while it would still be refused.
    clock.now += 5.99
    assert b.describe()["retry_in_s"] == 0.1
    with pytest.raises(BackendCallError):
        b.check()
    clock.now += 0.01
    assert b.describe()["retry_in_s"] == 0.0
    b.check()


# --- over real HTTP: one breaker for the whole service --------------------------------------------------------

import threading  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

from tests.conftest import make_settings  # noqa: E402
from tests.helpers import chat_calls, chat_requests, wait_breaker_ready  # noqa: E402
from tests.servers.fake_ollama import FakeOllama  # noqa: E402
from tests.servers.service import ServiceServer  # noqa: E402

HUNG = {"request_timeout_s": 0.5, "max_concurrency": 4, "breaker_failures": 3, "max_retries": 2}


def batch(prefix: str, n: int = 10) -> dict[str, Any]:
    return {"tasks": [{"task_id": f"{prefix}{i}", "source": f"熔断{prefix}第{i}句", "target_language": "ko"}
                      for i in range(n)]}  # fmt: skip


def post(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/retranslate", json=body, timeout=60)


def test_concurrent_requests_against_a_hung_backend_pay_for_the_failures_once(fake_clean: FakeOllama) -> None:
    fake_clean.configure(failures=[{"mode": "hang", "count": -1}], hang_s=30)
    with ServiceServer(make_settings(ollama_url=fake_clean.url, breaker_cooldown_s=60, **HUNG)) as service:
        responses: dict[str, httpx.Response] = {}
        threads = [
            threading.Thread(target=lambda p=p: responses.__setitem__(p, post(service.url, batch(p)))) for p in "abc"
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        items = [r for p in "abc" for r in responses[p].json()["results"]]
        # The first wave of calls (the service's bound) hung and timed out; while the breaker still counted,
        # a slot freed by a timeout let at most (failures - 1) more out. Then it opened for every request at
        # once: three requests with 30 lines paid for the failures once. (A breaker per request would have
        # let each request time out breaker_failures times on its own.)
        bound = HUNG["max_concurrency"] + HUNG["breaker_failures"] - 1
        assert HUNG["max_concurrency"] <= chat_calls(fake_clean) <= bound
        assert all(r["success"] is False and r["translation"] is None for r in items)
        fast = [r for r in items if r["error_code"] == "breaker_open"]
        assert len(fast) >= len(items) - bound
        assert all("RETRANSLATE_BREAKER_COOLDOWN_S" in r["error"] for r in fast)
        # The items whose call timed out gave up at their retry, naming both reasons.
        tried = [r for r in items if r["attempts"]]
        assert tried
        assert all(r["error"].startswith("gave up") and "timed out" in r["error"] for r in tried)

        # Back to back: a request arriving while the breaker is open waits on nothing, not even a
        # readiness check on the network.
        before = len(fake_clean.stats()["requests"])
        refused = post(service.url, batch("c", 2))
        assert refused.status_code == 503
        assert "stopped answering" in refused.json()["detail"]
        assert len(fake_clean.stats()["requests"]) == before
        health = httpx.get(f"{service.url}/health", timeout=10).json()
        assert health["backend"]["ollama"]["breaker"]["state"] == "open"
        assert health["status"] == "degraded"


def test_after_the_cooldown_one_probe_decides_and_the_breaker_closes(fake_clean: FakeOllama) -> None:
    fake_clean.configure(failures=[{"mode": "hang", "count": -1}], hang_s=30)
    with ServiceServer(make_settings(ollama_url=fake_clean.url, breaker_cooldown_s=1.0, **HUNG)) as service:
        tripped = post(service.url, batch("t", 6)).json()
        assert all(r["success"] is False for r in tripped["results"])
        fake_clean.reset()  # the backend answers again
        wait_breaker_ready(service.url)  # the cooldown is over (an observed state, not a sleep)
        recovered = post(service.url, batch("r", 8)).json()
        assert recovered["summary"]["succeeded"] == 8
        health = httpx.get(f"{service.url}/health", timeout=10).json()
    assert health["backend"]["ollama"]["breaker"]["state"] == "closed"
    calls = chat_requests(fake_clean)
    assert len(calls) == 8
    probe, rest = calls[0], calls[1:]
    # One probe went alone; the other calls waited for its verdict before going out.
    assert all(r["t_start"] >= probe["t_end"] for r in rest)
