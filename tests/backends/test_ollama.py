"""Backend lifecycle over real processes and ports: Ollama down then up, autostart, pull, diagnosis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from app.vocabulary import RECOMMENDED_MODEL
from tests.conftest import make_settings
from tests.helpers import gone, wait_ready
from tests.helpers import wait_until as wait_for
from tests.servers.fake_ollama import FakeOllama
from tests.servers.fake_ollama_cli import write_fake_ollama_executable
from tests.servers.service import ServiceServer, free_port

ONE_TASK = {"tasks": [{"task_id": "t", "source": "大哥", "target_language": "ko"}]}


def test_ollama_down_then_started_needs_no_restart() -> None:
    port = free_port()
    settings = make_settings(ollama_url=f"http://127.0.0.1:{port}")
    with ServiceServer(settings) as service, service.client() as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert client.get("/ready").status_code == 503
        assert client.get("/docs").status_code == 200
        down = client.post("/retranslate", json=ONE_TASK)
        assert down.status_code == 503
        detail = down.json()["detail"]
        assert "ollama serve" in detail
        assert "RETRANSLATE_OLLAMA_URL" in detail
        assert str(port) in detail
        with FakeOllama(port=port).start():
            up = client.post("/retranslate", json=ONE_TASK)
            assert up.status_code == 200, up.text
            assert up.json()["results"][0]["success"] is True
            assert client.get("/health").json()["status"] == "ready"


def test_autostart_spawns_ollama_with_our_parallelism_and_stops_only_it(tmp_path: Path) -> None:
    binary = write_fake_ollama_executable(tmp_path)
    # Another `ollama serve` the service did not start, the same binary on another port: it must survive
    # the service (one stopping "every ollama" would take it too).
    other_port = free_port()
    other = subprocess.Popen(
        [str(binary), "serve"], env={**os.environ, "OLLAMA_HOST": f"127.0.0.1:{other_port}"}, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_for(lambda: _answers(httpx, other_port))
        port = free_port()
        settings = make_settings(
            ollama_url=f"http://127.0.0.1:{port}", autostart_ollama=True, ollama_binary=str(binary), max_concurrency=3
        )
        service = ServiceServer(settings).start()
        try:
            with service.client() as client:
                # /health answers while `ollama serve` starts in the background; then it is ready.
                health = wait_ready(service.url)
                ollama = health["backend"]["ollama"]
                assert ollama["started_by_service"] is True
                pid = ollama["pid"]
                assert pid != other.pid
                assert psutil.pid_exists(pid)
                env = client.get(f"http://127.0.0.1:{port}/_fake/stats").json()["env"]
                assert env["OLLAMA_NUM_PARALLEL"] == "3"
                assert env["OLLAMA_HOST"] == f"127.0.0.1:{port}"
                assert client.post("/retranslate", json=ONE_TASK).json()["results"][0]["success"] is True
        finally:
            service.stop()
        assert wait_for(lambda: gone(pid))
        # The Ollama we did not start is untouched: still running, still answering.
        assert other.poll() is None
        assert _answers(httpx, other_port)
    finally:
        other.terminate()
        other.wait(10)


def test_autostart_off_or_binary_missing_says_why(tmp_path: Path) -> None:
    port = free_port()
    settings = make_settings(
        ollama_url=f"http://127.0.0.1:{port}", autostart_ollama=True, ollama_binary=str(tmp_path / "no-ollama-here")
    )
    with ServiceServer(settings) as service, service.client() as client:
        detail = client.post("/retranslate", json=ONE_TASK).json()["detail"]
    assert "not on PATH" in detail


def test_a_running_ollama_on_another_port_is_diagnosed(tmp_path: Path) -> None:
    binary = write_fake_ollama_executable(tmp_path)
    elsewhere, configured = free_port(), free_port()
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{elsewhere}"}
    proc = subprocess.Popen([str(binary), "serve"], env=env, stderr=subprocess.DEVNULL)
    try:
        import httpx

        assert wait_for(lambda: _answers(httpx, elsewhere))
        with (
            ServiceServer(make_settings(ollama_url=f"http://127.0.0.1:{configured}")) as service,
            service.client() as client,
        ):
            detail = client.post("/retranslate", json=ONE_TASK).json()["detail"]
        assert f"pid {proc.pid}" in detail
        assert "host/port" in detail
    finally:
        proc.terminate()
        proc.wait(10)


def _answers(httpx, port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/version", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_missing_default_model_keeps_the_service_up_with_a_pull_hint(fake_clean: FakeOllama) -> None:
    with (
        ServiceServer(make_settings(ollama_url=fake_clean.url, model="gemma9:1b")) as service,
        service.client() as client,
    ):
        health = client.get("/health").json()
        assert health["status"] == "degraded"
        assert "ollama pull gemma9:1b" in health["problem"]
        response = client.post("/retranslate", json=ONE_TASK)
        assert response.status_code == 503
        assert "ollama pull gemma9:1b" in response.json()["detail"]


def test_pull_missing_model_pulls_it_at_startup(fake_clean: FakeOllama) -> None:
    settings = make_settings(ollama_url=fake_clean.url, model="gemma9:1b", pull_missing_model=True)
    with ServiceServer(settings) as service, service.client() as client:
        # The pull runs in the background: /health answers meanwhile, then says ready.
        health = wait_ready(service.url)
        assert health["backend"]["pull"]["state"] == "done"
        assert client.post("/retranslate", json=ONE_TASK).json()["model"] == "gemma9:1b"
    assert any(r["path"] == "/api/pull" for r in fake_clean.stats()["requests"])


def test_a_failed_pull_leaves_the_service_up_saying_why(fake_clean: FakeOllama) -> None:
    fake_clean.configure(pullable={})  # the registry has no such model
    settings = make_settings(ollama_url=fake_clean.url, model="gemma9:1b", pull_missing_model=True)
    with ServiceServer(settings) as service, service.client() as client:

        def pull_state() -> str | None:
            return client.get("/health").json()["backend"].get("pull", {}).get("state")

        assert wait_for(lambda: pull_state() == "failed")
        health = client.get("/health").json()
        refused = client.post("/retranslate", json=ONE_TASK)
    assert health["status"] == "degraded"
    assert "pulling gemma9:1b failed" in health["problem"]
    assert "file does not exist" in health["backend"]["pull"]["status"]
    assert refused.status_code == 503
    assert "ollama pull gemma9:1b" in refused.json()["detail"]


def test_a_crashed_ollama_serve_is_restarted_a_bounded_number_of_times(tmp_path: Path) -> None:
    binary = write_fake_ollama_executable(tmp_path)
    port = free_port()
    settings = make_settings(
        ollama_url=f"http://127.0.0.1:{port}", autostart_ollama=True, ollama_binary=str(binary), ollama_max_restarts=1
    )
    with ServiceServer(settings) as service, service.client() as client:
        first = wait_ready(service.url)["backend"]["ollama"]["pid"]
        os.kill(first, signal.SIGKILL)

        def restarted() -> bool:
            ollama = client.get("/health").json()["backend"]["ollama"]
            return ollama["pid"] not in (None, first) and ollama["process"]["state"] == "running"

        assert wait_for(restarted)  # after a backoff, a new `ollama serve`
        health = wait_ready(service.url)
        second = health["backend"]["ollama"]["pid"]
        assert health["backend"]["ollama"]["process"]["restarts"] == 1
        assert client.post("/retranslate", json=ONE_TASK).json()["results"][0]["success"] is True

        os.kill(second, signal.SIGKILL)  # once more: the bound (RETRANSLATE_OLLAMA_MAX_RESTARTS=1) is reached

        def given_up() -> bool:
            return client.get("/health").json()["backend"]["ollama"]["process"]["state"] == "failed"

        assert wait_for(given_up)
        refused = client.post("/retranslate", json=ONE_TASK)
        health = client.get("/health").json()
    assert refused.status_code == 503
    assert "crashed 2 times in a row" in refused.json()["detail"]
    assert health["backend"]["ollama"]["process"]["restarts"] == 1  # no new start per request
    assert gone(first)
    assert gone(second)


def test_service_runs_as_python_dash_m_app(tmp_path: Path, fake: FakeOllama) -> None:
    """The README's entry point: settings from the environment, a real process."""
    port = free_port()
    env = {
        **os.environ,
        "RETRANSLATE_PORT": str(port),
        "RETRANSLATE_OLLAMA_URL": fake.url,
        "RETRANSLATE_AUTOSTART_OLLAMA": "false",
    }
    proc = subprocess.Popen([sys.executable, "-m", "app"], env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        import httpx

        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(up, 30)
        response = httpx.post(f"http://127.0.0.1:{port}/retranslate", json=ONE_TASK, timeout=30)
        assert response.json()["results"][0]["success"] is True
    finally:
        proc.terminate()
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
        assert proc.wait(15) in (0, -15)


def test_pull_missing_model_with_no_model_named_pulls_the_recommended_one(fake_clean: FakeOllama) -> None:
    fake_clean.configure(models={})  # a fresh Ollama: nothing pulled yet
    settings = make_settings(ollama_url=fake_clean.url, pull_missing_model=True)  # RETRANSLATE_MODEL unset
    with ServiceServer(settings) as service, service.client() as client:
        health = wait_ready(service.url)
        assert health["backend"]["pull"] == {"model": RECOMMENDED_MODEL, "state": "done", "status": "success"}
        assert client.post("/retranslate", json=ONE_TASK).json()["model"] == RECOMMENDED_MODEL
    pulls = [r["body"]["model"] for r in fake_clean.stats()["requests"] if r["path"] == "/api/pull"]
    assert pulls == [RECOMMENDED_MODEL]
