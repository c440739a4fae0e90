"""Strict JSON request bodies (app/bodies.py), over real HTTP on all three POST routes: every hostile body is
a 422 in the one documented shape, with a message that names the real problem; none reaches a 500."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer

BATCH = '{"tasks": [{"task_id": %s, "source": %s, "target_language": "ko", "context": [%s]}], "model": %s}'
ROUTES = {
    "/retranslate": BATCH,
    "/retranslate/stream": BATCH,
    "/api/translate-text": '{"text": %s, "target_language": "ko", "model": %s, "x": [%s, %s]}',
}
GOOD = ('"t1"', '"大哥"', '"前一句"', "null")
SURROGATE = '"\\ud800"'  # the JSON escape of a lone surrogate: valid JSON syntax, invalid Unicode


def post(service: ServiceServer, path: str, content: bytes) -> httpx.Response:
    return httpx.post(service.url + path, content=content, headers={"Content-Type": "application/json"}, timeout=30)


def assert_documented_422(response: httpx.Response, says: str) -> list[dict]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"]
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    assert detail
    for error in detail:
        assert set(error) == {"loc", "msg", "type"}
        assert isinstance(error["loc"], list)
    assert says in detail[0]["msg"], detail
    return detail


@pytest.mark.parametrize("path", list(ROUTES))
@pytest.mark.parametrize("field", range(4))
def test_a_lone_surrogate_anywhere_is_a_422_naming_where(service: ServiceServer, path: str, field: int) -> None:
    values = list(GOOD)
    values[field] = SURROGATE
    detail = assert_documented_422(post(service, path, (ROUTES[path] % tuple(values)).encode()), "lone surrogate")
    assert detail[0]["type"] == "string_unicode"
    assert detail[0]["loc"][0] == "body"


@pytest.mark.parametrize("path", list(ROUTES))
@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"tasks": [], "deadline_s": NaN}', "NaN"),
        (b'{"tasks": [], "deadline_s": Infinity}', "Infinity"),
        (b'{"tasks": [], "deadline_s": -Infinity}', "Infinity"),
        (b'{"tasks": [], "deadline_s": 1e400}', "out of range"),
        (b'{"tasks": [], "deadline_s": 123456789012345678901234567890}', "out of range"),
        (b'{"tasks": [], "x": ' + b"9" * 5000 + b"}", "out of range"),
        (b'{"tasks": [\xff\xfe]}', "not UTF-8"),
        (b'{"tasks": [' * 1000 + b"]" * 1000 + b"}", "nested too deep"),
        (b'{"tasks": [' + b"[" * 40 + b"]" * 40 + b"]}", "nested too deep"),
        (b'{"tasks": [', "not valid JSON"),
    ],
)
def test_hostile_bodies_are_a_422_with_the_real_problem(
    service: ServiceServer, path: str, body: bytes, says: str
) -> None:
    assert_documented_422(post(service, path, body), says)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/retranslate", {"tasks": [{"task_id": "a", "source": "大哥", "target_language": "ko", "max_length": False}]}),
        ("/retranslate", {"tasks": [], "deadline_s": True}),
        (
            "/retranslate/stream",
            {"tasks": [{"task_id": "a", "source": "大哥", "target_language": "ko", "max_length": True}]},
        ),
        ("/api/translate-text", {"text": "大哥", "target_language": "ko", "max_length": False}),
    ],
)
def test_true_or_false_is_not_a_number(service: ServiceServer, path: str, body: dict) -> None:
    # Found by schemathesis: `"max_length": false` was read as 0 and answered 200.
    detail = assert_documented_422(post(service, path, json.dumps(body).encode()), "expected a number, got true/false")
    assert detail[0]["loc"][-1] in ("max_length", "deadline_s")


def test_a_byte_order_mark_is_tolerated(service: ServiceServer, fake_clean: FakeOllama) -> None:
    body = json.dumps({"tasks": []}).encode()
    assert post(service, "/retranslate", b"\xef\xbb\xbf" + body).status_code == 200


def test_a_surrogate_pair_written_as_escapes_is_fine(service: ServiceServer, fake_clean: FakeOllama) -> None:
    # U+1F600 escaped the JSON way: two escapes that make one valid character.
    body = '{"tasks": [{"task_id": "emoji-\\ud83d\\ude00", "source": "大哥", "target_language": "ko"}]}'
    response = post(service, "/retranslate", body.encode())
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["task_id"] == "emoji-\U0001f600"
