"""Starting `ollama serve` when the service may, and telling the user why Ollama does not answer.

A process we spawn is ours to stop; one we found running is not.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from app.processes import ManagedProcess


def ollama_host_env(url: str) -> str:
    """The OLLAMA_HOST value that makes `ollama serve` listen where `url` points."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 11434
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def find_binary(name: str) -> str | None:
    return shutil.which(name)


def ollama_serve_process(
    binary: str,
    url: str,
    num_parallel: int,
    *,
    environ: dict[str, str],
    ready: ManagedProcess.ReadyCheck,
    start_timeout_s: float,
    max_restarts: int,
    on_ready: Callable[[], None],
) -> ManagedProcess:
    env = dict(environ)
    env["OLLAMA_HOST"] = ollama_host_env(url)
    # OLLAMA_NUM_PARALLEL defaults to 1 in current Ollama: every request we fan out would queue behind the
    # previous one. Match it to our own bound.
    env["OLLAMA_NUM_PARALLEL"] = str(num_parallel)
    log_path = Path(tempfile.gettempdir()) / f"retranslate-ollama-{env['OLLAMA_HOST'].replace(':', '-')}.log"
    return ManagedProcess(
        "ollama serve",
        [binary, "serve"],
        env=env,
        log_path=log_path,
        ready=ready,
        start_timeout_s=start_timeout_s,
        max_restarts=max_restarts,
        tie_to_parent=False,
        on_ready=on_ready,
    )


def find_ollama_processes() -> list[psutil.Process]:
    """Running processes that look like Ollama (blocking: call it in a thread)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            name = (proc.info.get("name") or "").lower()
            cmdline = proc.info.get("cmdline") or []
            # The first two words: the binary itself, or a script run by an interpreter.
            words = [Path(arg).name.lower() for arg in cmdline[:2]]
        except psutil.Error:
            continue
        if (name.startswith("ollama") or "ollama" in words) and "serve" in cmdline:
            found.append(proc)
    return found


def diagnose_unreachable(url: str) -> str | None:
    """Why Ollama may not answer at `url` although it runs: a host/port mismatch, found with psutil
    (blocking: call it in a thread)."""
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
