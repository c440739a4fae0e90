"""Identical items share one backend call: within a request and across concurrent requests."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from tests.conftest import ServiceFactory
from tests.helpers import (
    SlotGate,
    await_until,
    chat_calls,
    metric,
    post_and_leave,
    requests_ended,
    service_calls,
    wait_until,
)
from tests.servers.fake_ollama import FakeOllama

JOINS = "retranslate_dedup_joins_total"


def test_repeats_within_a_request_cost_one_call(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = service_factory()
    fake_clean.configure(latency_s=0.05)
    sources = ["大哥", "是个小包工头", "大哥", "大哥", "是个小包工头", "今天下雨"] * 5  # 30 items, 3 distinct
    tasks = [{"task_id": f"d{i}", "source": s, "target_language": "ko"} for i, s in enumerate(sources)]
    with service.client() as client:
        body = client.post("/retranslate", json={"tasks": tasks}).json()
    assert body["summary"]["succeeded"] == 30
    assert chat_calls(fake_clean) == 3
    by_source: dict[str, set[str]] = {}
    for r in body["results"]:
        by_source.setdefault(r["source"], set()).add(r["translation"])
    assert all(len(v) == 1 for v in by_source.values())
    assert [r["task_id"] for r in body["results"]] == [t["task_id"] for t in tasks]


def test_same_line_in_another_language_is_not_shared(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = service_factory()
    tasks = [
        {"task_id": f"l{i}", "source": "大哥", "target_language": lang} for i, lang in enumerate(["ko", "ja", "en"])
    ]
    with service.client() as client:
        client.post("/retranslate", json={"tasks": tasks})
    assert chat_calls(fake_clean) == 3


async def test_concurrent_requests_share_the_call_in_flight(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    service = service_factory()
    body = {"tasks": [{"task_id": "x", "source": "同一句话", "target_language": "ja"}]}
    joins = metric(service.url, JOINS)
    gate = SlotGate(fake_clean).close()
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        first = asyncio.create_task(client.post("/retranslate", json=body))
        # The first request's call is at the backend, unanswered (held behind the gate) ...
        assert await await_until(lambda: fake_clean.stats()["waiting"] == 1)
        second = asyncio.create_task(
            client.post("/retranslate", json={"tasks": [{**body["tasks"][0], "task_id": "y"}]})
        )
        # ... when the second request joins it.
        assert await await_until(lambda: metric(service.url, JOINS) == joins + 1)
        await asyncio.to_thread(gate.open)
        first_response, second_response = await first, await second
    assert len(service_calls(fake_clean)) == 1
    assert first_response.json()["results"][0]["translation"] == second_response.json()["results"][0]["translation"]
    assert second_response.json()["results"][0]["task_id"] == "y"


async def test_a_shared_call_survives_its_waiters_leaving(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    """The request that started the call goes away and another gives up at its deadline, while the call is
    at the backend: the call goes on for the request still waiting."""
    service = service_factory()
    task = {"task_id": "x", "source": "等一会儿", "target_language": "en"}
    joins = metric(service.url, JOINS)
    left = requests_ended(service.url, "/retranslate", "4xx")
    gate = SlotGate(fake_clean).close()
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        starter = asyncio.create_task(client.post("/retranslate", json={"tasks": [task]}))
        assert await await_until(lambda: fake_clean.stats()["waiting"] == 1)
        patient = asyncio.create_task(client.post("/retranslate", json={"tasks": [{**task, "task_id": "y"}]}))
        assert await await_until(lambda: metric(service.url, JOINS) == joins + 1)
        # A third request joins and gives up at its deadline while the call is held.
        late = await client.post("/retranslate", json={"tasks": [{**task, "task_id": "z"}], "deadline_s": 0.2})
        # The starter's client goes away: the service cancels its request (a 499 once its work is cancelled).
        starter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starter
        assert await await_until(lambda: requests_ended(service.url, "/retranslate", "4xx") == left + 1)
        await asyncio.to_thread(gate.open)
        answer = (await patient).json()["results"][0]
    gave_up = late.json()["results"][0]
    assert gave_up["success"] is False
    assert gave_up["error_code"] == "deadline"
    assert gave_up["attempts"] == 1  # it had reached the backend: the shared call's progress
    assert answer["success"] is True
    assert answer["translation"]
    calls = service_calls(fake_clean)
    assert len(calls) == 1
    assert calls[0]["abandoned"] is False  # answered, not closed when the first two left


def test_a_lone_waiter_leaving_cancels_the_call(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = service_factory()
    body = {"tasks": [{"task_id": "x", "source": "没人等", "target_language": "en"}]}
    with SlotGate(fake_clean):
        post_and_leave(service.port, "/retranslate", body, until=lambda: fake_clean.stats()["waiting"] == 1)
        # Nobody else waits on the call: the service closes it while it is still at the backend.
        assert wait_until(lambda: [r["abandoned"] for r in service_calls(fake_clean)] == [True])
