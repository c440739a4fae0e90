"""Identical items share one backend call: within a request and across concurrent requests."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.conftest import ServiceFactory
from tests.helpers import chat_calls
from tests.servers.fake_ollama import FakeOllama


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
    fake_clean.configure(latency_s=0.5)
    body = {"tasks": [{"task_id": "x", "source": "同一句话", "target_language": "ja"}]}
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        first = asyncio.create_task(client.post("/retranslate", json=body))
        await asyncio.sleep(0.1)
        second = await client.post("/retranslate", json={"tasks": [{**body["tasks"][0], "task_id": "y"}]})
        first_response = await first
    assert chat_calls(fake_clean) == 1
    assert first_response.json()["results"][0]["translation"] == second.json()["results"][0]["translation"]
    assert second.json()["results"][0]["task_id"] == "y"


async def test_a_shared_call_survives_one_waiter_leaving(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    service = service_factory()
    fake_clean.configure(latency_s=0.8)
    task = {"task_id": "x", "source": "等一会儿", "target_language": "en"}
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        # The first request gives up after 0.2 s (deadline); the second still gets the shared answer.
        impatient = asyncio.create_task(client.post("/retranslate", json={"tasks": [task], "deadline_s": 0.2}))
        await asyncio.sleep(0.05)
        patient = await client.post("/retranslate", json={"tasks": [{**task, "task_id": "y"}]})
        gave_up = (await impatient).json()["results"][0]
    assert gave_up["success"] is False
    assert "deadline_s" in gave_up["error"]
    assert patient.json()["results"][0]["success"] is True
    stats = fake_clean.stats()
    assert chat_calls(fake_clean) == 1
    assert stats["abandoned"] == 0


def test_a_lone_waiter_leaving_cancels_the_call(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = service_factory()
    fake_clean.configure(latency_s=2.0)
    with service.client() as client:
        item = client.post(
            "/retranslate",
            json={"tasks": [{"task_id": "x", "source": "没人等", "target_language": "en"}], "deadline_s": 0.3},
        ).json()["results"][0]
    assert item["success"] is False
    deadline = time.monotonic() + 5
    while fake_clean.stats()["abandoned"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_clean.stats()["abandoned"] == 1
