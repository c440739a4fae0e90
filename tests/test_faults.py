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
from tests.helpers import chat_requests, hanging_calls, wait_breaker_ready, wait_until
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer, free_port

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
MATRIX: dict[str, dict[str, Any]] = {}
N = 12
# A call that hangs fails after request_timeout_s; an answered one, even on a loaded machine, well before.
FAULTY = {"request_timeout_s": 1.0, "max_concurrency": 4, "breaker_failures": 3, "retry_backoff_max_s": 0.2}


def batch(prefix: str) -> dict:
    return {"tasks": [{"task_id": f"{prefix}{i}", "source": f"故障第{i}句", "target_language": "ko"} for i in range(N)]}


def post_timed(service: ServiceServer, body: dict) -> tuple[dict, float]:
    """The answer (the client's timeout bounds it) and its wall time, for the matrix artifact only."""
    started = time.monotonic()
    with service.client(timeout=120) as client:
        response = client.post("/retranslate", json=body)
    assert response.status_code == 200, response.text
    return response.json(), time.monotonic() - started


def record(name: str, body: dict, elapsed: float, recovered: bool, calls: int) -> None:
    MATRIX[name] = {
        "wall_s": round(elapsed, 2),
        "tasks": len(body["results"]),
        "failed": body["summary"]["failed"],
        "error_codes": sorted({r["error_code"] for r in body["results"] if not r["success"]}),
        "backend_calls": calls,
        "next_request_ok": recovered,
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fault-matrix.json").write_text(json.dumps(MATRIX, indent=2, ensure_ascii=False))


def assert_accounted(body: dict, prefix: str) -> None:
    assert [r["task_id"] for r in body["results"]] == [f"{prefix}{i}" for i in range(N)]
    for r in body["results"]:
        assert r["success"] or (r["translation"] is None and r["error"] and r["error_code"])


@pytest.mark.parametrize(
    ("mode", "extra", "codes"),
    [
        ("http_500", {}, {"server"}),
        ("busy_503", {"retry_after": 1}, {"busy"}),
        ("hang", {}, {"timeout", "breaker_open"}),
        ("malformed", {}, {"server"}),
        ("reset", {}, {"connection", "breaker_open"}),
    ],
)
def test_every_call_failing(
    service_factory: ServiceFactory, fake_clean: FakeOllama, mode: str, extra: dict, codes: set[str]
) -> None:
    service = service_factory(**FAULTY)
    fake_clean.configure(failures=[{"mode": mode, "count": -1, **extra}], hang_s=30)
    body, elapsed = post_timed(service, batch(mode))
    assert_accounted(body, mode)
    assert body["summary"]["failed"] == N
    results = body["results"]
    assert {r["error_code"] for r in results} <= codes, results
    calls = len(chat_requests(fake_clean))
    assert calls == sum(r["attempts"] for r in results)  # every call the backend saw is an item's attempt
    if "breaker_open" in codes:
        # A backend that stopped answering: the breaker ends the batch after a few calls, not N x 3.
        # Timeouts count per call; connection failures of calls in flight together are one incident (an
        # engine killed under them), so resets cost at most breaker_failures rounds of the concurrency bound.
        per_incident = FAULTY["max_concurrency"] if mode == "reset" else 1
        assert calls <= FAULTY["max_concurrency"] + FAULTY["breaker_failures"] * per_incident
        # (With resets every line may have had its first call before the third incident.)
        assert any(r["error_code"] == "breaker_open" and r["attempts"] < per_incident for r in results)
    else:
        # A backend that answers, badly: not its health, so every item gets 1 + RETRANSLATE_MAX_RETRIES calls.
        assert [r["attempts"] for r in results] == [3] * N
    fake_clean.configure(failures=[])
    # The calls the service gave up on are gone from the backend too (a loaded fake notices a client left a
    # little later): otherwise the probe below could queue behind them and time out.
    assert wait_until(lambda: fake_clean.stats()["in_flight"] == 0)
    wait_breaker_ready(service.url)  # a hang trips the service's breaker: the next call is its probe
    again, _ = post_timed(service, batch(mode + "-again"))
    assert again["summary"]["succeeded"] == N
    record(mode, body, elapsed, recovered=True, calls=calls)


def test_backend_stopped_mid_batch_and_started_again() -> None:
    port = free_port()
    fake = FakeOllama(port=port, parallel=4).start()
    # Lines 4-7 hang at the backend (all 4 of the service's slots), so 8-11 wait behind them in the service:
    # when the backend stops, 0-3 are answered, 4-7 are in flight and 8-11 not sent yet, however loaded the
    # machine is.
    fake.configure(failures=[{"mode": "hang", "count": -1, "match": "停"}], hang_s=60)
    tasks = [
        {"task_id": f"stop{i}", "source": f"{'停' if 4 <= i < 8 else '故障'}第{i}句", "target_language": "ko"}
        for i in range(N)
    ]
    settings = make_settings(ollama_url=f"http://127.0.0.1:{port}", **{**FAULTY, "request_timeout_s": 60.0})
    service = ServiceServer(settings).start()
    try:
        held = threading.Event()

        def stop_when_held() -> None:
            if wait_until(lambda: hanging_calls(fake) == 4, 30):
                held.set()
            fake.stop()

        stopper = threading.Thread(target=stop_when_held)
        stopper.start()
        body, elapsed = post_timed(service, {"tasks": tasks})
        stopper.join()
        assert held.is_set(), "lines 4-7 never all hung at the backend"
        calls = len(chat_requests(fake))
        assert_accounted(body, "stop")
        results = body["results"]
        assert [r["success"] for r in results] == [True] * 4 + [False] * 8
        for r in results[4:]:
            # The calls in flight broke off, the rest met a closed port or the breaker it opened.
            assert r["error_code"] in ("connection", "breaker_open"), r
        assert all(r["attempts"] >= 1 for r in results[4:8])
        with FakeOllama(port=port, parallel=4):
            wait_breaker_ready(service.url)
            again, _ = post_timed(service, batch("restarted"))
        assert again["summary"]["succeeded"] == N
        record("stopped mid-batch, started again", body, elapsed, recovered=True, calls=calls)
    finally:
        service.stop()
        fake.stop()
