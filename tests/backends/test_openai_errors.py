"""The OpenAI-compatible backend's error mapping, against the fake Ollama's /v1 (no C++ build needed): each
failure becomes its error_code, and only the transient ones are retried."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ServiceFactory
from tests.helpers import chat_requests, wait_breaker_ready
from tests.servers.fake_ollama import FakeOllama


def openai_service(service_factory: ServiceFactory, fake: FakeOllama, **overrides: Any):
    return service_factory(backend="openai", openai_base_url=f"{fake.url}/v1", model="qwen3:4b", **overrides)


def one_line(service, source: str = "大哥来了") -> dict:
    with service.client(timeout=60) as client:
        response = client.post(
            "/retranslate", json={"tasks": [{"task_id": "o", "source": source, "target_language": "ko"}]}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["backend"] == "openai"
    return body["results"][0]


@pytest.mark.parametrize(
    ("mode", "extra", "settings", "code", "attempts"),
    [
        ("http_500", {}, {}, "server", 3),
        ("busy_503", {"retry_after": 1}, {}, "busy", 3),
        ("model_404", {}, {}, "model_missing", 1),
        # request_timeout_s: a hung call fails after it (its own service: no other test shares the short bound)
        ("hang", {}, {"request_timeout_s": 0.3}, "timeout", 3),
        ("reset", {}, {}, "connection", 3),
        ("malformed", {}, {}, "server", 3),
    ],
)
def test_openai_backend_maps_each_failure_to_its_code(
    service_factory: ServiceFactory,
    fake_clean: FakeOllama,
    mode: str,
    extra: dict,
    settings: dict,
    code: str,
    attempts: int,
) -> None:
    service = openai_service(service_factory, fake_clean, **settings)
    fake_clean.configure(failures=[{"mode": mode, "count": -1, **extra}], hang_s=30)
    item = one_line(service)
    assert item["success"] is False
    assert item["translation"] is None
    assert item["error_code"] == code, item
    # 1 + RETRANSLATE_MAX_RETRIES (2) for what another call may fix, 1 for what it cannot.
    assert item["attempts"] == attempts
    calls = chat_requests(fake_clean)
    assert [r["path"] for r in calls] == ["/v1/chat/completions"] * attempts
    assert [r["failure"] for r in calls] == [mode] * attempts
    # The next line, with the backend fine again, succeeds on the same service.
    fake_clean.configure(failures=[])
    wait_breaker_ready(service.url)  # timeouts and broken connections trip the service's breaker
    assert one_line(service, "好了吗")["success"] is True


def test_openai_backend_honours_retry_after(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = openai_service(service_factory, fake_clean, retry_backoff_s=0.0, retry_backoff_max_s=5.0)
    fake_clean.configure(failures=[{"mode": "busy_503", "count": 1, "retry_after": 1}])
    item = one_line(service)
    assert item["success"] is True
    assert item["attempts"] == 2
    first, second = chat_requests(fake_clean)
    assert first["failure"] == "busy_503"
    # A lower bound (load only adds to it): the server's 1 s, not our 0 s backoff.
    assert second["t_start"] - first["t_end"] >= 0.9


def test_the_servers_kind_is_detected_once_not_on_every_readiness_check(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    """Hosted APIs answer /api/version and /props with 404s: asking on every check (every readiness TTL) was
    two wasted requests each time."""
    service = openai_service(service_factory, fake_clean)  # RETRANSLATE_READINESS_TTL_S=0: every call checks
    with service.client() as client:
        for _ in range(3):
            assert client.get("/health").json()["status"] == "ready"
        assert one_line(service)["success"] is True
    paths = [r["path"] for r in fake_clean.stats()["requests"]]
    assert paths.count("/v1/models") >= 4
    assert paths.count("/api/version") <= 1
