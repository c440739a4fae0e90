"""What a glossary can make the service build is bounded (RETRANSLATE_MAX_GLOSSARY_TERM_CHARS,
..._RENDERING_CHARS, ..._CHARS, RETRANSLATE_MAX_PROMPT_GLOSSARY_CHARS): the issue's amplification request is
refused at once, and the worst one within the limits costs each line a bounded prompt. Over real HTTP, the
service's memory measured (it runs in this process under uvicorn)."""

from __future__ import annotations

import json

from tests.backends.test_http_limits import PeakRss
from tests.conftest import ServiceFactory
from tests.helpers import chat_requests
from tests.servers.fake_ollama import FakeOllama

# 100 distinct one-character terms; every line holds all of them.
TERMS = [chr(0x4E00 + 3 * i) for i in range(100)]
SOURCE = "".join(TERMS)
JSON = {"Content-Type": "application/json"}


def prompt_chars(request: dict) -> int:
    return sum(len(m.get("content", "")) for m in request["body"]["messages"])


def test_the_issues_amplification_request_is_refused_before_any_work(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    # 1,000 one-character terms with 2 KB renderings and 200 lines holding every term (2.6 MB): +759 MB before.
    terms = [chr(0x4E00 + i) for i in range(1000)]
    body = {
        "glossary": {t: "x" * 2048 for t in terms},
        "tasks": [{"task_id": f"g{i}", "source": "".join(terms), "target_language": "ko"} for i in range(200)],
    }
    service = service_factory()
    with PeakRss() as rss, service.client(timeout=120) as client:
        response = client.post("/retranslate", content=json.dumps(body, ensure_ascii=False).encode(), headers=JSON)
    print(f"amplification request refused: RSS growth {rss.growth_mb:.1f} MB")
    assert response.status_code == 422, response.text[:300]
    assert "RETRANSLATE_MAX_GLOSSARY_RENDERING_CHARS" in response.text
    assert chat_requests(fake_clean) == []


def test_the_worst_glossary_within_the_limits_costs_each_line_a_bounded_prompt(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    service = service_factory(max_concurrency=4)
    lines = 200
    # The whole glossary allowance (100 x 200 = 20,000 characters), every term in every line.
    glossary = {t: "r" * 199 for t in TERMS}
    tasks = [{"task_id": f"w{i}", "source": f"{SOURCE}{i}", "target_language": "ko"} for i in range(lines)]
    with service.client(timeout=300) as client:
        plain = client.post("/retranslate", json={"tasks": tasks[:1], "use_cache": False})
        assert plain.status_code == 200
        baseline = max(prompt_chars(r) for r in chat_requests(fake_clean))
        fake_clean.reset()
        with PeakRss() as rss:
            response = client.post("/retranslate", json={"tasks": tasks, "glossary": glossary, "use_cache": False})
    assert response.status_code == 200, response.text[:300]
    assert response.json()["summary"]["total"] == lines
    requests = chat_requests(fake_clean)
    assert requests
    cap = service.settings.max_prompt_glossary_chars
    worst = max(prompt_chars(r) for r in requests) - baseline
    print(f"glossary: {lines} lines x every term: prompt +{worst} chars per line, RSS growth {rss.growth_mb:.1f} MB")
    # The glossary part of a line's prompt: at most the cap, plus a little formatting per term kept.
    assert worst <= 2 * cap, f"a line's prompt grew by {worst} characters with the glossary"
