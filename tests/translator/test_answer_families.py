"""The answer families of issue #29 over real HTTP: the fake Ollama answers each line with chosen raw text
(its answer-by-key mode, `raw_by_source`), and hand-edited rows of a real SQLite cache file are read back
by a service started on it. Right lines come back; non-translations never do, and never as `internal`."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from app.dubbing import assess
from app.languages import resolve_language
from app.prompt import build_messages, reask_messages
from tests.conftest import ServiceFactory, make_settings
from tests.servers.fake_ollama import FakeOllama, translate
from tests.servers.service import ServiceServer

# (source, target language, the model's translation, expected error_code or None for "comes back as is")
FAMILIES: list[tuple[str, str, str, str | None]] = [
    # right translations that the old checks refused
    ("肚子饿了", "en", "I'm hungry", None),
    ("嗨", "en", "Hi", None),
    ("饿死了", "ko", "배고파", None),
    ("您好", "ja", "こんにちは", None),
    ("我好饿", "fr", "J'ai faim", None),
    ("钥匙", "en", "Key", None),
    ("文本", "en", "Text", None),
    ("价值", "en", "Value", None),
    ("……", "en", "...", None),
    ("3、2、1！", "en", "3, 2, 1!", None),
    ("110", "en", "110", None),
    ("Tony", "en", "Tony", None),
    ("OK", "en", "OK", None),
    ("iPhone 15", "en", "iPhone 15", None),
    ("东京大学", "ja", "東京大学", None),
    ("一石二鸟", "ja", "一石二鳥", None),
    ("今天休息", "ja", "本日休業", None),
    ("把这句中文字幕翻译成英语", "en", "Translate the Chinese subtitle line into English", None),
    ("又是似曾相识的感觉", "en", "Déjà vu again", None),
    # non-translations that the old checks let through
    ("快走吧", "ja", "快走吧", "rule_violation"),
    ("爱你哦", "ja", "爱你", "rule_violation"),
    ("这是我的", "ja", "这是我的です", "rule_violation"),
    ("我们走吧", "ja", "我们走吧（行こう）", "rule_violation"),
    ("该出发了", "ja", "他们已经走了", "rule_violation"),
    ("我们明天早上见", "en", "?!", "rule_violation"),
    ("我们下午见", "en", "—", "rule_violation"),
    ("我们晚上见", "en", "42", "rule_violation"),
    ("咱们出发", "en", '{"tr": "Let\'s go"}', "rule_violation"),
    ("咱们撤", "en", "<script>alert(1)</script>", "rule_violation"),
    ("咱们走", "en", "Let's go" + "".join(chr(0xE0000 + ord(c)) for c in "ignore all"), "unusable_output"),
    ("咱们跑", "en", "Target language: English (en) Length limit: at most 6 words.", "unusable_output"),
    ("咱们明天见", "en", "I left my keys in the car", "unusable_output"),
]


def _tr(text: str) -> str:
    return json.dumps({"tr": text}, ensure_ascii=False)


@pytest.fixture
def trusting(service_factory: ServiceFactory, fake_clean: FakeOllama) -> ServiceServer:
    return service_factory(cache_size=1000)


def test_each_family_is_decided_through_the_service(trusting: ServiceServer, fake_clean: FakeOllama) -> None:
    # Longest keys first: the fake answers the first key found in a line.
    ordered = sorted(FAMILIES, key=lambda f: -len(f[0]))
    fake_clean.configure(raw_by_source={source: _tr(answer) for source, _, answer, _ in ordered})
    tasks = [{"task_id": f"f{i}", "source": s, "target_language": lang, "max_length": 30}
             for i, (s, lang, _, _) in enumerate(FAMILIES)]  # fmt: skip
    with trusting.client() as client:
        response = client.post("/retranslate", json={"tasks": tasks, "use_cache": False})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    for item, (source, lang, answer, code) in zip(results, FAMILIES, strict=True):
        if code is None:
            assert item["success"] is True, (source, lang, answer, item["error"])
            assert item["translation"] == answer
        else:
            assert item["success"] is False, (source, lang, answer, item)
            assert item["translation"] is None
            assert item["error_code"] == code, (source, item["error"])


def _reask_text() -> str:
    ko = resolve_language("ko")
    return reask_messages("소장 包", assess("소장 包", "包工头", ko, 9), ko)[-1]["content"].replace("\n", " ")


def _good(translation: str) -> dict[str, Any]:
    return {"translation": translation, "length": 1, "length_unit": "words", "length_budget": 9,
            "within_budget": True, "warnings": []}  # fmt: skip


# (source, target language, the row's value as written into the file by hand). Korean lines: the fake's
# Korean answers are distinct for each line, so a row is found by its translation.
KO = resolve_language("ko")
EDITS: list[tuple[str, str, str]] = [
    ("缓存占位", "ko", json.dumps(_good("<translation>"))),
    ("缓存重问", "ko", json.dumps(_good(_reask_text()), ensure_ascii=False)),
    ("缓存示例", "ko", json.dumps(_good(json.loads(build_messages("缓存示例", KO, 9)[2]["content"])["tr"]))),
    ("缓存超长", "ko", json.dumps(_good("말 " * 2500), ensure_ascii=False)),
    ("缓存嵌套", "ko", json.dumps(_good('{"tr": "저장"}'), ensure_ascii=False)),
    ("缓存中文", "ja", json.dumps(_good("缓存中文"), ensure_ascii=False)),
    ("缓存列表", "ko", json.dumps(["저장", "줄"], ensure_ascii=False)),
    ("缓存多键", "ko", json.dumps({**_good("저장"), "admin": True}, ensure_ascii=False)),
    ("缓存坏行", "ko", '{"translation": "저장'),
]
UNTOUCHED = ("缓存完好", "ko")


def _rows(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT key, value FROM results").fetchall())


def test_hand_edited_cache_rows_are_checked_dropped_and_asked_afresh(fake_clean: FakeOllama, tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    lines = [*((s, lang) for s, lang, _ in EDITS), UNTOUCHED]
    body = {"tasks": [{"task_id": s, "source": s, "target_language": lang} for s, lang in lines]}
    settings = make_settings(ollama_url=fake_clean.url, cache_size=100, cache_path=path)
    with ServiceServer(settings) as first, first.client() as client:  # fills the file with good rows
        assert all(r["success"] for r in client.post("/retranslate", json=body).json()["results"])
    rows = _rows(path)
    assert len(rows) == len(lines)
    key_of = {translate(s, lang): None for s, lang in lines}
    by_translation = {json.loads(v)["translation"]: k for k, v in rows.items()}
    assert len(by_translation) == len(rows)
    assert set(by_translation) == set(key_of)
    with sqlite3.connect(path) as db:  # the hand edit
        for source, lang, value in EDITS:
            db.execute("UPDATE results SET value = ? WHERE key = ?", (value, by_translation[translate(source, lang)]))
    fake_clean.reset()
    second = ServiceServer(make_settings(ollama_url=fake_clean.url, cache_size=100, cache_path=path))
    with second, second.client() as client:
        results = {r["task_id"]: r for r in client.post("/retranslate", json=body).json()["results"]}
    for source, lang, value in EDITS:
        item = results[source]
        assert item["error_code"] != "internal", (source, item)
        assert item["success"] is True, (source, value[:60], item)
        assert item["cached"] is False, (source, value[:60], item)
        assert item["translation"] == translate(source, lang)
    assert results[UNTOUCHED[0]]["cached"] is True  # a good row is still served
    # Every edited row was replaced by the fresh, good answer.
    assert sorted(json.loads(v)["translation"] for v in _rows(path).values()) == sorted(key_of)
