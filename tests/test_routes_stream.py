"""/retranslate/stream, cancel on disconnect (a real socket that goes away) and /api/translate-text."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.conftest import ServiceFactory
from tests.helpers import chat_requests, wait_until
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer


def test_stream_sends_each_item_as_it_finishes_then_a_summary(service: ServiceServer, fake_clean: FakeOllama) -> None:
    # One line hangs for a while on its first call (then the fake drops it and the retry answers):
    # the other lines must reach us before it is done.
    fake_clean.configure(failures=[{"mode": "hang", "count": 1, "match": "慢"}], hang_s=1.5)
    tasks = [{"task_id": "slow", "source": "慢慢来", "target_language": "ko"}] + [
        {"task_id": f"f{i}", "source": f"快{i}", "target_language": "ko"} for i in range(3)
    ]
    seen: list[dict] = []
    with service.client() as client, client.stream("POST", "/retranslate/stream", json={"tasks": tasks}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        for line in response.iter_lines():
            event = json.loads(line)
            if not seen:
                # Event order, not a clock: the slow line's call has not ended when the first line arrives.
                slow = [r for r in chat_requests(fake_clean) if "慢" in (r.get("source") or "")]
                assert slow
                assert slow[0]["t_end"] is None
            seen.append(event)
    items, final = seen[:-1], seen[-1]
    assert [e["done"] for e in items] == [1, 2, 3, 4]
    assert all(e["total"] == 4 for e in items)
    assert sorted(e["index"] for e in items) == [0, 1, 2, 3]
    assert items[-1]["task_id"] == "slow"
    assert items[-1]["success"] is True
    for e in items:
        assert {"task_id", "source", "translation", "success", "elapsed", "error", "attempts", "cached"} <= set(e)
    assert final["summary"]["total"] == 4
    assert final["summary"]["succeeded"] == 4
    assert final["backend"] == "ollama"


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


def _post_and_abandon(service: ServiceServer, path: str, body: dict, fake: FakeOllama, in_flight: int) -> None:
    """Send a request on a raw socket, wait until the backend is busy with it, then disconnect."""
    payload = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
    try:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        assert wait_until(lambda: fake.stats()["in_flight"] >= in_flight)
    finally:
        sock.close()


@pytest.mark.parametrize("path", ["/retranslate", "/retranslate/stream"])
def test_client_disconnect_cancels_the_work(service_factory: ServiceFactory, fake_clean: FakeOllama, path: str) -> None:
    service = service_factory(max_concurrency=4)
    fake_clean.configure(latency_s=3.0, parallel=4)
    tasks = [{"task_id": f"g{i}", "source": f"断开{i}", "target_language": "ko"} for i in range(20)]
    _post_and_abandon(service, path, {"tasks": tasks}, fake_clean, in_flight=4)
    # The 4 calls in flight are abandoned (their connections closed), the 16 others never sent.
    assert wait_until(lambda: fake_clean.stats()["in_flight"] == 0 and fake_clean.stats()["abandoned"] >= 4)
    time.sleep(0.5)  # room for any wrongly scheduled call to show up
    stats = fake_clean.stats()
    assert stats["abandoned"] == 4
    assert len(chat_requests(fake_clean)) == 4
    # The service is fine afterwards.
    fake_clean.configure(latency_s=0.0)
    with service.client() as client:
        assert client.post("/retranslate", json={"tasks": tasks[:2]}).json()["summary"]["succeeded"] == 2


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
