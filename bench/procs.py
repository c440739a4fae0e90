"""The processes a benchmark run starts: the fake Ollama, the service, llama-server, the LiteLLM proxy.

Each runs as its own process (the client, the service and the backend must not share a GIL), binds
127.0.0.1 only, is waited for with a bounded loop, and is stopped by `Processes.stop_all` whatever
happened (exceptions, Ctrl-C, SIGTERM): SIGTERM first, then SIGKILL to the process group it leads.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
# The model the fake serves without thinking capability: the service then caps each call at
# RETRANSLATE_MAX_OUTPUT_TOKENS, as it would with the model the README recommends.
FAKE_MODEL = "qwen3:4b-instruct-2507-q4_K_M"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    """Poll `check` every 50 ms until it is true; fail when `proc` exits or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} was not ready within {timeout_s:g} s")


@dataclass
class Managed:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


@dataclass
class Processes:
    """Every process this run started; `stop_all` stops them in reverse order."""

    log_dir: Path
    started: list[Managed] = field(default_factory=list)

    def spawn(self, name: str, cmd: list[str], url: str, env: Mapping[str, str] | None = None) -> Managed:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log_file:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C reaches only us, and we stop it in order.
                start_new_session=True,
            )
        managed = Managed(name, proc, url, log_path)
        self.started.append(managed)
        return managed

    def spawn_ready(
        self, name: str, cmd: list[str], port: int, ready_path: str, timeout_s: float,
        env: Mapping[str, str] | None = None,
    ) -> Managed:  # fmt: skip
        """`spawn`, then wait (bounded) until GET `ready_path` answers 200."""
        managed = self.spawn(name, cmd, f"http://127.0.0.1:{port}", env)
        wait_until(
            lambda: httpx.get(f"{managed.url}{ready_path}", timeout=5).status_code == 200, timeout_s, name, managed.proc
        )
        return managed

    def stop(self, managed: Managed, timeout_s: float = 15.0) -> None:
        proc = managed.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the group it leads (start_new_session)
                proc.wait(5.0)
        if managed in self.started:
            self.started.remove(managed)

    def stop_all(self) -> None:
        for managed in reversed(list(self.started)):
            with contextlib.suppress(Exception):
                self.stop(managed)

    # --- the three kinds -----------------------------------------------------------------------

    def fake_ollama(self, config: Mapping[str, Any]) -> Managed:
        port = free_port()
        cmd = [sys.executable, "-m", "tests.servers.fake_ollama", "--host", "127.0.0.1", "--port", str(port)]
        return self.spawn_ready("fake-ollama", [*cmd, "--config", json.dumps(dict(config))], port, "/api/version", 30)

    def service(self, name: str, settings: Mapping[str, str], timeout_s: float = 60.0) -> Managed:
        """`python -m app`, configured the way users configure it: RETRANSLATE_* variables."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RETRANSLATE_")}
        env.update(
            {
                "RETRANSLATE_HOST": "127.0.0.1",
                "RETRANSLATE_PORT": str(port),
                "RETRANSLATE_AUTOSTART_OLLAMA": "false",
                "RETRANSLATE_LOG_LEVEL": "WARNING",
                "RETRANSLATE_CACHE_SIZE": "0",
                "RETRANSLATE_CACHE_PATH": "",
                **settings,
            }
        )
        return self.spawn_ready(name, [sys.executable, "-m", "app"], port, "/ready", timeout_s, env)

    def llama_server(self, binary: Path, model: Path, alias: str, slots: int, ctx_per_slot: int) -> Managed:
        port = free_port()
        cmd = [
            str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
            "-np", str(slots), "-c", str(slots * ctx_per_slot), "--alias", alias, "--no-webui",
        ]  # fmt: skip
        return self.spawn_ready("llama-server", cmd, port, "/health", 180)

    def litellm_proxy(self, binary: Path, config: Path, master_key: str, ollama_api_base: str) -> Managed:
        """`litellm --config` (the proxy), offline: the bundled price list, no probe of localhost:11434, a
        HOME of its own, no database. Importing it alone takes 6-14 s on a small machine."""
        port = free_port()
        home = self.log_dir / "litellm-home"
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "DATABASE_URL"))}
        env.update(
            {
                "HOME": str(home),
                "LITELLM_MASTER_KEY": master_key,
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                "OLLAMA_API_BASE": ollama_api_base,
                "LITELLM_LOG": "ERROR",
                "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
                "LITELLM_TELEMETRY": "False",
            }
        )
        cmd = [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        return self.spawn_ready("litellm-proxy", cmd, port, "/health/liveliness", 180, env)


class Fake:
    """Drives a fake Ollama process through its control endpoints."""

    def __init__(self, managed: Managed) -> None:
        self.managed = managed
        self.url = managed.url

    def configure(self, **config: Any) -> None:
        httpx.post(f"{self.url}/_fake/config", json=config, timeout=10).raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_fake/reset", json={}, timeout=10).raise_for_status()

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_fake/stats", timeout=60)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


def chat_bodies(stats: Mapping[str, Any], path: str = "/api/chat") -> list[dict[str, Any]]:
    """The JSON bodies the fake received on `path`, in arrival order."""
    return [dict(r["body"]) for r in stats["requests"] if r["path"] == path and isinstance(r.get("body"), dict)]


def count_calls(stats: Mapping[str, Any], path: str) -> int:
    return int(stats["paths"].get(path, 0))
