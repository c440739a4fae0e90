"""The real engine: llama.cpp's llama-server (the engine inside Ollama) with a small real model.

The packaged demo model is tiny: these tests prove the pipeline (prompt, parsing, fan-out, faults), not
translation quality.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.backends.embedded import demo_model_path
from app.editor_protocol import DEMO_NOTICE
from tests.conftest import ENGINE, engine_available, make_settings
from tests.helpers import gone, slots_busy, wait_breaker_ready, wait_ready, wait_until
from tests.servers.service import ServiceServer, free_port

LINES = ["大哥", "是个小包工头", "今天下雨了", "我们走吧", "谢谢你", "他很高兴", "这是我的书", "明天见"]
# Lines the demo model usually gets right: used where a test needs some success, not a particular one.
EASY = ["这是我的书", "他很高兴", "今天下雨了", "谢谢你"]


def en_tasks(sources: list[str], prefix: str = "e") -> dict:
    return {"tasks": [{"task_id": f"{prefix}{i}", "source": s, "target_language": "en"} for i, s in enumerate(sources)]}


def idle(service: ServiceServer) -> bool:
    """No llama-server slot is still working (e.g. on requests abandoned during a fault)."""
    port = embedded_health(service)["port"]
    try:
        slots = httpx.get(f"http://127.0.0.1:{port}/slots", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return False
    # While it loads (or reloads after a crash), /slots answers an error object.
    return isinstance(slots, list) and not any(s.get("is_processing") for s in slots)


def embedded_health(service: ServiceServer) -> dict[str, Any]:
    with service.client() as client:
        return client.get("/health").json()["backend"]["embedded"]


@pytest.fixture
def own_engine_service(request: pytest.FixtureRequest) -> Iterator[ServiceServer]:
    """A service with its own llama-server, for tests that stop or kill it (settings via indirect params)."""
    if not engine_available():
        pytest.skip("the embedded extra is not installed")
    overrides = getattr(request, "param", {})
    server = ServiceServer(make_settings(**{**ENGINE, **overrides})).start(180)
    wait_ready(server.url, 300)
    yield server
    server.stop()


def test_lines_come_back_translated_by_the_real_engine(engine_service: ServiceServer) -> None:
    with engine_service.client(timeout=600) as client:
        body = client.post("/retranslate", json=en_tasks(LINES)).json()
        health = client.get("/health").json()
    assert body["backend"] == "embedded"
    # The model really answering, by its GGUF name, never an alias such as qwen3:4b.
    assert body["model"] == "SmolLM2-135M-Instruct.Q4_1"
    assert health["status"] == "ready"
    assert health["backend"]["kind"] == "embedded"
    assert health["backend"]["embedded"]["demo_model"] is True
    results = body["results"]
    assert [r["task_id"] for r in results] == [f"e{i}" for i in range(len(LINES))]
    succeeded = [r for r in results if r["success"]]
    assert len(succeeded) >= len(LINES) // 2, results
    for r in succeeded:
        text = r["translation"]
        assert text.strip()
        assert text != r["source"]
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in text)
        assert "<source>" not in text
        assert "Target language" not in text
    for r in results:
        if not r["success"]:
            assert r["translation"] is None
            assert r["error"]
    # llama-server reports its compute (timings.prompt_ms, predicted_ms), not its queue nor a load.
    for r in results:
        timings = r["timings"]
        assert timings["prompt"] is not None, r
        assert timings["generate"] is not None, r
        assert (timings["engine_wait"], timings["load"]) == (None, None), r
    assert body["summary"]["engine_parallelism"] is not None


def test_requests_really_overlap_on_the_server(engine_service: ServiceServer) -> None:
    port = embedded_health(engine_service)["port"]
    busiest = 0
    done = threading.Event()

    def watch_slots() -> None:
        nonlocal busiest
        with httpx.Client(timeout=5) as client:
            while not done.is_set():
                slots = client.get(f"http://127.0.0.1:{port}/slots").json()
                busiest = max(busiest, sum(1 for s in slots if s.get("is_processing")))
                time.sleep(0.01)

    watcher = threading.Thread(target=watch_slots)
    watcher.start()
    try:
        with engine_service.client(timeout=600) as client:
            body = client.post("/retranslate", json={**en_tasks(LINES, "o"), "use_cache": False}).json()
    finally:
        done.set()
        watcher.join(10)
    assert body["summary"]["total"] == len(LINES)
    assert busiest >= 2, f"at most {busiest} slot(s) were busy at once"


HUNG_ENGINE = {"request_timeout_s": 10.0, "item_timeout_s": 60.0, "max_concurrency": 2, "breaker_failures": 2}


@pytest.mark.parametrize("own_engine_service", [HUNG_ENGINE], indirect=True)
def test_a_hung_server_fails_a_batch_fast_then_recovers(own_engine_service: ServiceServer) -> None:
    health = embedded_health(own_engine_service)
    pid, port = health["pid"], health["port"]
    # Hung before a request: the readiness check (bounded) says so at once, nothing is sent.
    os.kill(pid, signal.SIGSTOP)
    try:
        with own_engine_service.client(timeout=120) as client:
            refused = client.post("/retranslate", json=en_tasks(LINES[:6], "h"))
    finally:
        os.kill(pid, signal.SIGCONT)
    assert refused.status_code == 503
    assert "does not answer" in refused.json()["detail"]

    # Hung in the middle of a batch: the calls in flight time out, the breaker opens, the rest fail fast.
    result: dict[str, Any] = {}

    def batch() -> None:
        with own_engine_service.client(timeout=300) as client:
            result["body"] = client.post("/retranslate", json={**en_tasks(LINES, "m"), "use_cache": False}).json()

    runner = threading.Thread(target=batch)
    runner.start()

    assert wait_until(lambda: slots_busy(port), 120)
    os.kill(pid, signal.SIGSTOP)
    try:
        runner.join(300)
    finally:
        os.kill(pid, signal.SIGCONT)
    results = result["body"]["results"]
    assert len(results) == len(LINES)
    failed = [r for r in results if not r["success"]]
    assert failed
    for r in failed:
        assert r["translation"] is None
        assert r["error_code"] in ("timeout", "breaker_open")
    # Bounded by the breaker, not by lines x retries x timeout: at most the bound plus (failures - 1)
    # calls met the hung server.
    timed_out_calls = sum(1 for r in failed if r["attempts"])
    assert timed_out_calls <= HUNG_ENGINE["max_concurrency"] + HUNG_ENGINE["breaker_failures"] - 1
    assert any(r["error_code"] == "breaker_open" for r in failed)

    assert wait_until(lambda: idle(own_engine_service))
    wait_breaker_ready(own_engine_service.url)
    with own_engine_service.client(timeout=600) as client:
        again = client.post("/retranslate", json=en_tasks(EASY[:2], "h2")).json()
    assert again["summary"]["total"] == 2
    # Answered again (a tiny model's answer may still miss a rule; what matters is that it answers).
    answered = [r for r in again["results"] if r["success"] or r["error_code"] == "rule_violation"]
    assert answered, again


def test_a_killed_server_is_restarted_and_nothing_is_lost(own_engine_service: ServiceServer) -> None:
    old_pid = embedded_health(own_engine_service)["pid"]
    port = embedded_health(own_engine_service)["port"]
    result: dict[str, Any] = {}

    def batch() -> None:
        with own_engine_service.client(timeout=600) as client:
            result["body"] = client.post("/retranslate", json=en_tasks(LINES, "k")).json()

    runner = threading.Thread(target=batch)
    runner.start()

    assert wait_until(lambda: slots_busy(port), 120)
    os.kill(old_pid, signal.SIGKILL)
    runner.join(300)
    results = result["body"]["results"]
    assert [r["task_id"] for r in results] == [f"k{i}" for i in range(len(LINES))]
    for r in results:
        assert (r["success"] and r["translation"]) or (r["translation"] is None and r["error"])
    assert wait_until(lambda: embedded_health(own_engine_service)["running"])
    health = embedded_health(own_engine_service)
    assert health["restarts"] == 1
    assert health["pid"] != old_pid
    assert gone(old_pid)
    assert wait_until(lambda: idle(own_engine_service))
    with own_engine_service.client(timeout=600) as client:
        again = client.post("/retranslate", json=en_tasks(EASY, "k2")).json()
    assert any(r["success"] for r in again["results"]), again


def test_the_openai_backend_against_the_same_server(engine_service: ServiceServer) -> None:
    port = embedded_health(engine_service)["port"]
    settings = make_settings(
        backend="openai",
        openai_base_url=f"http://127.0.0.1:{port}/v1",
        model="SmolLM2-135M-Instruct.Q4_1",
        request_timeout_s=120.0,
    )
    with ServiceServer(settings) as service, service.client(timeout=600) as client:
        health = client.get("/health").json()
        body = client.post("/retranslate", json=en_tasks(LINES[:4], "a")).json()
        missing = client.post("/retranslate", json={**en_tasks(LINES[:1]), "model": "qwen3:4b"})
    assert health["status"] == "ready"
    assert health["backend"]["kind"] == "openai"
    assert body["backend"] == "openai"
    assert body["summary"]["total"] == 4
    assert any(r["success"] for r in body["results"]), body
    assert missing.status_code == 503
    assert "qwen3:4b" in missing.json()["detail"]


def test_auto_without_ollama_uses_embedded_only_with_a_model_path() -> None:
    if not engine_available():
        pytest.skip("the embedded extra is not installed")
    nowhere = f"http://127.0.0.1:{free_port()}"
    without = make_settings(backend="auto", ollama_url=nowhere)
    with ServiceServer(without) as service, service.client() as client:
        health = client.get("/health").json()
        refused = client.post("/retranslate", json=en_tasks(["大哥"]))
    assert health["status"] == "degraded"
    assert health["backend"]["kind"] == "none"
    assert refused.status_code == 503
    detail = refused.json()["detail"]
    for way in ("ollama serve", "RETRANSLATE_EMBEDDED_MODEL_PATH", "RETRANSLATE_BACKEND=openai"):
        assert way in detail

    with_path = make_settings(
        **{**ENGINE, "backend": "auto", "ollama_url": nowhere, "embedded_model_path": str(demo_model_path())}
    )
    with ServiceServer(with_path) as service, service.client(timeout=600) as client:
        health = wait_ready(service.url, 300)
        body = client.post("/retranslate", json=en_tasks(["大哥", "谢谢你"])).json()
    assert health["backend"]["kind"] == "embedded"
    assert health["backend"]["embedded"]["demo_model"] is False  # the user chose this file
    assert body["backend"] == "embedded"
    assert body["summary"]["total"] == 2


def _run_cli(tmp_path, *flags: str) -> tuple[int, str]:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "tasks": [
                    {"task_id": f"retrans-{i}", "source": s, "target_language": "英语"} for i, s in enumerate(EASY[:2])
                ],
                "num_processes": 1,
            }
        ),
        encoding="utf-8",
    )
    env = {**os.environ, "RETRANSLATE_BACKEND": "embedded", "RETRANSLATE_MAX_CONCURRENCY": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", str(config), *flags],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout.decode("utf-8", "replace")


def _live_caller_list(out: str) -> list[dict[str, Any]]:
    """The editor's live caller: the last line starting with `[`, parsed to the end."""
    lines = out.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("["))
    parsed: list[dict[str, Any]] = json.loads("\n".join(lines[start:]))
    return parsed


def test_the_cli_never_hands_the_demo_models_output_to_the_editor(tmp_path) -> None:
    if not engine_available():
        pytest.skip("the embedded extra is not installed")
    code, out = _run_cli(tmp_path)
    assert code == 0
    assert DEMO_NOTICE in out
    assert _live_caller_list(out) == []
    # Allowed: the demo model is asked for every line (each comes back answered, or failed after a call,
    # never refused unasked), and what it answered reaches the list.
    code, out = _run_cli(tmp_path, "--allow-demo", "--include-failed")
    assert code == 0
    assert DEMO_NOTICE not in out
    items = _live_caller_list(out)
    assert [item["task_id"] for item in items] == ["retrans-0", "retrans-1"]
    for item in items:
        if item["success"]:
            assert item["translation"]
        else:
            assert item["translation"] is None
            assert item["error_code"] not in ("not_translated", "internal"), item
