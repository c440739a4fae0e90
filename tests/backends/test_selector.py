"""Which backend a batch runs on: `auto` switching between batches, and concurrency matched to the slots.

Real processes: llama.cpp's llama-server with the demo model, and the fake Ollama on a loopback port.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any

import httpx
import pytest

from app.backends.embedded import EmbeddedBackend, demo_model_path
from app.backends.selector import Selector
from app.metrics import Metrics
from tests.conftest import ENGINE, engine_available, make_settings
from tests.helpers import await_until, chat_calls, gone, metric, slots_busy, wait_ready, wait_until
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer, free_port

LINES = ["这是我的书", "他很高兴", "今天下雨了", "谢谢你", "我们走吧", "明天见", "大哥", "是个小包工头"]


def en_batch(prefix: str) -> dict[str, Any]:
    tasks = [{"task_id": f"{prefix}{i}", "source": s, "target_language": "en"} for i, s in enumerate(LINES)]
    return {"tasks": tasks, "use_cache": False}


@pytest.fixture
def engine() -> None:
    if not engine_available():
        pytest.skip("the embedded extra is not installed")


@pytest.mark.usefixtures("engine")
def test_auto_finishes_a_batch_on_its_engine_and_goes_back_to_ollama_for_the_next() -> None:
    port = free_port()
    settings = make_settings(
        **{**ENGINE, "backend": "auto", "ollama_url": f"http://127.0.0.1:{port}"},
        embedded_model_path=str(demo_model_path()),
    )
    with ServiceServer(settings) as service:
        health = wait_ready(service.url, 300)
        assert health["backend"]["kind"] == "embedded"
        engine_pid, engine_port = health["backend"]["embedded"]["pid"], health["backend"]["embedded"]["port"]
        first: dict[str, Any] = {}
        runner = threading.Thread(
            target=lambda: first.update(
                httpx.post(f"{service.url}/retranslate", json=en_batch("e"), timeout=600).json()
            )
        )
        runner.start()
        assert wait_until(lambda: slots_busy(engine_port), 120)  # the batch is on the engine...
        with FakeOllama(port=port) as ollama:  # ...when Ollama comes up
            runner.join(600)
            # The batch kept its handle to the end: every line on the engine, none sent to Ollama, and its
            # response says so.
            assert first["backend"] == "embedded"
            assert first["model"] == "SmolLM2-135M-Instruct.Q4_1"
            assert first["summary"]["total"] == len(LINES)
            assert chat_calls(ollama) == 0
            # The next batch runs on Ollama, which answers again.
            second = httpx.post(f"{service.url}/retranslate", json=en_batch("o"), timeout=60).json()
            assert second["backend"] == "ollama"
            assert second["summary"]["succeeded"] == len(LINES)
            assert chat_calls(ollama) == len(LINES)
            # No batch uses the engine any more: its memory is freed.
            assert wait_until(lambda: gone(engine_pid), 30)
            health = httpx.get(f"{service.url}/health", timeout=10).json()
        assert health["backend"]["kind"] == "ollama"
        assert health["backend"]["embedded"]["running"] is False


@pytest.mark.usefixtures("engine")
def test_concurrency_is_bounded_by_an_external_llama_servers_slots(engine_service: ServiceServer) -> None:
    engine_port = httpx.get(f"{engine_service.url}/health", timeout=10).json()["backend"]["embedded"]["port"]
    settings = make_settings(
        backend="openai",
        openai_base_url=f"http://127.0.0.1:{engine_port}/v1",
        model="SmolLM2-135M-Instruct.Q4_1",
        request_timeout_s=120.0,
        max_concurrency=16,
        # One short call per line: the test is about how many run at once, not how good the answers are.
        max_retries=0,
        max_reasks=0,
        max_output_tokens=24,
    )
    with ServiceServer(settings) as service:
        health = wait_ready(service.url)
        assert health["backend"]["openai"]["server"] == "llama-server"
        assert health["max_concurrency"] == 16
        assert health["backend_slots"] == ENGINE["max_concurrency"]  # its /props: total_slots
        assert health["effective_concurrency"] == ENGINE["max_concurrency"]
        seen: list[int] = []

        def in_flight() -> int:
            seen.append(int(metric(service.url, "retranslate_backend_in_flight")))
            return seen[-1]

        # Sampled every 50 ms until every slot is seen busy or the batch is over (a tight loop would take a
        # core from the engine).
        finished = threading.Event()
        sampler = threading.Thread(
            target=wait_until, args=(lambda: in_flight() == ENGINE["max_concurrency"] or finished.is_set(), 600)
        )
        sampler.start()
        try:
            body = httpx.post(f"{service.url}/retranslate", json=en_batch("s"), timeout=600).json()
        finally:
            finished.set()
            sampler.join(30)
    assert body["summary"]["total"] == len(LINES)
    assert sum(item["attempts"] for item in body["results"]) == len(LINES)
    # 8 lines, each a call that takes a while on a CPU: the engine's 4 slots are all used (a sequential
    # service would never show 4), never more (one bounded by the setting of 16 would show up to 8).
    assert max(seen) == ENGINE["max_concurrency"], seen


# --- the model: a preference list when none is named, strict when one is -------------------------------------

ONE = {"tasks": [{"task_id": "p", "source": "大哥", "target_language": "ko"}]}


def only(models: list[str]) -> dict[str, Any]:
    return {name: {"capabilities": ["completion"]} for name in models}


def test_with_only_the_recommended_model_installed_it_is_used(fake_clean: FakeOllama) -> None:
    fake_clean.configure(models=only(["qwen3:4b-instruct-2507-q4_K_M"]))
    with ServiceServer(make_settings(ollama_url=fake_clean.url)) as service:
        health = wait_ready(service.url)
        body = httpx.post(f"{service.url}/retranslate", json=ONE, timeout=30).json()
        models = httpx.get(f"{service.url}/models", timeout=10).json()
    assert health["model"]["name"] == "qwen3:4b-instruct-2507-q4_K_M"
    assert "preference list" in health["model"]["reason"]
    assert body["model"] == "qwen3:4b-instruct-2507-q4_K_M"
    assert "preference list" in body["model_reason"]
    assert models["default"] in models["models"]  # the default is one it has


def test_the_preference_list_order_decides(fake_clean: FakeOllama) -> None:
    fake_clean.configure(models=only(["qwen2.5:7b", "qwen3:4b", "llama3:8b"]))
    with ServiceServer(make_settings(ollama_url=fake_clean.url)) as service:
        assert wait_ready(service.url)["model"]["name"] == "qwen3:4b"


def test_no_model_of_the_list_installed_is_a_503_with_the_fix(fake_clean: FakeOllama) -> None:
    fake_clean.configure(models=only(["llama3:8b"]))
    with ServiceServer(make_settings(ollama_url=fake_clean.url)) as service:
        refused = httpx.post(f"{service.url}/retranslate", json=ONE, timeout=30)
    assert refused.status_code == 503
    detail = refused.json()["detail"]
    assert "ollama pull qwen3:4b-instruct-2507-q4_K_M" in detail
    assert "llama3:8b" in detail


@pytest.mark.parametrize("where", ["setting", "request"])
def test_a_model_named_explicitly_is_used_strictly(fake_clean: FakeOllama, where: str) -> None:
    fake_clean.configure(models=only(["qwen3:4b-instruct-2507-q4_K_M"]))
    extra = {"model": "qwen2.5:32b"} if where == "setting" else {}
    body = {**ONE, "model": "qwen2.5:32b"} if where == "request" else ONE
    with ServiceServer(make_settings(ollama_url=fake_clean.url, **extra)) as service:
        refused = httpx.post(f"{service.url}/retranslate", json=body, timeout=30)
    assert refused.status_code == 503
    assert "ollama pull qwen2.5:32b" in refused.json()["detail"]
    assert chat_calls(fake_clean) == 0


async def test_an_engine_being_stopped_is_never_handed_to_a_batch(engine: None) -> None:
    """A batch that asked to unload stops the embedded llama-server (its memory goes to voice cloning). While
    the stop runs, the readiness cached before it must already be gone: the next batch waits for the stop and
    gets a fresh engine, never the one going away."""
    # A long TTL: a readiness cached before the stop would still be reused during it.
    selector = Selector(make_settings(**ENGINE, readiness_ttl_s=600.0), Metrics())
    try:
        lease = await selector.acquire()
        backend = lease.handle.backend
        assert isinstance(backend, EmbeddedBackend)
        assert backend.process is not None
        old_pid = backend.process.pid
        assert old_pid is not None
        os.kill(old_pid, signal.SIGSTOP)  # holds the stop open: the frozen engine cannot exit yet
        try:
            release = asyncio.create_task(lease.release(unload=True))
            assert await await_until(lambda: backend.process is None)  # the stop has begun
            assert not gone(old_pid)
            during = asyncio.create_task(selector.acquire())  # the next batch arrives meanwhile
            await asyncio.sleep(0)
        finally:
            os.kill(old_pid, signal.SIGCONT)
        await release
        again = await during
        assert gone(old_pid)
        assert backend.process is not None, "a batch was handed the engine that was being stopped"
        assert backend.process.running
        assert backend.process.pid != old_pid
        await again.release()
    finally:
        await selector.close()
