"""A model's answer is untrusted input: an adversarial fake answers exactly what each case says, over real
HTTP, on /retranslate, the stream and /api/translate-text. None of it may come back as a translation, and
a bad answer costs its item only: never the batch, the stream or a later request."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from app.dubbing import assess
from app.languages import resolve_language
from app.prompt import build_messages, reask_messages
from tests.conftest import ServiceFactory
from tests.servers.fake_ollama import FakeOllama, translate
from tests.servers.service import ServiceServer


def tr(text: str) -> str:
    return json.dumps({"tr": text}, ensure_ascii=False)


def _parroted_reask() -> str:
    ko = resolve_language("ko")
    reask = reask_messages("소장 包", assess("소장 包", "包工头", ko, 9), ko)[-1]["content"]
    return tr(reask.replace("\n", " "))


# (case, target language, raw answer, expected error_code)
CASES: list[tuple[str, str, str, str]] = [
    ("ja answered in English", "ja", tr("Hello there my friend"), "rule_violation"),
    ("ja answered in Hangul", "ja", tr("안녕하세요"), "rule_violation"),
    ("en answered in Cyrillic", "en", tr("Привет, как дела"), "rule_violation"),
    ("en answered in Arabic", "en", tr("مرحبا يا صديقي"), "rule_violation"),
    ("fr with Bopomofo", "fr", tr("Bonjour ㄅㄆㄇ mon ami"), "rule_violation"),
    ("ko with CJK Extension B", "ko", tr("안녕 𠀀𠀁"), "rule_violation"),
    ("en answered in French", "en", tr("Je ne te pardonnerai jamais"), "rule_violation"),
    ("fr answered in English", "fr", tr("I will never forgive you for this"), "rule_violation"),
    ("es answered in German", "es", tr("Ich habe keine Ahnung, wirklich nicht"), "rule_violation"),
    ("our own re-ask parroted", "ko", _parroted_reask(), "unusable_output"),
    ("our own rules parroted", "en", tr(build_messages("你好", resolve_language("en"), 3)[0]["content"][:200]),
     "unusable_output"),
    ("50,000 characters", "en", tr("word " * 10_000), "unusable_output"),
    ("a lone surrogate", "ko", '{"tr": "\\ud800"}', "unusable_output"),
    ("a control character", "en", '{"tr": "Hello\\u001b[31m there"}', "unusable_output"),
    ("a direction override", "en", tr("Hello \u202eereht"), "unusable_output"),
]  # fmt: skip
GOOD = ("a good line", "ko", None, None)


def source_of(i: int) -> str:
    return f"对抗测试第{i}句"


def tasks(cases: list[tuple[str, str, str | None, str | None]]) -> list[dict[str, Any]]:
    return [
        {"task_id": f"c{i}", "source": source_of(i), "target_language": lang} for i, (_, lang, _, _) in enumerate(cases)
    ]


def configure(fake: FakeOllama, cases: list[tuple[str, str, str | None, str | None]]) -> None:
    fake.configure(raw_by_source={source_of(i): raw for i, (_, _, raw, _) in enumerate(cases) if raw is not None})


def check_item(item: dict[str, Any], case: tuple[str, str, str | None, str | None]) -> None:
    name, _, raw, code = case
    if raw is None:
        assert item["success"] is True, (name, item)
        assert item["translation"]
        return
    assert item["success"] is False, (name, item)
    assert item["translation"] is None, name
    assert item["error_code"] == code, (name, item["error"])


@pytest.fixture
def trusting(service_factory: ServiceFactory, fake_clean: FakeOllama) -> ServiceServer:
    return service_factory(cache_size=1000)


def test_retranslate_returns_none_of_it_and_still_translates_the_good_line(
    trusting: ServiceServer, fake_clean: FakeOllama
) -> None:
    cases = [*CASES, GOOD]
    configure(fake_clean, cases)
    with trusting.client() as client:
        response = client.post("/retranslate", json={"tasks": tasks(cases)})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    for item, case in zip(results, cases, strict=True):
        check_item(item, case)
    assert results[-1]["translation"] == translate(source_of(len(cases) - 1), "ko")


def test_the_stream_carries_every_item_and_its_summary(trusting: ServiceServer, fake_clean: FakeOllama) -> None:
    cases = [*CASES, GOOD]
    configure(fake_clean, cases)
    with trusting.client() as client, client.stream("POST", "/retranslate/stream", json={"tasks": tasks(cases)}) as r:
        assert r.status_code == 200
        events = [json.loads(line) for line in r.iter_lines() if line.strip()]
    items, final = events[:-1], events[-1]
    assert final["summary"]["total"] == len(cases)
    assert final["summary"]["succeeded"] == 1
    by_index = {e["index"]: e for e in items}
    assert sorted(by_index) == list(range(len(cases)))
    for index, case in enumerate(cases):
        check_item(by_index[index], case)


@pytest.mark.parametrize(("name", "lang", "raw", "code"), CASES, ids=[c[0] for c in CASES])
def test_translate_text_never_answers_200_with_it(
    trusting: ServiceServer, fake_clean: FakeOllama, name: str, lang: str, raw: str, code: str
) -> None:
    fake_clean.configure(raw_by_source={"单句": raw})
    with trusting.client() as client:
        response = client.post("/api/translate-text", json={"text": "单句测试", "target_language": lang})
    assert response.status_code == 502, response.text
    assert f"({code})" in response.json()["detail"]


def test_a_lone_surrogate_answer_twice_in_a_row_is_never_a_500(trusting: ServiceServer, fake_clean: FakeOllama) -> None:
    body = {"tasks": [{"task_id": "s", "source": "代理对", "target_language": "ko"},
                      {"task_id": "ok", "source": "好的句子", "target_language": "ko"}]}  # fmt: skip
    fake_clean.configure(raw_by_source={"代理对": '{"tr": "\\ud800"}'})
    for _ in range(2):
        with trusting.client() as client:
            response = client.post("/retranslate", json=body)
        assert response.status_code == 200, response.text
        first, second = response.json()["results"]
        assert first["error_code"] == "unusable_output"
        assert "surrogate" in first["error"]
        assert second["success"] is True
    # The backend recovers: the same line now translates (the bad answer was never cached).
    fake_clean.configure(raw_by_source={})
    with trusting.client() as client:
        item = client.post("/retranslate", json=body).json()["results"][0]
    assert item["success"] is True
    assert item["cached"] is False


def test_the_detectors_false_rejection_set_passes_through_the_service(
    trusting: ServiceServer, fake_clean: FakeOllama
) -> None:
    """The correct lines of tests/data/latin_lines.json, answered by the model, all come back."""
    from tests.test_dubbing import CORPUS

    lines = [(code, line) for code, group in CORPUS["correct"].items() for line in group]
    sources = {f"正确第{i}句": (code, line) for i, (code, line) in enumerate(lines)}
    fake_clean.configure(raw_by_source={source: tr(line) for source, (code, line) in sources.items()})
    body = {"tasks": [{"task_id": s, "source": s, "target_language": code, "max_length": 30}
                      for s, (code, _) in sources.items()]}  # fmt: skip
    response = httpx.post(f"{trusting.url}/retranslate", json=body, timeout=120)
    results = response.json()["results"]
    rejected = [(r["task_id"], r["error"]) for r in results if not r["success"]]
    assert rejected == []
    assert [r["translation"] for r in results] == [line for _, line in sources.values()]
