"""/retranslate/stream, cancel on disconnect (a real socket that goes away) and /api/translate-text."""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import ServiceFactory, make_settings
from tests.helpers import chat_requests, hanging_calls, metric, post_and_leave, requests_ended, wait_until
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer, free_port

SUCCEEDED = 'retranslate_tasks_total{outcome="succeeded"}'
CALLS_OK = 'retranslate_backend_calls_total{status="ok"}'
# What a batch's work shows in /metrics: a cancelled one adds nothing here.
WORK_METRICS = (
    "retranslate_retries_total",
    "retranslate_reasks_total",
    SUCCEEDED,
    'retranslate_tasks_total{outcome="failed"}',
    CALLS_OK,
    'retranslate_backend_calls_total{status="connection"}',
    'retranslate_backend_calls_total{status="timeout"}',
    'retranslate_backend_calls_total{status="internal"}',
)


def test_stream_sends_each_item_as_it_finishes_then_a_summary(service: ServiceServer, fake_clean: FakeOllama) -> None:
    # One line's first call hangs until the test ends it (the fake then drops it and the retry answers): the
    # other lines must reach us while it is still at the backend. A stream that held its lines back would
    # send nothing before the end, and the read below would time out.
    fake_clean.configure(failures=[{"mode": "hang", "count": 1, "match": "慢"}], hang_s=60)
    tasks = [{"task_id": "slow", "source": "慢慢来", "target_language": "ko"}] + [
        {"task_id": f"f{i}", "source": f"快{i}", "target_language": "ko"} for i in range(3)
    ]
    seen: list[dict] = []
    with (
        service.client(timeout=20) as client,
        client.stream("POST", "/retranslate/stream", json={"tasks": tasks}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        for line in response.iter_lines():
            seen.append(json.loads(line))
            if len(seen) == 3:
                # Three lines are here, the slow line's call is still held: now let it go.
                slow = [r for r in chat_requests(fake_clean) if "慢" in (r.get("source") or "")]
                assert [r["t_end"] for r in slow] == [None]
                assert fake_clean.end_hangs() == 1
    items, final = seen[:-1], seen[-1]
    assert [e["done"] for e in items] == [1, 2, 3, 4]
    assert all(e["total"] == 4 for e in items)
    assert sorted(e["index"] for e in items) == [0, 1, 2, 3]
    assert items[-1]["task_id"] == "slow"
    assert items[-1]["success"] is True
    assert items[-1]["attempts"] == 2  # the dropped call, then the retry
    for e in items:
        assert {"task_id", "source", "translation", "success", "elapsed", "error", "attempts", "cached"} <= set(e)
    assert final["summary"]["total"] == 4
    assert final["summary"]["succeeded"] == 4
    assert final["backend"] == "ollama"


def test_a_backend_failing_mid_stream_still_sends_every_line_then_the_summary() -> None:
    """The backend stops after some lines were streamed: every item still comes as a line (the unfinished
    ones failed, with an error_code), and the summary line ends the stream."""
    port = free_port()
    fake = FakeOllama(port=port, parallel=4).start()
    # Lines 2-5 hang at the backend (the service's 4 slots), 6-7 wait behind them in the service.
    fake.configure(failures=[{"mode": "hang", "count": -1, "match": "停"}], hang_s=60)
    sources = ["好0", "好1", "停2", "停3", "停4", "停5", "好6", "好7"]
    tasks = [{"task_id": f"m{i}", "source": s, "target_language": "ko"} for i, s in enumerate(sources)]
    settings = make_settings(ollama_url=fake.url, max_concurrency=4, request_timeout_s=60, breaker_failures=3)
    seen: list[dict] = []
    try:
        with (
            ServiceServer(settings) as service,
            service.client(timeout=60) as client,
            client.stream("POST", "/retranslate/stream", json={"tasks": tasks}) as response,
        ):
            assert response.status_code == 200
            for line in response.iter_lines():
                seen.append(json.loads(line))
                if len(seen) == 2:
                    # Two lines answered, four calls held at the backend: it goes away.
                    assert wait_until(lambda: hanging_calls(fake) == 4)
                    fake.stop()
    finally:
        fake.stop()
    items, final = seen[:-1], seen[-1]
    assert sorted(e["task_id"] for e in items[:2]) == ["m0", "m1"]  # answered concurrently: either order
    assert all(e["success"] for e in items[:2])
    assert sorted(e["index"] for e in items) == list(range(8))
    assert [e["done"] for e in items] == list(range(1, 9))
    for e in items[2:]:
        assert e["success"] is False
        assert e["translation"] is None
        # The calls in flight broke off; the lines not yet sent met a closed port or the open breaker.
        assert e["error_code"] in ("connection", "breaker_open"), e
    assert {e["task_id"] for e in items[2:]} == {f"m{i}" for i in range(2, 8)}
    assert set(final) >= {"summary", "model", "backend"}
    assert final["summary"] == {**final["summary"], "total": 8, "succeeded": 2, "failed": 6}


def test_stream_answers_503_before_any_work_when_not_ready(service: ServiceServer) -> None:
    body = {"tasks": [{"task_id": "a", "source": "大哥", "target_language": "ko"}], "model": "nope:1b"}
    with service.client() as client:
        response = client.post("/retranslate/stream", json=body)
    assert response.status_code == 503
    assert "ollama pull nope:1b" in response.json()["detail"]


def test_stream_validates_like_retranslate(service: ServiceServer) -> None:
    with service.client() as client:
        response = client.post(
            "/retranslate/stream", json={"tasks": [{"task_id": "a", "source": "x", "target_language": "zz"}]}
        )
    assert response.status_code == 422


@pytest.mark.parametrize("path", ["/retranslate", "/retranslate/stream"])
def test_client_disconnect_cancels_the_work(service_factory: ServiceFactory, fake_clean: FakeOllama, path: str) -> None:
    service = service_factory(max_concurrency=4)
    fake_clean.configure(latency_s=60.0, parallel=4)
    url = service.url
    before = {name: metric(url, name) for name in WORK_METRICS}
    ended = requests_ended(url, path, "4xx") + requests_ended(url, path, "2xx")
    tasks = [{"task_id": f"g{i}", "source": f"断开{i}", "target_language": "ko"} for i in range(20)]
    post_and_leave(service.port, path, {"tasks": tasks}, until=lambda: fake_clean.stats()["in_flight"] == 4)
    # The 4 calls in flight are abandoned (their connections closed) ...
    assert wait_until(lambda: fake_clean.stats()["abandoned"] == 4 and fake_clean.stats()["in_flight"] == 0)
    # ... and the service says it is done with the request and has no call out.
    assert wait_until(lambda: requests_ended(url, path, "4xx") + requests_ended(url, path, "2xx") == ended + 1)
    assert wait_until(lambda: metric(url, "retranslate_backend_in_flight") == 0)
    # A later request's calls queue behind any line of the old batch still waiting for a slot (the bound is
    # first come, first served): once it is answered, a wrongly surviving line would have been sent.
    fake_clean.configure(latency_s=0.0)
    later = [{"task_id": f"n{i}", "source": f"之后{i}", "target_language": "ko"} for i in range(2)]
    with service.client() as client:
        assert client.post("/retranslate", json={"tasks": later}).json()["summary"]["succeeded"] == 2
    sources = [r["source"] for r in chat_requests(fake_clean)]
    assert sorted(s for s in sources if s.startswith("断开")) == sorted(f"断开{i}" for i in range(4)), sources
    assert len(sources) == 6
    assert fake_clean.stats()["abandoned"] == 4
    # The cancelled calls were not retried nor counted as failed calls or items: only the later request shows.
    delta = {name: metric(url, name) - before[name] for name in WORK_METRICS}
    assert delta == {**dict.fromkeys(WORK_METRICS, 0.0), SUCCEEDED: 2.0, CALLS_OK: 2.0}


def test_a_cancelled_batch_logs_no_internal_error(
    service_factory: ServiceFactory, fake_clean: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    service = service_factory(max_concurrency=4)
    fake_clean.configure(latency_s=60.0, parallel=4)
    ended = requests_ended(service.url, "/retranslate", "4xx")
    tasks = [{"task_id": f"q{i}", "source": f"排队{i}", "target_language": "ko"} for i in range(8)]
    with caplog.at_level(logging.ERROR, logger="app"):
        post_and_leave(
            service.port, "/retranslate", {"tasks": tasks}, until=lambda: fake_clean.stats()["in_flight"] == 4
        )
        assert wait_until(lambda: requests_ended(service.url, "/retranslate", "4xx") == ended + 1)
        assert wait_until(lambda: fake_clean.stats()["in_flight"] == 0)
    errors = [r.getMessage() for r in caplog.records if r.name.startswith("app") and r.levelno >= logging.ERROR]
    assert errors == []


def test_translate_text_returns_the_translation(service: ServiceServer, fake_clean: FakeOllama) -> None:
    with service.client() as client:
        response = client.post("/api/translate-text", json={"text": "是个小包工头", "target_language": "ko"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    assert body["translation"]
    assert body["translation"] != "是个小包工头"
    assert body["elapsed"] >= 0
    assert body["length_budget"] == 18


def test_translate_text_is_502_never_a_200_with_the_source(service: ServiceServer, fake_clean: FakeOllama) -> None:
    fake_clean.configure(style="never_comply_hanzi")
    with service.client() as client:
        response = client.post("/api/translate-text", json={"text": "是个小包工头", "target_language": "ko"})
    assert response.status_code == 502
    assert "Hanzi" in response.json()["detail"]


def test_translate_text_is_503_when_not_ready_and_422_on_bad_input(service: ServiceServer) -> None:
    with service.client() as client:
        missing = client.post("/api/translate-text", json={"text": "大哥", "target_language": "ko", "model": "no:1b"})
        unknown = client.post("/api/translate-text", json={"text": "大哥", "target_language": "tlh"})
        blank = client.post("/api/translate-text", json={"text": " ", "target_language": "ko"})
    assert missing.status_code == 503
    assert "ollama pull no:1b" in missing.json()["detail"]
    assert unknown.status_code == 422
    assert blank.status_code == 422


@pytest.mark.parametrize("path", ["/retranslate", "/retranslate/stream"])
def test_unload_after_still_unloads_when_the_client_leaves(
    service_factory: ServiceFactory, fake_clean: FakeOllama, path: str
) -> None:
    """The editor gives up on a batch that asked to unload: the model still leaves the GPU (voice cloning
    needs the memory next)."""
    service = service_factory(max_concurrency=2)
    fake_clean.configure(latency_s=60.0, parallel=2)
    tasks = [{"task_id": f"u{i}", "source": f"卸载{i}", "target_language": "ko"} for i in range(4)]
    post_and_leave(
        service.port, path, {"tasks": tasks, "unload_after": True}, until=lambda: fake_clean.stats()["in_flight"] == 2
    )
    assert wait_until(lambda: fake_clean.stats()["unloads"] != []), "the model was never unloaded"
    with service.client() as client:
        model = client.get("/health").json()["model"]["name"]
    assert fake_clean.stats()["unloads"] == [model]
