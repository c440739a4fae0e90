"""Every backend body is read with a size limit (RETRANSLATE_MAX_RESPONSE_BYTES), in both APIs."""

from __future__ import annotations

import threading

import psutil
import pytest

from tests.conftest import make_settings
from tests.helpers import CHAT_PATHS, chat_calls
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


class PeakRss:
    """The test process's peak RSS (the service runs in it, under uvicorn) while the block runs, sampled."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 1e6


BOMB = 200 * 1024 * 1024  # inflates to 200 MB; about 200 KB on the wire


@pytest.mark.parametrize("backend", ["ollama", "openai"])
def test_a_gzip_bomb_is_cut_at_the_limit_as_it_inflates(fake_clean: FakeOllama, backend: str) -> None:
    """A hostile peer that compresses although asked not to: the limit counts decoded bytes, the call fails
    response_too_large once (no retry), and memory stays bounded."""
    extra = {"openai_base_url": f"{fake_clean.url}/v1", "model": "qwen3:4b"} if backend == "openai" else {}
    settings = make_settings(backend=backend, ollama_url=fake_clean.url, max_response_bytes=1024 * 1024, **extra)
    with ServiceServer(settings) as service, service.client(timeout=120) as client:
        fake_clean.configure(gzip_bomb_bytes=BOMB)
        client.post("/retranslate", json={"tasks": [{**ONE["tasks"][0], "source": "先造好炸弹"}]})  # built once
        fake_clean.reset()
        with PeakRss() as rss:
            item = client.post("/retranslate", json=ONE).json()["results"][0]
        fake_clean.configure(gzip_bomb_bytes=0)
        ok = client.post("/retranslate", json={"tasks": [{**ONE["tasks"][0], "source": "正常大小"}]}).json()
    requests = [r for r in fake_clean.stats()["requests"] if r["path"] in CHAT_PATHS]
    assert item["error_code"] == "response_too_large", item
    assert item["translation"] is None
    assert item["attempts"] == 1
    assert len(requests) == 2  # the bomb's one call (no retry) and the normal one
    print(f"{backend}: RSS growth during a {BOMB >> 20} MB gzip bomb: {rss.growth_mb:.1f} MB")
    assert rss.growth_mb < 64, f"RSS grew {rss.growth_mb:.0f} MB while a reply was refused"
    assert ok["results"][0]["success"] is True
