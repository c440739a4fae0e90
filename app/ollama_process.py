"""Starting and stopping `ollama serve`, and telling the user why Ollama does not answer.

A process we spawn is ours to stop; one we found running is not.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import psutil

log = logging.getLogger(__name__)


def ollama_host_env(url: str) -> str:
    """The OLLAMA_HOST value that makes `ollama serve` listen where `url` points."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 11434
    return f"{host}:{port}"


def find_ollama_processes() -> list[psutil.Process]:
    """Running processes that look like Ollama (blocking: call it in a thread)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            name = (proc.info.get("name") or "").lower()
            # The first two words: the binary itself, or a script run by an interpreter.
            words = [Path(arg).name.lower() for arg in (proc.info.get("cmdline") or [])[:2]]
        except psutil.Error:
            continue
        if (name.startswith("ollama") or "ollama" in words) and "serve" in (proc.info.get("cmdline") or []):
            found.append(proc)
    return found


def diagnose_unreachable(url: str) -> str | None:
    """Why Ollama may not answer at `url` although it runs: a host/port mismatch, found with psutil."""
    procs = find_ollama_processes()
    if not procs:
        return None
    details = []
    for proc in procs:
        where = "unknown address"
        try:
            ports = sorted(
                {f"{c.laddr.ip}:{c.laddr.port}" for c in proc.net_connections("tcp") if c.status == "LISTEN"}
            )
            if ports:
                where = ", ".join(ports)
            else:
                host = proc.environ().get("OLLAMA_HOST")
                where = f"OLLAMA_HOST={host}" if host else "default 127.0.0.1:11434"
        except psutil.Error:
            pass
        details.append(f"pid {proc.pid} ({where})")
    return (
        f"an ollama process is running ({'; '.join(details)}) but {url} does not answer: the host/port "
        "probably does not match. Point RETRANSLATE_OLLAMA_URL at the address Ollama listens on, or "
        "restart Ollama with OLLAMA_HOST set to match."
    )


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, sig)  # the whole session: `ollama serve` spawns runners
        else:  # Windows
            proc.terminate() if sig == signal.SIGTERM else proc.kill()
    except ProcessLookupError:
        pass


async def stop_process(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM a process group we spawned, SIGKILL it after `grace_s`, and reap it."""
    if proc.poll() is not None:
        return
    _signal_group(proc, signal.SIGTERM)
    try:
        await asyncio.to_thread(proc.wait, grace_s)
    except subprocess.TimeoutExpired:
        log.warning("pid %s ignored SIGTERM for %.0f s: killing it", proc.pid, grace_s)
        _signal_group(proc, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 5.0)


class OllamaProcess:
    """An `ollama serve` this service started."""

    def __init__(self, binary: str, url: str, num_parallel: int) -> None:
        self._binary = binary
        self._url = url
        self._num_parallel = num_parallel
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.gettempdir()) / f"retranslate-ollama-{ollama_host_env(url).replace(':', '-')}.log"

    @staticmethod
    def find_binary(name: str) -> str | None:
        return shutil.which(name)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def start(self, is_ready: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
        """Spawn `ollama serve` and wait until `is_ready()` says it answers (polling, no fixed sleep)."""
        env = dict(os.environ)
        env["OLLAMA_HOST"] = ollama_host_env(self._url)
        # OLLAMA_NUM_PARALLEL defaults to 1 in current Ollama: every request we fan out would queue
        # behind the previous one. Match it to our own bound.
        env["OLLAMA_NUM_PARALLEL"] = str(self._num_parallel)
        log_file = self.log_path.open("ab")
        try:
            # A new session: a Ctrl-C in the service's terminal must not kill Ollama under a running
            # batch; we stop it ourselves, in order, at shutdown.
            self._proc = subprocess.Popen(
                [self._binary, "serve"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log_file.close()
        log.warning(
            "started `%s serve` (pid %s) with OLLAMA_HOST=%s OLLAMA_NUM_PARALLEL=%s; log: %s",
            self._binary,
            self._proc.pid,
            env["OLLAMA_HOST"],
            self._num_parallel,
            self.log_path,
        )
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"`ollama serve` exited with code {self._proc.returncode}:\n{self._log_tail()}")
            if await is_ready():
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        await self.stop()
        raise RuntimeError(f"`ollama serve` did not answer within {timeout_s:.0f} s:\n{self._log_tail()}")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop the process we started (SIGTERM, then SIGKILL after `grace_s`)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        log.info("stopping the ollama we started (pid %s)", proc.pid)
        await stop_process(proc, grace_s)

    def detach(self) -> None:
        """Forget the process without stopping it (the CLI leaves Ollama running for the editor)."""
        self._proc = None
