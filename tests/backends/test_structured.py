"""Structured output: the answer's JSON schema goes with every call, in each API's own form, until a server
rejects it; then the prompt-only form, remembered per backend. Real HTTP against the fake Ollama."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.prompt import ANSWER_SCHEMA
from tests.conftest import make_settings
from tests.helpers import CHAT_PATHS, chat_requests
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer

TASKS = {"tasks": [{"task_id": f"s{i}", "source": f"结构化第{i}句", "target_language": "ko"} for i in range(3)]}


def post(service: ServiceServer, body: dict[str, Any]) -> dict[str, Any]:
    with service.client() as client:
        response = client.post("/retranslate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def structured(request: dict[str, Any]) -> Any:
    body = request["body"]
    return body.get("format") if request["path"] == "/api/chat" else body.get("response_format")


def backend_info(service: ServiceServer) -> dict[str, Any]:
    backend = httpx.get(f"{service.url}/health", timeout=10).json()["backend"]
    return backend[backend["kind"]]


def test_ollama_native_calls_carry_the_schema_as_format(fake_clean: FakeOllama) -> None:
    with ServiceServer(make_settings(ollama_url=fake_clean.url)) as service:
        assert post(service, TASKS)["summary"]["succeeded"] == 3
        assert backend_info(service)["structured_output"] is True
    requests = chat_requests(fake_clean)
    assert len(requests) == 3
    assert all(r["path"] == "/api/chat" and structured(r) == ANSWER_SCHEMA for r in requests)
    assert all(r["body"]["think"] is False for r in requests)


def test_openai_compatible_calls_carry_a_json_schema_response_format(fake_clean: FakeOllama) -> None:
    settings = make_settings(backend="openai", openai_base_url=f"{fake_clean.url}/v1", model="qwen3:4b")
    with ServiceServer(settings) as service:
        assert post(service, TASKS)["summary"]["succeeded"] == 3
        info = backend_info(service)
    assert info["server"] == "ollama"  # recognised by its /api/version
    requests = chat_requests(fake_clean)
    assert {r["path"] for r in requests} == {"/v1/chat/completions"}
    for request in requests:
        assert structured(request) == {
            "type": "json_schema",
            "json_schema": {"name": "translation", "schema": ANSWER_SCHEMA, "strict": True},
        }
        # Ollama's /v1 honours this thinking switch (think: false).
        assert request["body"]["reasoning_effort"] == "none"


@pytest.mark.parametrize(
    ("backend", "knob"),
    [
        ("ollama", {"reject_format": True}),
        ("ollama", {"version": "0.4.7"}),  # before structured outputs: an object format is a 400
        ("openai", {"reject_response_format": True}),
    ],
)
def test_a_server_that_rejects_structured_output_gets_the_prompt_only_form_from_then_on(
    fake_clean: FakeOllama, backend: str, knob: dict[str, Any]
) -> None:
    fake_clean.configure(**knob)
    extra = {"openai_base_url": f"{fake_clean.url}/v1", "model": "qwen3:4b"} if backend == "openai" else {}
    settings = make_settings(backend=backend, ollama_url=fake_clean.url, max_concurrency=1, **extra)
    with ServiceServer(settings) as service:
        first = post(service, TASKS)
        assert first["summary"]["succeeded"] == 3
        assert backend_info(service)["structured_output"] is False
        calls_before = len(chat_requests(fake_clean))
        again = post(service, {"tasks": [{**TASKS["tasks"][0], "task_id": "again", "source": "再来一句"}]})
        assert again["results"][0]["success"] is True
    requests = [r for r in chat_requests(fake_clean) if r["path"] in CHAT_PATHS]
    # The first call went with the schema and was refused; it was sent again without it, and nothing
    # after that carried a schema.
    assert structured(requests[0]) is not None
    assert requests[0]["status"] == 400
    assert all(structured(r) is None for r in requests[1:])
    assert all(r["status"] == 200 for r in requests[1:])
    assert len(requests) == calls_before + 1
    assert [r["attempts"] for r in first["results"]] == [1, 1, 1]  # the refused form is not an attempt lost


def test_a_400_that_is_not_about_the_schema_does_not_switch_it_off(fake_clean: FakeOllama) -> None:
    # Both forms refused: the 400 is about something else, and structured output stays on.
    fake_clean.configure(failures=[{"mode": "model_404", "count": -1}])
    with ServiceServer(make_settings(ollama_url=fake_clean.url)) as service:
        item = post(service, TASKS)["results"][0]
        assert item["error_code"] == "model_missing"
        assert backend_info(service)["structured_output"] is True
