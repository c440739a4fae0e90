"""POST /retranslate and friends over real HTTP: uvicorn + the fake Ollama."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEMO_KEY, ServiceFactory, make_settings
from tests.helpers import chat_requests
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer

UPSTREAM_CONFIG = {
    "tasks": [
        {"task_id": "retrans-3", "source": "是个小包工头", "target_language": "韩语"},
        {"task_id": "retrans-4", "source": "大哥", "target_language": "韩语"},
    ],
    "model": "qwen3:4b",
    "num_processes": 1,
    "max_length": 100,
    "output_file": "/tmp/should-never-be-written.srt",
}


def test_upstream_payload_is_accepted_and_every_item_comes_back(service: ServiceServer, fake_clean: FakeOllama) -> None:
    with service.client() as client:
        response = client.post("/retranslate", json=UPSTREAM_CONFIG)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "qwen3:4b"  # named in the request: used strictly
    assert body["model_reason"] == "the request's model"
    assert body["demo_model"] is False
    assert body["backend"] == "ollama"
    assert [r["task_id"] for r in body["results"]] == ["retrans-3", "retrans-4"]
    for item in body["results"]:
        assert item["success"] is True
        assert item["error"] is None
        assert item["attempts"] == 1
        assert item["translation"]
        assert not any("\u4e00" <= ch <= "\u9fff" for ch in item["translation"])
        assert item["elapsed"] >= 0
        assert item["length_unit"] == "hangul"
        assert item["within_budget"] is True
    assert body["summary"]["total"] == 2
    assert body["summary"]["succeeded"] == 2
    assert body["summary"]["failed"] == 0
    # Every call was capped, asked for no thinking, at temperature 0.3.
    for request in chat_requests(fake_clean):
        assert request["body"]["think"] is False
        assert request["body"]["options"]["num_predict"] > 0
        assert request["body"]["options"]["temperature"] == 0.3


def test_output_file_in_the_config_is_never_written(fake_clean: FakeOllama, tmp_path: Path) -> None:
    """The service writes one file, the cache it is configured with; never a file the caller names (one
    editor caller sets output_file to the subtitle file itself)."""
    subtitles = tmp_path / "subtitles.srt"
    subtitles.write_bytes(b"1\n00:00:01,000 --> 00:00:02,000\n\xe5\xa4\xa7\xe5\x93\xa5\n")
    before = subtitles.read_bytes()
    settings = make_settings(ollama_url=fake_clean.url, cache_size=100, cache_path=str(tmp_path / "cache.sqlite3"))
    with ServiceServer(settings) as service, service.client() as client:
        for target in (subtitles, tmp_path / "new.srt"):
            body = {**UPSTREAM_CONFIG, "output_file": str(target)}
            assert client.post("/retranslate", json=body).json()["summary"]["succeeded"] == 2
    assert subtitles.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.sqlite3", "subtitles.srt"]


def test_results_keep_request_order_when_completion_order_differs(
    service: ServiceServer, fake_clean: FakeOllama
) -> None:
    # The first lines fail twice before answering, so they finish last.
    fake_clean.configure(latency_s=0.02, failures=[{"mode": "http_500", "count": 2, "match": "慢"}])
    tasks = [
        {"task_id": f"item-{i}", "source": f"慢{i}号" if i < 2 else f"快{i}号", "target_language": "ja"}
        for i in range(8)
    ]
    with service.client() as client:
        body = client.post("/retranslate", json={"tasks": tasks}).json()
    assert [r["task_id"] for r in body["results"]] == [t["task_id"] for t in tasks]
    assert [r["source"] for r in body["results"]] == [t["source"] for t in tasks]
    assert body["results"][0]["attempts"] + body["results"][1]["attempts"] == 4  # two retried calls
    assert all(r["success"] for r in body["results"])


@pytest.mark.parametrize(
    "name",
    [
        "韩语",
        "韩文",
        "日语",
        "日文",
        "英语",
        "英文",
        "法语",
        "法文",
        "德语",
        "德文",
        "西班牙语",
        "西班牙文",
        "印尼语",
        "印尼文",
        "ko",
        "JA",
        "English",
        "french",
    ],
)
def test_language_names_upstream_sends(service: ServiceServer, name: str) -> None:
    with service.client() as client:
        response = client.post(
            "/retranslate", json={"tasks": [{"task_id": "t", "source": "大哥", "target_language": name}]}
        )
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["success"] is True


def test_unknown_language_is_a_422_naming_it_and_listing_the_supported(service: ServiceServer) -> None:
    tasks = [
        {"task_id": "a", "source": "大哥", "target_language": "ko"},
        {"task_id": "b", "source": "大哥", "target_language": "克林贡语"},
    ]
    with service.client() as client:
        response = client.post("/retranslate", json={"tasks": tasks})
    assert response.status_code == 422
    text = response.text
    assert "克林贡语" in text
    assert "ko, ja, en, fr, de, es, id" in text


def test_empty_tasks_is_200_with_empty_results(service: ServiceServer) -> None:
    with service.client() as client:
        body = client.post("/retranslate", json={"tasks": []}).json()
    assert body["results"] == []
    assert body["summary"]["total"] == 0


def test_duplicate_task_ids_are_a_422_naming_them(service: ServiceServer) -> None:
    tasks = [{"task_id": "x-1", "source": "大哥", "target_language": "ko"}] * 2
    with service.client() as client:
        response = client.post("/retranslate", json={"tasks": tasks})
    assert response.status_code == 422
    assert "x-1" in response.text
    assert "duplicate" in response.text


@pytest.mark.parametrize(
    "body",
    [
        {"tasks": [{"task_id": "a", "target_language": "ko"}]},  # no source
        {"tasks": [{"task_id": "a", "source": "   ", "target_language": "ko"}]},  # blank source
        {"tasks": [{"task_id": "", "source": "大哥", "target_language": "ko"}]},  # empty id
        {"tasks": "not a list"},
        {},
    ],
)
def test_malformed_requests_are_422(service: ServiceServer, body: dict) -> None:
    with service.client() as client:
        assert client.post("/retranslate", json=body).status_code == 422


def test_languages_route_lists_every_code(service: ServiceServer) -> None:
    with service.client() as client:
        body = client.get("/languages").json()
    assert [lang["code"] for lang in body] == ["ko", "ja", "en", "fr", "de", "es", "id"]
    assert "韩语" in body[0]["accepted_names"]


def test_docs_and_openapi_are_served(service: ServiceServer) -> None:
    with service.client() as client:
        assert client.get("/docs").status_code == 200
        schema = client.get("/openapi.json").json()
    assert "503" in schema["paths"]["/retranslate"]["post"]["responses"]


def test_model_missing_is_a_503_that_says_ollama_pull(service: ServiceServer) -> None:
    with service.client() as client:
        response = client.post("/retranslate", json={**UPSTREAM_CONFIG, "model": "llama9:999b"})
    assert response.status_code == 503
    assert "ollama pull llama9:999b" in response.json()["detail"]


async def test_bound_holds_across_two_concurrent_requests(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    fake_clean.configure(latency_s=0.05, parallel=16)
    service = service_factory(max_concurrency=3)
    tasks = [{"task_id": f"t{i}", "source": f"第{i}句", "target_language": "en"} for i in range(12)]
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
        responses = await asyncio.gather(
            client.post("/retranslate", json={"tasks": tasks}),
            client.post("/retranslate", json={"tasks": tasks}),
        )
    for response in responses:
        assert response.status_code == 200
        assert response.json()["summary"]["succeeded"] == 12
    stats = fake_clean.stats()
    assert stats["max_in_flight"] == 3  # saturated, never above


def test_health_reports_backend_model_and_bound(service: ServiceServer) -> None:
    with service.client() as client:
        body = client.get("/health").json()
        ready = client.get("/ready")
    assert body["status"] == "ready"
    assert body["backend"]["kind"] == "ollama"
    assert body["backend"]["ollama"]["reachable"] is True
    assert body["backend"]["ollama"]["version"]
    assert body["backend"]["ollama"]["started_by_service"] is False
    # RETRANSLATE_MODEL unset: the first installed of the preference list (the fake has three models).
    assert body["model"]["name"] == "qwen3:4b-instruct-2507-q4_K_M"
    assert body["model"]["available"] is True
    assert "preference list" in body["model"]["reason"]
    assert body["model"]["thinking_capable"] is False
    assert body["model"]["demo_model"] is False
    assert body["max_concurrency"] == 4
    assert body["effective_concurrency"] == 4
    assert ready.status_code == 200


# --- the demo model is never passed off as good ----------------------------------------------------------------

DEMO_LINE = {"task_id": "d", "source": "这是我的书", "target_language": "en"}


def test_every_route_says_when_the_demo_model_answers(demo_service: ServiceServer) -> None:
    auth = {"Authorization": f"Bearer {DEMO_KEY}"}
    with demo_service.client(timeout=600, headers=auth) as client:
        body = client.post("/retranslate", json={"tasks": [DEMO_LINE]}).json()
        named = client.post("/retranslate", json={"tasks": [DEMO_LINE], "model": "qwen3:4b"}).json()
        with client.stream("POST", "/retranslate/stream", json={"tasks": [DEMO_LINE]}) as stream:
            summary = [json.loads(line) for line in stream.iter_lines() if line.strip()][-1]
        refused = client.post("/api/translate-text", json={"text": "这是我的书", "target_language": "en"})
        allowed = client.post(
            "/api/translate-text", json={"text": "这是我的书", "target_language": "en", "allow_demo": True}
        )
        models = client.get("/models").json()
        health = client.get("/health").json()
        docs = client.get("/openapi.json").json()["info"]["description"]
    assert body["demo_model"] is True
    assert body["model"] == "SmolLM2-135M-Instruct.Q4_1"
    assert "DEMO" in body["model_reason"]
    # A request naming a model the engine does not have: told which model answered instead.
    assert named["model"] == "SmolLM2-135M-Instruct.Q4_1"
    assert "answers instead of the requested qwen3:4b" in named["model_reason"]
    assert summary["demo_model"] is True
    # The one route whose answer the editor's panel takes as it is: refused unless asked for.
    assert refused.status_code == 503
    assert "allow_demo" in refused.json()["detail"]
    assert allowed.status_code in (200, 502)  # the tiny model may well miss every rule
    if allowed.status_code == 200:
        assert allowed.json()["demo_model"] is True
    assert models["demo_model"] is True
    assert models["default"] in models["models"]
    assert health["model"]["demo_model"] is True
    assert "DEMO MODEL" in docs


def test_a_real_model_is_not_flagged(service: ServiceServer) -> None:
    with service.client() as client:
        body = client.post("/retranslate", json={"tasks": [DEMO_LINE]}).json()
        text = client.post("/api/translate-text", json={"text": "这是我的书", "target_language": "en"}).json()
        docs = client.get("/openapi.json").json()["info"]["description"]
    assert body["demo_model"] is False
    assert text["demo_model"] is False
    assert "DEMO" not in docs
    assert "Ollama" in docs
