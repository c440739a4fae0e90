"""The paths a new user trips on, over real HTTP: an unloaded model is ready, a port already in use is said
before anything starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import httpx
import pytest

from app.editor_protocol import DEMO_NOTICE
from app.first_run import missing_model_fix
from app.main import shutdown_signals
from app.vocabulary import MODEL_PREFERENCE, RECOMMENDED_MODEL
from tests.conftest import ENGINE, engine_available, make_settings
from tests.helpers import wait_ready
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import ServiceServer, free_port
from tests.test_translator import post, tasks


def test_after_unload_after_the_service_is_ready_not_degraded(service: ServiceServer, fake_clean: FakeOllama) -> None:
    body = post(service, {"tasks": tasks(2), "unload_after": True})
    assert fake_clean.stats()["unloads"] == [body["model"]]
    with service.client() as client:
        ready = client.get("/ready")
        health = client.get("/health").json()
    # Ollama loads the model again on the next call: a container health check on /ready must not flap.
    assert ready.status_code == 200, ready.text
    assert health["status"] == "ready", health


@pytest.mark.engine
def test_after_unload_after_the_embedded_engine_is_ready_not_degraded() -> None:
    # The embedded engine frees its memory by stopping; the next batch starts it again on the same port.
    if not engine_available():
        pytest.skip("the embedded extra is not installed")
    with ServiceServer(make_settings(**ENGINE)) as service:
        wait_ready(service.url, 300)
        body = post(service, {"tasks": tasks(1, lang="en"), "unload_after": True}, timeout=600)
        assert body["backend"] == "embedded"
        health = httpx.get(f"{service.url}/health", timeout=30).json()
        assert health["backend"]["embedded"]["running"] is False  # the release ran before the answer
        assert health["backend"]["embedded"]["unloaded"] is True
        assert health["status"] == "ready", health
        assert httpx.get(f"{service.url}/ready", timeout=30).status_code == 200
        again = post(service, {"tasks": tasks(1, lang="en")}, timeout=600)
        assert again["backend"] == "embedded"
        assert httpx.get(f"{service.url}/health", timeout=30).json()["backend"]["embedded"]["running"] is True


def run_app(port: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETRANSLATE_")}
    env.update(RETRANSLATE_PORT=str(port), RETRANSLATE_AUTOSTART_OLLAMA="false", RETRANSLATE_BACKEND="ollama",
               RETRANSLATE_OLLAMA_URL=f"http://127.0.0.1:{free_port()}")  # fmt: skip
    return subprocess.run([sys.executable, "-m", "app"], env=env, capture_output=True, text=True, timeout=60)


def test_a_port_taken_by_another_program_names_the_setting_before_anything_starts() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = run_app(port)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "Started server process" not in done.stderr  # nothing started (no lifespan, no engine)
    [line] = done.stderr.splitlines()
    assert line.startswith(f"retranslate: port {port} on 127.0.0.1 is in use by another program")
    assert "set RETRANSLATE_PORT to a free port" in line


def test_a_port_taken_by_the_service_itself_says_it_already_runs(service: ServiceServer) -> None:
    done = run_app(service.port)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith(f"retranslate: the service already runs at http://127.0.0.1:{service.port}")
    assert "RETRANSLATE_PORT" in line


def test_a_missing_model_recommends_the_first_of_the_preference_list(fake_clean: FakeOllama) -> None:
    fake_clean.configure(models={})  # a fresh Ollama: nothing pulled
    one = {"tasks": tasks(1), "model": "qwen2.5:32b"}  # the editor's old default, ~20 GB
    with ServiceServer(make_settings(ollama_url=fake_clean.url)) as service:
        refused = httpx.post(f"{service.url}/retranslate", json=one, timeout=30)
    assert refused.status_code == 503
    detail = refused.json()["detail"]
    assert "is not pulled" in detail
    fix = detail.split("Fix: ", 1)[1]
    assert fix.startswith(f"`ollama pull {MODEL_PREFERENCE[0]}` (recommended")
    assert "`ollama pull qwen2.5:32b`" in fix
    assert "none installed" not in detail
    assert "one of:" not in detail


@pytest.mark.parametrize(
    ("installed", "says", "never"),
    [
        ([], ["`ollama pull qwen2.5:32b`", "no model is installed yet"], ["one it has"]),
        (["llama3:8b"], ["one it has: llama3:8b"], ["no model is installed"]),
    ],
)
def test_the_missing_model_fix_lists_what_is_installed_only_when_there_is_any(
    installed: list[str], says: list[str], never: list[str]
) -> None:
    fix = missing_model_fix("qwen2.5:32b", installed, ollama=True)
    assert fix.startswith(f"`ollama pull {MODEL_PREFERENCE[0]}`")
    assert all(text in fix for text in says), fix
    assert not any(text in fix for text in never), fix


def test_the_recommended_model_missing_is_pulled_once_in_the_fix() -> None:
    fix = missing_model_fix(MODEL_PREFERENCE[0], [], ollama=True)
    assert fix.count("ollama pull") == 1


def test_the_demo_notice_says_what_the_user_can_do() -> None:
    # The user never set RETRANSLATE_BACKEND=embedded (serve.py --demo did), and the editor cannot pass
    # --allow-demo: the notice names neither, and says how to get real translations.
    assert "RETRANSLATE_BACKEND=embedded" not in DEMO_NOTICE
    assert "--allow-demo" not in DEMO_NOTICE
    assert "serve.py --demo" in DEMO_NOTICE
    assert f"ollama pull {RECOMMENDED_MODEL}" in DEMO_NOTICE


@pytest.mark.parametrize(
    ("system", "names", "drains_break"),
    [("windows", {"SIGINT": 2, "SIGTERM": 15, "SIGBREAK": 21}, True), ("linux", {"SIGINT": 2, "SIGTERM": 15}, False)],
)
def test_ctrl_break_drains_on_windows(system: str, names: dict[str, int], drains_break: bool) -> None:
    signals = shutdown_signals(SimpleNamespace(**names))
    assert (21 in signals) is drains_break
    assert {2, 15} <= set(signals)
