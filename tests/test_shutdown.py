"""Graceful shutdown of the real process (`python -m app`): SIGTERM during a batch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import engine_available
from tests.helpers import gone, wait_until
from tests.servers.fake_ollama import FakeOllama
from tests.servers.fake_ollama_cli import write_fake_ollama_executable
from tests.servers.service import free_port

ROOT = Path(__file__).resolve().parent.parent


LAUNCHERS = {
    "python -m app": lambda port: [sys.executable, "-m", "app"],
    "uvicorn --factory": lambda port: [
        sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--host", "127.0.0.1",
        "--port", str(port),
    ],
}  # fmt: skip


def start_service(env: dict[str, str], launcher: str = "python -m app") -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    full = {**os.environ, "RETRANSLATE_PORT": str(port), "RETRANSLATE_LOG_LEVEL": "WARNING", **env}
    command = LAUNCHERS[launcher](port)
    proc = subprocess.Popen(command, env=full, cwd=ROOT, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    if not wait_until(ready, 180):
        proc.kill()
        pytest.fail("the service did not become ready")
    return proc, url


def test_sigterm_mid_batch_finishes_in_flight_fails_the_rest_and_stops_ollama(tmp_path: Path) -> None:
    ollama = write_fake_ollama_executable(tmp_path)
    ollama_port = free_port()
    proc, url = start_service(
        {
            "RETRANSLATE_OLLAMA_URL": f"http://127.0.0.1:{ollama_port}",
            "RETRANSLATE_AUTOSTART_OLLAMA": "true",
            "RETRANSLATE_OLLAMA_BINARY": str(ollama),
            "RETRANSLATE_MAX_CONCURRENCY": "2",
            # Far more than the calls need: a service that sat out its grace would not exit within the wait.
            "RETRANSLATE_SHUTDOWN_GRACE_S": "120",
            "FAKE_OLLAMA_CONFIG": json.dumps({"latency_s": 1.0}),
        }
    )
    try:
        ollama_pid = httpx.get(f"{url}/health", timeout=5).json()["backend"]["ollama"]["pid"]
        assert ollama_pid
        assert psutil.pid_exists(ollama_pid)
        answer: dict[str, Any] = {}
        # 10 s of work at 2 calls at a time: SIGTERM comes during the first calls, however loaded the machine.
        tasks = [{"task_id": f"s{i}", "source": f"关机第{i}句", "target_language": "ko"} for i in range(20)]

        def run_batch() -> None:
            answer["response"] = httpx.post(f"{url}/retranslate", json={"tasks": tasks}, timeout=120)

        runner = threading.Thread(target=run_batch)
        runner.start()
        stats = f"http://127.0.0.1:{ollama_port}/_fake/stats"
        assert wait_until(lambda: httpx.get(stats, timeout=2).json()["in_flight"] >= 2, 20)
        proc.send_signal(signal.SIGTERM)
        runner.join(60)
        # Bounded by the calls in flight (1 s each), not by the grace of 120 s.
        assert proc.wait(60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    response = answer["response"]
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["task_id"] for r in results] == [t["task_id"] for t in tasks]
    done = [r for r in results if r["success"]]
    stopped = [r for r in results if not r["success"]]
    assert len(done) >= 2  # the calls in flight at SIGTERM finished
    assert all(r["attempts"] == 1 for r in done)
    assert stopped
    assert all(r["error_code"] == "shutting_down" and r["translation"] is None for r in stopped)
    # Lines not sent yet were not sent after SIGTERM: they fail unattempted.
    assert all(r["attempts"] == 0 and r["error"].startswith("not attempted") for r in stopped)
    # The Ollama the service started is stopped with it: no orphan.
    assert wait_until(lambda: gone(ollama_pid), 15)


def test_sigterm_stops_the_embedded_llama_server() -> None:
    if not engine_available():
        pytest.skip("the embedded extra is not installed")
    proc, url = start_service({"RETRANSLATE_BACKEND": "embedded", "RETRANSLATE_MAX_CONCURRENCY": "2"})
    try:
        server_pid = httpx.get(f"{url}/health", timeout=5).json()["backend"]["embedded"]["pid"]
        assert psutil.pid_exists(server_pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_until(lambda: gone(server_pid), 15)


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
def test_a_grace_below_one_second_cuts_the_calls_in_flight_and_every_batch_still_answers(launcher: str) -> None:
    """RETRANSLATE_SHUTDOWN_GRACE_S=0.5 with calls that would take a minute: the calls are cut at the
    grace, their items fail with the shutdown's reason, the batch answers, the process exits. The same
    whichever way the service was started."""
    with FakeOllama(latency_s=60.0, parallel=4) as fake:
        proc, url = start_service(
            {
                "RETRANSLATE_OLLAMA_URL": fake.url,
                "RETRANSLATE_AUTOSTART_OLLAMA": "false",
                "RETRANSLATE_MAX_CONCURRENCY": "2",
                "RETRANSLATE_SHUTDOWN_GRACE_S": "0.5",
            },
            launcher,
        )
        answer: dict[str, Any] = {}
        try:
            tasks = [{"task_id": f"g{i}", "source": f"宽限第{i}句", "target_language": "ko"} for i in range(4)]

            def run_batch() -> None:
                answer["response"] = httpx.post(f"{url}/retranslate", json={"tasks": tasks}, timeout=120)

            runner = threading.Thread(target=run_batch)
            runner.start()
            assert wait_until(lambda: fake.stats()["in_flight"] >= 2, 30)
            proc.send_signal(signal.SIGTERM)
            runner.join(60)
            assert proc.wait(30) in (0, -signal.SIGTERM)
        finally:
            if proc.poll() is None:
                proc.kill()
        # Both calls in flight were abandoned by the service (not left to run for a minute).
        assert wait_until(lambda: fake.stats()["abandoned"] == 2, 10)
    results = answer["response"].json()["results"]
    assert [r["error_code"] for r in results] == ["shutting_down"] * 4
    assert all(r["translation"] is None for r in results)
    cut = [r for r in results if r["attempts"] == 1]
    assert len(cut) == 2
    assert all("RETRANSLATE_SHUTDOWN_GRACE_S" in r["error"] for r in cut)
    assert all(r["error"].startswith("not attempted") for r in results if r["attempts"] == 0)


def test_the_app_is_built_by_its_factory_only() -> None:
    import app.main

    assert not hasattr(app.main, "app")  # importing builds nothing: `uvicorn --factory app.main:create_app`
