"""Per-OS process choices, by parameter (CI has no Windows or macOS machine); one starter per process,
over real processes."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from app.processes import (
    CREATE_NEW_PROCESS_GROUP,
    CREATE_NO_WINDOW,
    RESTART_BACKOFF_S,
    ManagedProcess,
    ProcessState,
    _die_with_parent,
    grace_after_asking,
    spawn_options,
    termination,
)
from tests.helpers import await_until, gone
from tests.servers.fake_ollama_cli import write_fake_ollama_executable
from tests.servers.service import free_port


@pytest.mark.parametrize("os_name", ["linux", "darwin", "windows"])
def test_children_get_their_own_process_group(os_name: str) -> None:
    options = spawn_options(os_name, tie_to_parent=True)  # type: ignore[arg-type]
    if os_name == "windows":
        assert options == {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    else:
        assert options["start_new_session"] is True


@pytest.mark.parametrize(("os_name", "has_pdeathsig"), [("linux", True), ("darwin", False), ("windows", False)])
def test_only_linux_ties_the_child_to_us_with_pdeathsig(os_name: str, has_pdeathsig: bool) -> None:
    options = spawn_options(os_name, tie_to_parent=True)  # type: ignore[arg-type]
    assert (options.get("preexec_fn") is _die_with_parent) is has_pdeathsig
    untied = spawn_options(os_name, tie_to_parent=False)  # type: ignore[arg-type]
    assert "preexec_fn" not in untied


@pytest.mark.parametrize("os_name", ["linux", "darwin"])
def test_posix_stops_the_group_with_sigterm_then_sigkill(os_name: str) -> None:
    assert termination(os_name, force=False).signal == signal.SIGTERM  # type: ignore[arg-type]
    assert termination(os_name, force=True).signal == signal.SIGKILL  # type: ignore[arg-type]


@pytest.mark.parametrize(("delivered", "wait_s"), [(True, 10.0), (False, 0.0)])
def test_a_refused_stop_request_is_forced_at_once(delivered: bool, wait_s: float) -> None:
    # Windows: taskkill without /F fails at once for a window-less console process (`ollama serve`): no
    # full grace to wait before /F.
    assert grace_after_asking(delivered, 10.0) == wait_s


def test_windows_stops_the_tree_with_taskkill() -> None:
    assert termination("windows", force=False).signal is None
    assert termination("windows", force=False).taskkill_args == ("/T",)
    assert termination("windows", force=True).taskkill_args == ("/T", "/F")


def _spawn_recording_ollama(directory: Path, spawn_log: Path) -> Path:
    """A fake `ollama` executable that appends its pid to `spawn_log` each time it starts."""
    fake = write_fake_ollama_executable(directory / "real")
    path = directory / "ollama"
    path.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"with open({str(spawn_log)!r}, 'a') as log: log.write(f'{{os.getpid()}}\\n')\n"
        f"os.execv({str(fake)!r}, [{str(fake)!r}, *sys.argv[1:]])\n",
        encoding="utf-8",
    )
    path.chmod(0o755)
    return path


async def test_a_start_asked_for_during_the_restart_backoff_spawns_no_second_child(tmp_path: Path) -> None:
    """`ollama serve` crashes; a request arrives while the watchdog waits out its backoff. One restart
    happens, shared by both, and stop() leaves no child running."""
    (tmp_path / "real").mkdir()
    spawn_log = tmp_path / "spawns"
    binary = _spawn_recording_ollama(tmp_path, spawn_log)
    port = free_port()

    def spawned() -> list[int]:
        return [int(line) for line in spawn_log.read_text().split()] if spawn_log.exists() else []

    async def answers() -> bool:
        try:
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/api/version") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    process = ManagedProcess(
        "ollama",
        [str(binary), "serve"],
        log_path=tmp_path / "ollama.log",
        ready=answers,
        start_timeout_s=60,
        max_restarts=3,
        env={**os.environ, "OLLAMA_HOST": f"127.0.0.1:{port}"},
    )
    try:
        await process.ensure_running()
        first = process.pid
        assert first is not None
        assert spawned() == [first]
        os.kill(first, signal.SIGKILL)
        assert await await_until(lambda: process.state is ProcessState.RESTARTING)  # the watchdog's backoff
        await process.ensure_running()  # a request comes in meanwhile
        assert process.state is ProcessState.RUNNING
        # The watchdog's backoff (RESTART_BACKOFF_S) is over well within this bound: a restart of its own
        # would show as a third spawn.
        assert not await await_until(lambda: len(spawned()) > 2, timeout_s=3 * RESTART_BACKOFF_S)
        assert len(spawned()) == 2, spawned()
    finally:
        await process.stop(grace_s=5)
    survivors = [pid for pid in spawned() if not gone(pid)]
    assert survivors == [], f"`ollama serve` children outlived stop(): {survivors}"
