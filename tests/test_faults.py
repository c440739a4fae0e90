"""The fault matrix over real HTTP: every backend fault gives a bounded answer, every task accounted,
and the next request succeeds without restarting the service."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServiceFactory, make_settings
from tests.helpers import chat_requests, wait_breaker_ready, wait_until
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer, free_port

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
MATRIX: dict[str, dict[str, Any]] = {}
N = 12
BOUND_S = 15.0
FAULTY = {"request_timeout_s": 0.5, "max_concurrency": 4, "breaker_failures": 3, "retry_backoff_max_s": 0.2}


def batch(prefix: str) -> dict:
    return {"tasks": [{"task_id": f"{prefix}{i}", "source": f"故障第{i}句", "target_language": "ko"} for i in range(N)]}


def post_timed(service: ServiceServer, body: dict) -> tuple[dict, float]:
    started = time.monotonic()
    with service.client(timeout=120) as client:
        response = client.post("/retranslate", json=body)
    assert response.status_code == 200, response.text
    return response.json(), time.monotonic() - started


def record(name: str, body: dict, elapsed: float, recovered: bool) -> None:
    errors = sorted({(r["error"] or "")[:60] for r in body["results"] if not r["success"]})
    MATRIX[name] = {
        "wall_s": round(elapsed, 2),
        "tasks": len(body["results"]),
        "failed": body["summary"]["failed"],
        "errors": errors[:3],
        "next_request_ok": recovered,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fault-matrix.json").write_text(json.dumps(MATRIX, indent=2, ensure_ascii=False))


def assert_accounted(body: dict, prefix: str) -> None:
    assert [r["task_id"] for r in body["results"]] == [f"{prefix}{i}" for i in range(N)]
    for r in body["results"]:
        assert r["success"] or (r["translation"] is None and r["error"])


@pytest.mark.parametrize(
    ("mode", "extra"),
    [
        ("http_500", {}),
        ("busy_503", {"retry_after": 1}),
        ("hang", {}),
        ("malformed", {}),
        ("reset", {}),
    ],
)
def test_every_call_failing(service_factory: ServiceFactory, fake_clean: FakeOllama, mode: str, extra: dict) -> None:
    service = service_factory(**FAULTY)
    fake_clean.configure(failures=[{"mode": mode, "count": -1, **extra}], hang_s=30)
    body, elapsed = post_timed(service, batch(mode))
    assert elapsed < BOUND_S
    assert_accounted(body, mode)
    assert body["summary"]["failed"] == N
    fake_clean.configure(failures=[])
    wait_breaker_ready(service.url)  # a hang trips the service's breaker: the next call is its probe
    again, _ = post_timed(service, batch(mode + "-again"))
    assert again["summary"]["succeeded"] == N
    record(mode, body, elapsed, recovered=True)


def test_backend_stopped_mid_batch_and_started_again() -> None:
    port = free_port()
    fake = FakeOllama(port=port, latency_s=0.3, parallel=4).start()
    service = ServiceServer(make_settings(ollama_url=f"http://127.0.0.1:{port}", **FAULTY)).start()
    try:

        def stop_soon() -> None:
            # Once some lines have been answered (an event, not a clock): the rest meet a dead backend.
            wait_until(lambda: sum(1 for r in chat_requests(fake) if r["t_end"] is not None) >= 4, 30)
            fake.stop()

        stopper = threading.Thread(target=stop_soon)
        stopper.start()
        body, elapsed = post_timed(service, {"tasks": batch("stop")["tasks"] * 1})
        stopper.join()
        assert elapsed < BOUND_S
        assert_accounted(body, "stop")
        assert 0 < body["summary"]["failed"] < N  # some finished before the stop, the rest failed
        with FakeOllama(port=port, parallel=4):
            wait_breaker_ready(service.url)
            again, _ = post_timed(service, batch("restarted"))
        assert again["summary"]["succeeded"] == N
        record("stopped mid-batch, started again", body, elapsed, recovered=True)
    finally:
        service.stop()
        fake.stop()
