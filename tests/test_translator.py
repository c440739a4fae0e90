"""Fan-out, retries, thinking, deadlines and fast failure, over real HTTP against the fake Ollama."""

from __future__ import annotations

import time

import pytest

from tests.conftest import ServiceFactory
from tests.helpers import wait_breaker_ready
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer


def tasks(n: int, lang: str = "ko", prefix: str = "第") -> list[dict]:
    return [{"task_id": f"t{i}", "source": f"{prefix}{i}句话", "target_language": lang} for i in range(n)]


def post(service: ServiceServer, body: dict, timeout: float = 60.0) -> dict:
    with service.client(timeout=timeout) as client:
        response = client.post("/retranslate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def assert_failed_cleanly(item: dict) -> None:
    """A failed item never carries text the editor would dub."""
    assert item["success"] is False
    assert item["translation"] is None
    assert item["error"]


@pytest.mark.parametrize("mode", ["http_500", "busy_503", "malformed", "reset"])
def test_transient_failures_are_retried(service: ServiceServer, fake_clean: FakeOllama, mode: str) -> None:
    fake_clean.configure(failures=[{"mode": mode, "count": 2, "retry_after": 0}])
    body = post(service, {"tasks": tasks(1)})
    item = body["results"][0]
    assert item["success"] is True, item
    assert item["attempts"] == 3


def test_retries_are_bounded_and_the_item_fails_with_the_last_error(
    service: ServiceServer, fake_clean: FakeOllama
) -> None:
    fake_clean.configure(failures=[{"mode": "http_500", "count": -1}])
    item = post(service, {"tasks": tasks(1)})["results"][0]
    assert_failed_cleanly(item)
    assert item["attempts"] == 3  # 1 + RETRANSLATE_MAX_RETRIES (2)
    assert "500" in item["error"]


def test_busy_retry_after_is_honoured(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = service_factory(retry_backoff_s=0.0, retry_backoff_max_s=5.0)
    fake_clean.configure(failures=[{"mode": "busy_503", "count": 1, "retry_after": 1}])
    started = time.monotonic()
    item = post(service, {"tasks": tasks(1)})["results"][0]
    assert item["success"] is True
    assert item["attempts"] == 2
    requests = [r for r in fake_clean.stats()["requests"] if r["path"] == "/api/chat"]
    assert requests[1]["t_start"] - requests[0]["t_end"] >= 0.9  # waited as told, not our 0 s backoff
    assert time.monotonic() - started >= 0.9


def test_other_4xx_are_not_retried(service: ServiceServer, fake_clean: FakeOllama) -> None:
    fake_clean.configure(failures=[{"mode": "model_404", "count": -1}])
    item = post(service, {"tasks": tasks(1)})["results"][0]
    assert_failed_cleanly(item)
    assert item["attempts"] == 1
    assert "not found" in item["error"]


@pytest.mark.parametrize("style", ["placeholder", "empty", "cutoff"])
def test_unusable_answers_are_retried_then_failed(service: ServiceServer, fake_clean: FakeOllama, style: str) -> None:
    fake_clean.configure(style=style)
    item = post(service, {"tasks": tasks(1)})["results"][0]
    assert_failed_cleanly(item)
    assert item["attempts"] == 3


@pytest.mark.parametrize("style", ["json", "fenced", "think_tags", "thinking_field", "plain", "quoted"])
def test_answer_styles_parse_to_the_same_translation(
    service: ServiceServer, fake_clean: FakeOllama, style: str
) -> None:
    fake_clean.configure(style=style)
    item = post(service, {"tasks": tasks(1)})["results"][0]
    assert item["success"] is True, item
    assert "<think>" not in item["translation"]
    assert "{" not in item["translation"]
    fake_clean.configure(style="json")
    assert post(service, {"tasks": tasks(1)})["results"][0]["translation"] == item["translation"]


def test_think_tags_mark_the_model_as_thinking_in_health(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    service = service_factory(model="qwen3:4b-instruct-2507-q4_K_M")
    # A model that answers with think tags although asked not to (older Ollama versions put them in the text).
    fake_clean.configure(raw_by_source={"句话": '<think>\nThe user wants Korean.\n</think>\n{"tr": "말이야"}'})
    assert post(service, {"tasks": tasks(1)})["results"][0]["success"] is True
    with service.client() as client:
        health = client.get("/health").json()
    assert health["model"]["model_thinks"] is True
    assert "qwen3:4b-instruct-2507-q4_K_M" in health["model"]["advice"]


def test_a_model_that_always_thinks_gets_the_thinking_allowance(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    service = service_factory(model="qwen3:4b")
    fake_clean.configure(style="always_thinks", thinking_tokens=600)
    item = post(service, {"tasks": tasks(1)})["results"][0]
    assert item["success"] is True, item
    request = next(r for r in fake_clean.stats()["requests"] if r["path"] == "/api/chat")
    assert request["body"]["options"]["num_predict"] == 128 + 1024  # qwen3:4b lists "thinking"


def test_a_model_that_thinks_past_the_cap_fails_with_the_fix_and_no_blind_retry(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    service = service_factory(thinking_tokens=0, model="qwen3:4b")
    fake_clean.configure(style="always_thinks", thinking_tokens=600)
    item = post(service, {"tasks": tasks(1)})["results"][0]
    assert_failed_cleanly(item)
    assert item["attempts"] == 1
    assert "qwen3:4b-instruct-2507-q4_K_M" in item["error"]
    with service.client() as client:
        assert client.get("/health").json()["model"]["model_thinks"] is True


def test_request_deadline_fails_unfinished_items_with_a_reason(service: ServiceServer, fake_clean: FakeOllama) -> None:
    fake_clean.configure(latency_s=0.4, parallel=4)
    started = time.monotonic()
    body = post(service, {"tasks": tasks(12), "deadline_s": 0.6})
    assert time.monotonic() - started < 5
    results = body["results"]
    assert len(results) == 12
    done = [r for r in results if r["success"]]
    late = [r for r in results if not r["success"]]
    assert 1 <= len(done) <= 8
    assert late
    for item in late:
        assert_failed_cleanly(item)
        assert "deadline_s of 0.6 s" in item["error"]
    assert any("never reached the backend" in r["error"] for r in late)


def test_item_timeout_bounds_one_item_with_its_retries(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = service_factory(item_timeout_s=0.8, request_timeout_s=0.3, breaker_failures=100)
    fake_clean.configure(failures=[{"mode": "hang", "count": -1}], hang_s=30)
    started = time.monotonic()
    item = post(service, {"tasks": tasks(1)})["results"][0]
    assert time.monotonic() - started < 5
    assert_failed_cleanly(item)
    assert "timed out" in item["error"]


def test_request_timeout_bounds_one_call(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = service_factory(request_timeout_s=0.3, max_retries=0)
    fake_clean.configure(failures=[{"mode": "hang", "count": 1}], hang_s=30)
    started = time.monotonic()
    item = post(service, {"tasks": tasks(1)})["results"][0]
    assert time.monotonic() - started < 5
    assert_failed_cleanly(item)
    assert item["attempts"] == 1
    assert "timed out" in item["error"]
    # The hung call was abandoned by its client, and the next request succeeds.
    assert post(service, {"tasks": tasks(1)})["results"][0]["success"] is True


def test_a_backend_that_stops_answering_fails_the_rest_fast(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    service = service_factory(request_timeout_s=0.3, max_concurrency=2, breaker_failures=3)
    fake_clean.configure(failures=[{"mode": "hang", "count": -1}], hang_s=30)
    started = time.monotonic()
    body = post(service, {"tasks": tasks(40)})
    elapsed = time.monotonic() - started
    results = body["results"]
    assert len(results) == 40
    for item in results:
        assert_failed_cleanly(item)
    fast = [r for r in results if "stopped answering" in r["error"]]
    assert len(fast) >= 30
    assert sum(1 for r in fast if r["attempts"] == 0 and r["error"].startswith("not attempted")) >= 30
    # 40 items x 3 calls x 0.3 s / 2 slots would be 18 s: it ends after a few timeouts instead.
    assert elapsed < 10
    fake_clean.configure(failures=[])
    wait_breaker_ready(service.url)
    assert post(service, {"tasks": tasks(3)})["summary"]["succeeded"] == 3


def test_unload_after_frees_the_model(service: ServiceServer, fake_clean: FakeOllama) -> None:
    body = post(service, {"tasks": tasks(2), "unload_after": True})
    assert body["summary"]["succeeded"] == 2
    stats = fake_clean.stats()
    assert stats["unloads"] == [body["model"]]
    with service.client() as client:
        ps = client.get(f"{fake_clean.url}/api/ps").json()
    assert ps["models"] == []


def test_without_unload_after_the_model_stays_loaded(service: ServiceServer, fake_clean: FakeOllama) -> None:
    body = post(service, {"tasks": tasks(1)})
    assert fake_clean.stats()["unloads"] == []
    with service.client() as client:
        assert [m["name"] for m in client.get(f"{fake_clean.url}/api/ps").json()["models"]] == [body["model"]]


def test_keep_alive_setting_reaches_ollama(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = service_factory(keep_alive="10m")
    post(service, {"tasks": tasks(1)})
    request = next(r for r in fake_clean.stats()["requests"] if r["path"] == "/api/chat")
    assert request["body"]["keep_alive"] == "10m"
