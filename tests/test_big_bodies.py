"""A big request is refused before it is parsed: the key before the body, the task count before parsing, so
that `/health` keeps answering while it is refused (the latencies: bench/ and the closing note of #30)."""

from __future__ import annotations

import json
import socket
import threading
import time

from tests.conftest import ServiceFactory
from tests.servers.fake_ollama import FakeOllama

KEY = "big-bodies-key"


def big_body(tasks: int) -> bytes:
    return json.dumps(
        {"tasks": [{"task_id": f"t{i}", "source": "你好", "target_language": "ko"} for i in range(tasks)]},
        separators=(",", ":"),
    ).encode()


def read_status(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1])


def test_a_keyless_big_body_is_refused_before_it_is_sent(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    """The 401 arrives while most of the 13 MB body is still unsent: nothing was read, nothing parsed."""
    service = service_factory(api_key=KEY)
    body = big_body(200_000)
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=30)
    try:
        sock.sendall(
            f"POST /retranslate HTTP/1.1\r\nHost: 127.0.0.1:{service.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:65536]
        )
        assert read_status(sock) == 401  # bounded by the socket timeout: today it waits for the whole body
    finally:
        sock.close()


def test_health_answers_while_a_body_over_max_tasks_is_refused(
    service_factory: ServiceFactory, fake_clean: FakeOllama
) -> None:
    service = service_factory()
    body = big_body(240_000)
    latencies: list[float] = []
    done = threading.Event()

    def poll_health() -> None:
        with service.client(timeout=60) as client:
            while not done.is_set():
                started = time.perf_counter()
                client.get("/health")
                latencies.append(time.perf_counter() - started)

    poller = threading.Thread(target=poll_health)
    poller.start()
    try:
        with service.client(timeout=120) as client:
            response = client.post("/retranslate", content=body, headers={"Content-Type": "application/json"})
    finally:
        done.set()
        poller.join(60)
    worst_ms = max(latencies) * 1000
    print(f"/health while a {len(body) >> 20} MB body was refused: max {worst_ms:.0f} ms, n={len(latencies)}")
    assert response.status_code == 413, response.text[:300]
    detail = response.json()["detail"]
    assert "counted before parsing" in detail
    assert "RETRANSLATE_MAX_TASKS" in detail
