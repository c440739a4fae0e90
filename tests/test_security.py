"""API key, CORS, limits, malformed input and X-Request-ID, over real HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServiceFactory
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer

ONE = {"tasks": [{"task_id": "a", "source": "大哥", "target_language": "ko"}]}
KEY = "s3cret-key-for-tests"


@pytest.fixture
def locked(service_factory: ServiceFactory, fake_clean: FakeOllama) -> ServiceServer:
    return service_factory(api_key=KEY)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/retranslate", ONE),
        ("POST", "/retranslate/stream", ONE),
        ("POST", "/api/translate-text", {"text": "大哥", "target_language": "ko"}),
        ("GET", "/models", None),
    ],
)
def test_translation_routes_need_the_key(locked: ServiceServer, method: str, path: str, body: dict | None) -> None:
    with locked.client() as client:
        missing = client.request(method, path, json=body)
        wrong = client.request(method, path, json=body, headers={"Authorization": "Bearer nope"})
        bearer = client.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY}"})
        header = client.request(method, path, json=body, headers={"X-API-Key": KEY})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert "RETRANSLATE_API_KEY" in response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"
    assert bearer.status_code == 200
    assert header.status_code == 200


def test_health_docs_and_languages_stay_open(locked: ServiceServer) -> None:
    with locked.client() as client:
        for path in ("/health", "/ready", "/docs", "/openapi.json", "/languages"):
            assert client.get(path).status_code == 200, path


def test_openapi_documents_both_schemes(locked: ServiceServer) -> None:
    with locked.client() as client:
        schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    assert schema["paths"]["/retranslate"]["post"]["security"]
    assert "401" in schema["paths"]["/retranslate"]["post"]["responses"]
    assert "security" not in schema["paths"]["/health"]["get"]


def test_without_a_key_setting_no_key_is_needed(service: ServiceServer) -> None:
    with service.client() as client:
        assert client.post("/retranslate", json=ONE).status_code == 200


def test_cors_allows_the_editor_frontend_only(service: ServiceServer) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    with service.client() as client:
        ok = client.options("/retranslate", headers={"Origin": "http://localhost:5173", **preflight})
        evil = client.options("/retranslate", headers={"Origin": "http://evil.example", **preflight})
        simple = client.post("/retranslate", json=ONE, headers={"Origin": "http://127.0.0.1:5173"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers
    assert simple.headers["access-control-allow-origin"] == "http://127.0.0.1:5173"


def test_cors_origins_are_configurable(service_factory: ServiceFactory) -> None:
    service = service_factory(cors_origins=["http://editor.lan:8080"])
    with service.client() as client:
        response = client.post("/retranslate", json=ONE, headers={"Origin": "http://editor.lan:8080"})
    assert response.headers["access-control-allow-origin"] == "http://editor.lan:8080"


def test_too_many_tasks_is_a_413_that_names_the_setting(service_factory: ServiceFactory) -> None:
    service = service_factory(max_tasks=3)
    tasks = [{"task_id": f"t{i}", "source": "大哥", "target_language": "ko"} for i in range(4)]
    with service.client() as client:
        response = client.post("/retranslate", json={"tasks": tasks})
        stream = client.post("/retranslate/stream", json={"tasks": tasks})
    assert response.status_code == 413
    assert "RETRANSLATE_MAX_TASKS" in response.json()["detail"]
    assert stream.status_code == 413


def test_a_too_long_line_is_a_422_that_names_the_task(service_factory: ServiceFactory) -> None:
    service = service_factory(max_source_chars=10)
    tasks = [{"task_id": "short", "source": "大哥", "target_language": "ko"},
             {"task_id": "long", "source": "长" * 11, "target_language": "ko"}]  # fmt: skip
    with service.client() as client:
        response = client.post("/retranslate", json={"tasks": tasks})
        single = client.post("/api/translate-text", json={"text": "长" * 11, "target_language": "ko"})
    assert response.status_code == 422
    assert "long" in response.json()["detail"][0]["msg"]
    assert "RETRANSLATE_MAX_SOURCE_CHARS" in response.json()["detail"][0]["msg"]
    assert single.status_code == 422


def test_a_too_large_body_is_a_413(service_factory: ServiceFactory) -> None:
    service = service_factory(max_body_bytes=2048)
    tasks = [{"task_id": f"t{i}", "source": "大哥" * 10, "target_language": "ko"} for i in range(40)]
    payload = json.dumps({"tasks": tasks}).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold on the streamed body too
        for i in range(0, len(payload), 500):
            yield payload[i : i + 500]

    with service.client() as client:
        declared = client.post("/retranslate", content=payload, headers={"Content-Type": "application/json"})
        streamed = client.post("/retranslate", content=chunks(), headers={"Content-Type": "application/json"})
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "RETRANSLATE_MAX_BODY_BYTES" in response.json()["detail"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"tasks": [', "application/json"),  # malformed JSON
        (b"\xff\xfe\x00garbage", "application/json"),  # not UTF-8
        (b'{"tasks": [{"task_id": 1, "source": ["x"], "target_language": null}]}', "application/json"),
        (b'{"tasks": [{"task_id": "a"}]}', "application/json"),  # missing fields
        (b'{"tasks": 5}', "application/json"),
        (b"[]", "application/json"),
        (b"not json at all", "text/plain"),
    ],
)
def test_malformed_input_is_422_never_500(service: ServiceServer, content: bytes, content_type: str) -> None:
    with service.client() as client:
        response = client.post("/retranslate", content=content, headers={"Content-Type": content_type})
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_request_id_is_echoed_or_generated(service: ServiceServer) -> None:
    with service.client() as client:
        given = client.post("/retranslate", json=ONE, headers={"X-Request-ID": "editor-42"})
        generated = client.get("/health")
        hostile = client.get("/health", headers={"X-Request-ID": "bad id; <script>" + "x" * 300})
    assert given.headers["x-request-id"] == "editor-42"
    assert len(generated.headers["x-request-id"]) == 32
    assert len(hostile.headers["x-request-id"]) == 32  # not echoed: a fresh one instead


def test_request_id_is_in_the_log_lines_of_that_request(
    service_factory: ServiceFactory, fake_clean: FakeOllama, caplog: pytest.LogCaptureFixture
) -> None:
    service = service_factory(log_level="INFO")
    with caplog.at_level(logging.INFO, logger="app"), service.client() as client:
        client.post("/retranslate", json=ONE, headers={"X-Request-ID": "trace-me-7"})
    lines = [r for r in caplog.records if r.name.startswith("app.translator")]
    assert lines
    assert all(getattr(r, "request_id", None) == "trace-me-7" for r in lines)


def test_the_service_binds_loopback_by_default() -> None:
    from tests.conftest import make_settings

    assert make_settings().host == "127.0.0.1"
    with pytest.raises(httpx.HTTPError):
        httpx.get("http://127.0.0.1:1/health", timeout=0.5)


def test_without_a_key_the_schema_claims_no_security(service: ServiceServer) -> None:
    with service.client() as client:
        schema = client.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {})
    assert "security" not in schema["paths"]["/retranslate"]["post"]
