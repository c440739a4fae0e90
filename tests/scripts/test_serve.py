"""scripts/serve.py, the set-up-and-start command: per-OS choices by parameter (CI has no Windows or macOS),
and real runs here (its plan, a bad setting, the service it starts)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import wait_ready
from tests.servers.fake_ollama import FakeOllama
from tests.servers.service import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / "scripts" / "serve.py"


def load_serve() -> ModuleType:
    spec = importlib.util.spec_from_file_location("serve_script", SERVE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


serve = load_serve()


@pytest.mark.parametrize(
    ("system", "expected"),
    [("windows", ".venv/Scripts/python.exe"), ("linux", ".venv/bin/python"), ("darwin", ".venv/bin/python")],
)
def test_the_venv_layout_is_the_oss(system: str, expected: str) -> None:
    assert serve.venv_python(Path("/r"), system) == Path("/r") / expected


@pytest.mark.parametrize(
    ("system", "env", "expected"),
    [
        ("windows", {"LOCALAPPDATA": "C:\\Users\\a\\AppData\\Local"}, "Programs"),
        ("windows", {}, None),
        ("darwin", {}, "/Applications/Ollama.app/Contents/Resources/ollama"),
        ("linux", {}, "/usr/local/bin/ollama"),
    ],
)
def test_ollama_is_looked_for_where_its_installer_puts_it(system: str, env: dict, expected: str | None) -> None:
    candidates = serve.ollama_candidates(system, env)
    if expected is None:
        assert candidates == []
    else:
        assert any(expected in c for c in candidates)


@pytest.mark.parametrize(("system", "engine", "replace"), [("linux", True, True), ("darwin", True, True),
                                                          ("windows", False, False)])  # fmt: skip
def test_engine_and_start_per_os(system: str, engine: bool, replace: bool) -> None:
    # Windows: no embedded engine build (use Ollama); the service runs as a child (no exec keeps Ctrl-C).
    assert serve.engine_supported(system) is engine
    assert serve.start_replaces_process(system) is replace


def test_the_banner_has_a_straight_right_edge() -> None:
    lines = serve.demo_banner().splitlines()
    assert len({len(line) for line in lines}) == 1
    assert all(line.endswith("#") for line in lines)
    assert "ollama pull qwen3:4b-instruct-2507-q4_K_M" in " ".join(lines)


def run_serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("RETRANSLATE_")}
    full.update(env)
    return subprocess.run([sys.executable, str(SERVE), *args], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_the_plan_with_ollama_answering(fake: FakeOllama) -> None:
    done = run_serve("--plan", RETRANSLATE_OLLAMA_URL=fake.url)
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout[done.stdout.index("{") :])
    assert plan["backend"] == "ollama"
    assert plan["engine"] is False
    assert plan["demo_model"] is False


def test_the_plan_without_ollama_is_the_demo_engine(tmp_path: Path) -> None:
    done = run_serve(
        "--plan",
        RETRANSLATE_OLLAMA_URL=f"http://127.0.0.1:{free_port()}",
        RETRANSLATE_OLLAMA_BINARY=str(tmp_path / "no-ollama"),
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout[done.stdout.index("{") :])
    assert plan["backend"] == "embedded"
    assert plan["engine"] is True
    assert plan["demo_model"] is True


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [("RETRANSLATE_MAX_CONCURRENCY", "abc", "a whole number from 1 to 512"), ("RETRANSLATE_PORT", "99999", "65535")],
)
def test_a_bad_setting_is_one_line_and_exit_2(name: str, value: str, says: str) -> None:
    done = run_serve("--plan", **{name: value})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"retranslate: {name}={value!r}")
    assert says in lines[0]


def test_it_starts_the_service(fake: FakeOllama) -> None:
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("RETRANSLATE_")}
    full.update(RETRANSLATE_OLLAMA_URL=fake.url, RETRANSLATE_PORT=str(port), RETRANSLATE_AUTOSTART_OLLAMA="false")
    proc = subprocess.Popen([sys.executable, str(SERVE)], cwd=ROOT, env=full, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        health = wait_ready(f"http://127.0.0.1:{port}", 300)
        assert health["backend"]["kind"] == "ollama"
        proc.send_signal(signal.SIGTERM)  # serve.py exec'd the service: the signal reaches it and it drains
        assert proc.wait(60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
