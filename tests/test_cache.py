"""The result cache: unit tests of ResultCache, and the service's use of it over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from app.cache import ResultCache
from tests.conftest import ServiceFactory, make_settings
from tests.helpers import chat_calls
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer


def lines(n: int, prefix: str = "缓存") -> dict:
    return {"tasks": [{"task_id": f"c{i}", "source": f"{prefix}第{i}句", "target_language": "ko"} for i in range(n)]}


def post(service: ServiceServer, body: dict) -> dict:
    with service.client() as client:
        response = client.post("/retranslate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


BASE = {"task_id": "k0", "source": "大哥来了", "target_language": "ko", "max_length": 12, "context": ["前一句"]}
GLOSSARY = {"大哥": "형님"}


def ask(service: ServiceServer, task: dict | None = None, glossary: dict | None = None, **body: object) -> dict:
    item = post(service, {"tasks": [task or BASE], "glossary": glossary or GLOSSARY, **body})["results"][0]
    assert item["success"], item
    return item


def test_cache_key_changes_with_everything_that_changes_the_answer(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    """The key the translator builds, seen from outside: what changes an answer is a miss (a backend call),
    what does not is a hit."""
    service = service_factory(cache_size=1000)
    assert ask(service)["cached"] is False
    calls = chat_calls(fake_clean)
    assert ask(service, {**BASE, "task_id": "k1"})["cached"] is True  # another id, the same line
    assert ask(service, glossary={**GLOSSARY, "二弟": "동생"})["cached"] is True  # a term not in the line
    assert chat_calls(fake_clean) == calls
    misses = {
        "source": ({**BASE, "source": "二哥来了"}, GLOSSARY, {}),
        "language": ({**BASE, "target_language": "ja"}, GLOSSARY, {}),
        "budget": ({**BASE, "max_length": 10}, GLOSSARY, {}),
        "glossary term in the line": (BASE, {"大哥": "큰형"}, {}),
        "context": ({**BASE, "context": ["另一句"]}, GLOSSARY, {}),
        "model": (BASE, GLOSSARY, {"model": "qwen2.5:32b"}),
    }
    for what, (task, glossary, extra) in misses.items():
        calls = chat_calls(fake_clean)
        item = ask(service, task, glossary, **extra)
        assert item["cached"] is False, what
        assert chat_calls(fake_clean) == calls + 1, what


def test_cache_key_changes_with_the_settings_the_backend_and_the_prompt_version(
    tmp_path: Path, fake_clean: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One SQLite file shared by services that differ in one thing each: only the same service hits."""
    base: dict[str, object] = {
        "ollama_url": fake_clean.url,
        "cache_size": 100,
        "cache_path": str(tmp_path / "c.sqlite3"),
    }
    with ServiceServer(make_settings(**base)) as service:
        assert ask(service)["cached"] is False
    with ServiceServer(make_settings(**base)) as service:
        assert ask(service)["cached"] is True  # the control: the same settings read the entry back
    openai: dict[str, object] = {
        "backend": "openai",
        "openai_base_url": f"{fake_clean.url}/v1",
        "model": "qwen3:4b-instruct-2507-q4_K_M",
    }
    variants: dict[str, dict[str, object]] = {
        "temperature": {"temperature": 0.5},
        "output cap": {"max_output_tokens": 100},
        "re-asks": {"max_reasks": 0},
        "backend": openai,
    }
    for what, change in variants.items():
        with ServiceServer(make_settings(**{**base, **change})) as service:
            assert ask(service)["cached"] is False, what
    monkeypatch.setattr("app.translator.core.PROMPT_VERSION", "a changed prompt")
    with ServiceServer(make_settings(**base)) as service:
        assert ask(service)["cached"] is False


def test_lru_evicts_the_least_recently_used() -> None:
    async def scenario() -> None:
        cache = ResultCache(2, None)
        await cache.put("a", {"translation": "A"})
        await cache.put("b", {"translation": "B"})
        assert cache.get("a") == {"translation": "A"}
        await cache.put("c", {"translation": "C"})
        assert cache.get("b") is None
        assert cache.get("a") is not None
        assert cache.get("c") is not None

    asyncio.run(scenario())


def test_size_zero_turns_the_cache_off() -> None:
    async def scenario() -> None:
        cache = ResultCache(0, None)
        await cache.put("a", {"translation": "A"})
        assert cache.get("a") is None

    asyncio.run(scenario())


def test_a_corrupt_file_is_ignored_with_a_warning(tmp_path: Path, caplog) -> None:
    path = tmp_path / "cache.sqlite3"
    path.write_bytes(b"this is not a sqlite database" * 100)

    async def scenario() -> None:
        cache = ResultCache(10, path)
        await cache.open()
        assert not cache.persistent
        await cache.put("a", {"translation": "A"})
        assert cache.get("a") == {"translation": "A"}

    asyncio.run(scenario())
    assert "unusable" in caplog.text


