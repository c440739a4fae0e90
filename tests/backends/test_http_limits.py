"""Every backend body is read with a size limit (RETRANSLATE_MAX_RESPONSE_BYTES), in both APIs."""

from __future__ import annotations

import pytest

from tests.conftest import make_settings
from tests.helpers import chat_calls
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer

ONE = {"tasks": [{"task_id": "big", "source": "回答太大了", "target_language": "ko"}]}


@pytest.mark.parametrize("backend", ["ollama", "openai"])
def test_an_answer_over_the_limit_fails_that_call_with_a_clear_error(fake_clean: FakeOllama, backend: str) -> None:
    fake_clean.configure(pad_response_bytes=2 * 1024 * 1024)
    extra = {"openai_base_url": f"{fake_clean.url}/v1", "model": "qwen3:4b"} if backend == "openai" else {}
    settings = make_settings(backend=backend, ollama_url=fake_clean.url, max_response_bytes=1024 * 1024, **extra)
    with ServiceServer(settings) as service, service.client() as client:
        item = client.post("/retranslate", json=ONE).json()["results"][0]
        fake_clean.configure(pad_response_bytes=0)
        ok = client.post("/retranslate", json={"tasks": [{**ONE["tasks"][0], "source": "正常大小"}]}).json()
    assert item["success"] is False
    assert item["translation"] is None
    assert item["error_code"] == "response_too_large"
    assert "RETRANSLATE_MAX_RESPONSE_BYTES" in item["error"]
    assert item["attempts"] == 1  # not retried: a backend that ignored the cap once does it again
    assert chat_calls(fake_clean) == 2
    assert ok["results"][0]["success"] is True  # the next call is fine
