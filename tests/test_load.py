"""Load: 200 concurrent clients x 5 lines against the fake Ollama, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx

from tests.conftest import ServiceFactory
from tests.servers.fake_ollama import FakeOllama

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CLIENTS = 200
LINES = 5


async def test_200_clients_all_answered_and_the_bound_holds(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    service = service_factory(max_concurrency=4)
    fake_clean.configure(latency_s=0.005, parallel=16)  # the backend could take more: the bound is ours

    async def client_run(client: httpx.AsyncClient, c: int) -> httpx.Response:
        tasks = [{"task_id": f"c{c}-{i}", "source": f"负载{c}号第{i}句", "target_language": "ja"} for i in range(LINES)]
        return await client.post("/retranslate", json={"tasks": tasks})

    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=service.url, timeout=120, limits=limits) as client:
        responses = await asyncio.gather(*(client_run(client, c) for c in range(CLIENTS)))
    wall = time.monotonic() - started

    assert all(r.status_code == 200 for r in responses)
    results = [item for r in responses for item in r.json()["results"]]
    assert len(results) == CLIENTS * LINES
    assert {item["task_id"] for item in results} == {f"c{c}-{i}" for c in range(CLIENTS) for i in range(LINES)}
    assert all(item["success"] for item in results)
    stats = fake_clean.stats()
    # The bound is used to the full and never exceeded (a sequential service would show 1, a leaky one more).
    assert stats["max_in_flight"] == 4
    assert stats["paths"].get("/api/chat") == CLIENTS * LINES
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load.json").write_text(
        json.dumps(
            {
                "clients": CLIENTS,
                "lines": CLIENTS * LINES,
                "wall_s": round(wall, 2),
                "backend_max_in_flight": stats["max_in_flight"],
                "bound": 4,
            },
            indent=2,
        )
    )
