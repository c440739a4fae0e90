"""Fan-out, retries, thinking, deadlines and fast failure, over real HTTP against the fake Ollama."""

from __future__ import annotations

import pytest

from tests.conftest import ServiceFactory
from tests.helpers import chat_calls, chat_requests, metric, wait_breaker_ready, wait_until
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
    assert item["error_code"] == "server"
    assert chat_calls(fake_clean) == 3


def test_busy_retry_after_is_honoured(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = service_factory(retry_backoff_s=0.0, retry_backoff_max_s=5.0)
    fake_clean.configure(failures=[{"mode": "busy_503", "count": 1, "retry_after": 1}])
    item = post(service, {"tasks": tasks(1)})["results"][0]
    assert item["success"] is True
    assert item["attempts"] == 2
    requests = chat_requests(fake_clean)
    assert [r["failure"] for r in requests] == ["busy_503", None]
    # A lower bound (load only adds to it): waited as told, not our 0 s backoff.
    assert requests[1]["t_start"] - requests[0]["t_end"] >= 0.9


def test_other_4xx_are_not_retried(service: ServiceServer, fake_clean: FakeOllama) -> None:
    fake_clean.configure(failures=[{"mode": "model_404", "count": -1}])
    item = post(service, {"tasks": tasks(1)})["results"][0]
    assert_failed_cleanly(item)
    assert item["attempts"] == 1
    assert item["error_code"] == "model_missing"


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
    # Lines 0-3 hang at the backend (they take all 4 of the service's slots the moment the batch starts) and
    # 4-11 queue behind them: at the deadline, 4 were at the backend and 8 were never sent. No line has to
    # finish in time, so the outcome is the same however loaded the machine is (a version that needed four
    # answers within the second failed under load when the service's loop was starved for a second).
    post(service, {"tasks": tasks(1)})  # a breaker left half-open by an earlier test closes on this answer
    assert wait_until(lambda: metric(service.url, "retranslate_backend_in_flight") == 0)
    fake_clean.reset()
    fake_clean.configure(failures=[{"mode": "hang", "count": -1, "match": "等"}], hang_s=60)
    lines = [{**t, "source": f"等{i}句话"} if i < 4 else t for i, t in enumerate(tasks(12))]
    results = post(service, {"tasks": lines, "deadline_s": 1.0})["results"]
    # On failure: every item and every call the fake saw, untruncated (a string message is shown in full).
    items = [(r["task_id"], r["attempts"], r["error"]) for r in results]
    why = "\n".join(map(str, [*items, *chat_requests(fake_clean)]))
    assert [r["task_id"] for r in results] == [f"t{i}" for i in range(12)]
    for item in results:
        assert_failed_cleanly(item)
        assert item["error_code"] == "deadline"
        assert "deadline_s of 1 s passed before this item finished" in item["error"]
    # The bound let out exactly the first four, each once; the rest say they never reached the backend.
    assert [r["attempts"] for r in results] == [1] * 4 + [0] * 8, why
    assert ["never reached the backend" in r["error"] for r in results] == [False] * 4 + [True] * 8, why

    # The calls at the backend were closed, not left to run: the fake saw each client leave. (On a starved
    # machine a call cut before it was written never arrives; one that arrives is abandoned.)
    def settled() -> bool:
        stats = fake_clean.stats()
        return stats["in_flight"] == 0 and all(r["abandoned"] for r in chat_requests(fake_clean))

    assert wait_until(settled), why
    sources = sorted(r["source"] for r in chat_requests(fake_clean))
    assert set(sources) <= {f"等{i}句话" for i in range(4)}, sources
    assert len(set(sources)) == len(sources), sources


def test_item_timeout_bounds_one_item_with_its_retries(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    # 3 calls of 0.3 s would take 0.9 s: the item's bound of 0.5 s cuts it during its second call.
    service = service_factory(item_timeout_s=0.5, request_timeout_s=0.3, breaker_failures=100)
    fake_clean.configure(failures=[{"mode": "hang", "count": -1}], hang_s=30)
    item = post(service, {"tasks": tasks(1)})["results"][0]
    assert_failed_cleanly(item)
    assert item["error_code"] == "item_timeout"  # not "timeout": the retries did not run their course
    assert 1 <= item["attempts"] < 3
    # Each call it made was closed when its time was up, none left hanging at the backend.
    assert wait_until(lambda: fake_clean.stats()["abandoned"] == item["attempts"])
    assert chat_calls(fake_clean) == item["attempts"]


def test_request_timeout_bounds_one_call(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = service_factory(request_timeout_s=0.3, max_retries=0)
    fake_clean.configure(failures=[{"mode": "hang", "count": 1}], hang_s=30)
    item = post(service, {"tasks": tasks(1)})["results"][0]
    assert_failed_cleanly(item)
    assert item["attempts"] == 1
    assert item["error_code"] == "timeout"
    # The hung call was abandoned by its client (not left to run its 30 s), and the next request succeeds.
    assert wait_until(lambda: fake_clean.stats()["abandoned"] == 1)
    assert post(service, {"tasks": tasks(1)})["results"][0]["success"] is True


def test_a_backend_that_stops_answering_fails_the_rest_fast(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    service = service_factory(request_timeout_s=0.3, max_concurrency=2, breaker_failures=3)
    fake_clean.configure(failures=[{"mode": "hang", "count": -1}], hang_s=30)
    body = post(service, {"tasks": tasks(40)})
    results = body["results"]
    assert len(results) == 40
    for item in results:
        assert_failed_cleanly(item)
        assert item["error_code"] in ("timeout", "breaker_open")
    fast = [r for r in results if r["error_code"] == "breaker_open" and r["attempts"] == 0]
    assert len(fast) >= 30
    assert all(r["error"].startswith("not attempted") for r in fast)
    # 40 items x 3 calls would be 120 calls: it ends after the breaker's 3 timeouts (and the calls in flight
    # beside them, a probe if the cooldown passes) instead.
    assert chat_calls(fake_clean) <= 3 + 2 + 1
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