def test_an_unwritable_location_is_ignored(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")

    async def scenario() -> None:
        cache = ResultCache(10, blocker / "cache.sqlite3")  # its parent is a file
        await cache.open()
        assert not cache.persistent

    asyncio.run(scenario())


def test_a_fully_cached_request_makes_no_backend_call(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = service_factory(cache_size=1000)
    first = post(service, lines(20, "全缓存"))
    assert first["summary"]["succeeded"] == 20
    calls = chat_calls(fake_clean)
    second = post(service, lines(20, "全缓存"))
    assert chat_calls(fake_clean) == calls
    assert all(r["cached"] and r["attempts"] == 0 for r in second["results"])
    assert [r["translation"] for r in second["results"]] == [r["translation"] for r in first["results"]]


def test_use_cache_false_asks_again(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = service_factory(cache_size=1000)
    post(service, lines(3, "不用缓存"))
    calls = chat_calls(fake_clean)
    again = post(service, {**lines(3, "不用缓存"), "use_cache": False})
    assert chat_calls(fake_clean) == calls + 3
    assert not any(r["cached"] for r in again["results"])


def test_over_budget_and_failed_results_are_not_cached(service_factory: ServiceFactory, fake_clean: FakeOllama) -> None:
    service = service_factory(cache_size=1000)
    fake_clean.configure(style="never_comply_long")
    assert post(service, lines(1, "太长"))["results"][0]["within_budget"] is False
    fake_clean.configure(style="json")
    fresh = post(service, lines(1, "太长"))["results"][0]
    assert fresh["cached"] is False
    assert fresh["within_budget"] is True
    fake_clean.configure(failures=[{"mode": "http_500", "count": -1}])
    assert post(service, lines(1, "失败"))["results"][0]["success"] is False
    fake_clean.configure(failures=[])
    assert post(service, lines(1, "失败"))["results"][0]["cached"] is False


def test_sqlite_cache_survives_a_restart(tmp_path: Path, fake_clean: FakeOllama) -> None:
    settings = make_settings(ollama_url=fake_clean.url, cache_size=100, cache_path=str(tmp_path / "c.sqlite3"))
    with ServiceServer(settings) as service:
        first = post(service, lines(5, "重启"))
    calls = chat_calls(fake_clean)
    with ServiceServer(settings) as service:
        second = post(service, lines(5, "重启"))
    assert chat_calls(fake_clean) == calls
    assert all(r["cached"] for r in second["results"])
    assert [r["translation"] for r in second["results"]] == [r["translation"] for r in first["results"]]


def test_a_corrupt_cache_file_never_stops_the_service(tmp_path: Path, fake_clean: FakeOllama) -> None:
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"\x00garbage" * 500)
    with ServiceServer(make_settings(ollama_url=fake_clean.url, cache_size=100, cache_path=str(path))) as service:
        assert post(service, lines(2, "坏文件"))["summary"]["succeeded"] == 2


def test_a_bad_value_read_back_from_the_cache_is_dropped_and_asked_afresh(
    tmp_path: Path, fake_clean: FakeOllama
) -> None:
    """The SQLite file is outside our control (an older version, a hand edit): what it holds is checked
    like a model's answer before it is served."""
    import sqlite3

    path = tmp_path / "c.sqlite3"
    settings = make_settings(ollama_url=fake_clean.url, cache_size=100, cache_path=str(path))
    with ServiceServer(settings) as service:
        good = post(service, lines(2, "旧缓存"))["results"]
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT key, value FROM results").fetchall()
        assert len(rows) == 2
        for (key, value), bad in zip(rows, ["소장 包工头", "\ud800"], strict=True):
            planted = {**json.loads(value), "translation": bad}
            text = json.dumps(planted, ensure_ascii=True)  # the surrogate as its escape: valid JSON text
            db.execute("UPDATE results SET value = ? WHERE key = ?", (text, key))
    calls = chat_calls(fake_clean)
    with ServiceServer(settings) as service:
        again = post(service, lines(2, "旧缓存"))["results"]
    assert [r["cached"] for r in again] == [False, False]
    assert [r["translation"] for r in again] == [r["translation"] for r in good]
    assert chat_calls(fake_clean) == calls + 2


def test_the_sqlite_file_keeps_at_most_max_rows_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"

    def keys_in_file() -> list[str]:
        with contextlib.closing(sqlite3.connect(path)) as db:
            return [key for (key,) in db.execute("SELECT key FROM results ORDER BY rowid")]

    async def scenario() -> None:
        cache = ResultCache(100, path, max_rows=3)
        await cache.open()
        assert cache.persistent
        for i in range(6):
            await cache.put(f"k{i}", {"translation": f"T{i}"})
        await cache.put("k1", {"translation": "T1 again"})  # written again: now the newest
        await cache.close()
        assert keys_in_file() == ["k4", "k5", "k1"]
        # A restart with a smaller bound prunes the file it finds; a discarded result leaves the file too.
        smaller = ResultCache(100, path, max_rows=2)
        await smaller.open()
        assert smaller.get("k1") == {"translation": "T1 again"}
        assert smaller.get("k4") is None
        smaller.discard("k5")
        await smaller.close()
        assert keys_in_file() == ["k1"]

    asyncio.run(scenario())
