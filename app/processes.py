"""Child processes the service starts (`ollama serve`, llama-server).

Each is spawned so that it dies with the service (Linux: PDEATHSIG; Windows: a kill-on-close job object),
in its own process group (a Ctrl-C in the service's terminal must not kill it under a running batch),
watched, restarted a bounded number of times with backoff when it crashes, and stopped in order at
shutdown. A process we found running is never ours to stop.

The per-OS choices are plain functions of the OS name (`spawn_options`, `termination`), unit-tested for
every OS because CI has no Windows or macOS machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)

OsName = Literal["linux", "darwin", "windows"]

# Windows process-creation flags (winbase.h), spelled out so this module imports on every OS.
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000

# A restarted process that then runs this long has recovered: its crash count starts again.
RESTART_RESET_S = 300.0
RESTART_BACKOFF_S = 1.0
RESTART_BACKOFF_MAX_S = 30.0
WATCH_INTERVAL_S = 0.25


def current_os() -> OsName:
    if sys.platform.startswith("win"):
        return "windows"
    if sys.platform == "darwin":
        return "darwin"
    return "linux"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux only: SIGTERM this child when the service dies without stopping it (a crash, SIGKILL), so a
    model never stays in memory with nobody to stop it."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def spawn_options(os_name: OsName, *, tie_to_parent: bool) -> dict[str, Any]:
    """`subprocess.Popen` keyword arguments that give a child its own process group and, with
    `tie_to_parent`, tie its life to ours. macOS has no PDEATHSIG: there the lifespan's stop is all we have
    (Windows: the job object, see `_kill_on_close_job`)."""
    if os_name == "windows":
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    options: dict[str, Any] = {"start_new_session": True}
    if os_name == "linux" and tie_to_parent:
        options["preexec_fn"] = _die_with_parent
    return options


@dataclass(frozen=True)
class Termination:
    """How to stop a child's whole tree: a signal to its process group (POSIX) or `taskkill /T` (Windows,
    which has no process groups to signal; `/F` is the forced form)."""

    signal: int | None
    taskkill_args: tuple[str, ...] = ()


def termination(os_name: OsName, *, force: bool) -> Termination:
    if os_name == "windows":
        return Termination(None, ("/T", "/F") if force else ("/T",))
    return Termination(getattr(signal, "SIGKILL", signal.SIGTERM) if force else signal.SIGTERM)


def grace_after_asking(delivered: bool, grace_s: float) -> float:
    """How long to wait for a process we asked to stop before forcing it: the grace when the request reached
    it; none when it was refused (Windows: `taskkill` without /F fails at once for a window-less console
    process such as `ollama serve`; waiting the full grace would only delay every shutdown)."""
    return grace_s if delivered else 0.0


def _terminate(proc: subprocess.Popen[bytes], os_name: OsName, *, force: bool) -> bool:
    """Whether the request to stop was delivered."""
    how = termination(os_name, force=force)
    try:
        if how.signal is not None:
            os.killpg(proc.pid, how.signal)  # the whole session: `ollama serve` spawns runners
            return True
        done = subprocess.run(
            ["taskkill", "/PID", str(proc.pid), *how.taskkill_args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
        return done.returncode == 0
    except (ProcessLookupError, PermissionError, OSError, subprocess.TimeoutExpired):
        if force:
            with contextlib.suppress(OSError):
                proc.kill()
        return False


def _kill_on_close_job(proc: subprocess.Popen[bytes]) -> object | None:  # pragma: no cover - Windows only
    """Windows' counterpart of PDEATHSIG: a job object that kills its processes when its last handle
    closes, which happens when the service exits, however it exits."""
    import ctypes
    from ctypes import wintypes

    class IoCounters(ctypes.Structure):
        _fields_ = [(name, ctypes.c_ulonglong) for name in (
            "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
            "ReadTransferCount", "WriteTransferCount", "OtherTransferCount",
        )]  # fmt: skip

    class BasicLimits(ctypes.Structure):
        _fields_ = [
            ("PerProcessUserTimeLimit", ctypes.c_int64),
            ("PerJobUserTimeLimit", ctypes.c_int64),
            ("LimitFlags", wintypes.DWORD),
            ("MinimumWorkingSetSize", ctypes.c_size_t),
            ("MaximumWorkingSetSize", ctypes.c_size_t),
            ("ActiveProcessLimit", wintypes.DWORD),
            ("Affinity", ctypes.c_size_t),
            ("PriorityClass", wintypes.DWORD),
            ("SchedulingClass", wintypes.DWORD),
        ]

    class ExtendedLimits(ctypes.Structure):
        _fields_ = [
            ("BasicLimitInformation", BasicLimits),
            ("IoInfo", IoCounters),
            ("ProcessMemoryLimit", ctypes.c_size_t),
            ("JobMemoryLimit", ctypes.c_size_t),
            ("PeakProcessMemoryUsed", ctypes.c_size_t),
            ("PeakJobMemoryUsed", ctypes.c_size_t),
        ]

    job_object_limit_kill_on_job_close = 0x2000
    job_object_extended_limit_information = 9
    kernel32: Any = getattr(ctypes, "WinDLL")("kernel32", use_last_error=True)  # noqa: B009 - not on POSIX
    job = kernel32.CreateJobObjectW(None, None)
    if not job:
        return None
    info = ExtendedLimits()
    info.BasicLimitInformation.LimitFlags = job_object_limit_kill_on_job_close
    size = ctypes.sizeof(info)
    ok = kernel32.SetInformationJobObject(job, job_object_extended_limit_information, ctypes.byref(info), size)
    if not ok or not kernel32.AssignProcessToJobObject(job, int(getattr(proc, "_handle"))):  # noqa: B009
        kernel32.CloseHandle(job)
        return None
    handle: object = job
    return handle  # kept referenced by the ManagedProcess: closing it would kill the child


async def stop_process(proc: subprocess.Popen[bytes], grace_s: float, os_name: OsName | None = None) -> None:
    """Ask a process tree we spawned to stop, force it after `grace_s`, and reap it."""
    os_name = os_name or current_os()
    if proc.poll() is not None:
        return
    wait_s = grace_after_asking(_terminate(proc, os_name, force=False), grace_s)
    try:
        await asyncio.to_thread(proc.wait, wait_s)
    except subprocess.TimeoutExpired:
        log.warning("pid %s did not stop within %.0f s: killing it", proc.pid, wait_s)
        _terminate(proc, os_name, force=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(proc.wait, 5.0)


class ProcessState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"


class ProcessFailed(Exception):
    """The process could not be started (or restarted): the message says why and where its log is."""


class ManagedProcess:
    """One child process: started on demand (concurrent callers share one start), watched, restarted
    with backoff up to `max_restarts` consecutive crashes, stopped by `stop()`.

    `tie_to_parent`: the child dies with us even if we crash. True for llama-server (it holds a model's
    memory and serves nobody else); False for `ollama serve`, which the old script left running for the
    editor's next steps (the service still stops it at shutdown; the CLI leaves it up)."""

    ReadyCheck = Callable[[], Awaitable[bool]]

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        ready: ReadyCheck,
        start_timeout_s: float,
        max_restarts: int,
        env: Mapping[str, str] | None = None,
        tie_to_parent: bool = True,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self._tie_to_parent = tie_to_parent
        self._on_ready = on_ready
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._ready = ready
        self._start_timeout_s = start_timeout_s
        self._max_restarts = max_restarts
        self._env = dict(env) if env is not None else None
        self._os = current_os()
        self._proc: subprocess.Popen[bytes] | None = None
        # Every child ever spawned and not yet reaped by stop(): a restart must never orphan one.
        self._children: list[subprocess.Popen[bytes]] = []
        self._job: object | None = None
        self._starting: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False
        self._detached = False
        self._up_since = 0.0
        self.state = ProcessState.STOPPED
        self.problem: str | None = None
        self.restarts = 0  # consecutive crashes restarted
        self.restarts_total = 0

    # --- what /health shows ------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "pid": self.pid,
            "restarts": self.restarts_total,
            "problem": self.problem,
            "log": str(self.log_path),
        }

    # --- starting --------------------------------------------------------------------------------------

    async def ensure_running(self) -> None:
        """Return once the process answers; raise ProcessFailed when it cannot be (re)started. Callers
        that arrive during a start wait for that start rather than spawning another process."""
        if self.state is ProcessState.FAILED:
            raise ProcessFailed(self.problem or f"{self.name} failed")
        if self.running and self.state is ProcessState.RUNNING:
            return
        # shield: one impatient caller leaving must not cancel the start others wait for.
        await asyncio.shield(self._start_once())

    def _start_once(self, delay_s: float = 0.0) -> asyncio.Task[None]:
        """The one way a process is (re)started, by callers and by the watchdog alike: the start in progress
        (a restart waiting out its backoff included), or a new one. So a request arriving during the
        backoff waits for that restart instead of spawning a second child beside it."""
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self._start(delay_s), name=f"start {self.name}")
        return self._starting

    async def _start(self, delay_s: float = 0.0) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        if self._stopping or self._detached:
            raise ProcessFailed(f"{self.name} is being stopped")
        if self.state is not ProcessState.RESTARTING:
            self.state = ProcessState.STARTING
        try:
            await self._spawn_and_wait()
        except ProcessFailed as exc:
            self.state, self.problem = ProcessState.FAILED, str(exc)
            raise
        self.state, self.problem = ProcessState.RUNNING, None
        self._up_since = time.monotonic()
        if self._on_ready is not None:
            self._on_ready()
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch(), name=f"watch {self.name}")

    async def _spawn_and_wait(self) -> None:
        with self.log_path.open("ab") as log_file:
            try:
                self._proc = subprocess.Popen(
                    self.argv,
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    **spawn_options(self._os, tie_to_parent=self._tie_to_parent),
                )
            except OSError as exc:
                raise ProcessFailed(f"starting {self.name} failed: {exc}") from None
        self._children = [child for child in self._children if child.poll() is None] + [self._proc]
        if self._os == "windows" and self._tie_to_parent:  # pragma: no cover - Windows only
            self._job = _kill_on_close_job(self._proc)
        log.warning("started %s (pid %s): %s; log: %s", self.name, self._proc.pid, " ".join(self.argv), self.log_path)
        deadline = time.monotonic() + self._start_timeout_s
        delay = 0.05
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ProcessFailed(f"{self.name} exited with code {self._proc.returncode}: {self.log_tail()}")
            if await self._ready():
                log.warning("%s answers (pid %s)", self.name, self._proc.pid)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        await stop_process(self._proc, 5.0, self._os)
        raise ProcessFailed(f"{self.name} did not answer within {self._start_timeout_s:g} s: {self.log_tail()}")

    def log_tail(self, lines: int = 10) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"(no log at {self.log_path})"
        return " | ".join(tail) + f" (log: {self.log_path})"

    # --- watching --------------------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Restart a crashed process promptly, so that the next request finds it up. Polling (not a
        thread blocked in wait()): the loop ends on stop() or detach() at once."""
        while not (self._stopping or self._detached):
            await asyncio.sleep(WATCH_INTERVAL_S)
            proc = self._proc
            if self._stopping or self._detached or proc is None or proc.poll() is None:
                if self.restarts and time.monotonic() - self._up_since > RESTART_RESET_S:
                    self.restarts = 0
                continue
            if self.restarts >= self._max_restarts:
                self.state = ProcessState.FAILED
                self.problem = (
                    f"{self.name} crashed {self.restarts + 1} times in a row (exit code {proc.returncode}); "
                    f"not restarting it again. {self.log_tail()}"
                )
                log.error("%s", self.problem)
                return
            self.restarts += 1
            self.restarts_total += 1
            backoff = min(RESTART_BACKOFF_MAX_S, RESTART_BACKOFF_S * 2 ** (self.restarts - 1))
            self.state = ProcessState.RESTARTING
            self.problem = f"{self.name} crashed (exit code {proc.returncode}); restarting in {backoff:g} s"
            log.error("%s (restart %d of %d)", self.problem, self.restarts, self._max_restarts)
            try:
                # The restart is the start every caller shares; it begins with the backoff.
                await asyncio.shield(self._start_once(backoff))
            except ProcessFailed:
                # A failed restart counts as another crash: the loop restarts it again while any are left.
                if self.restarts >= self._max_restarts:
                    return
                self.state = ProcessState.RESTARTING

    # --- stopping --------------------------------------------------------------------------------------

    async def stop(self, grace_s: float = 10.0) -> None:
        self._stopping = True
        for task in (self._watchdog, self._starting):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ProcessFailed):
                    await task
        self._proc = None
        children, self._children = self._children, []
        for proc in children:
            if proc.poll() is None:
                log.info("stopping %s (pid %s)", self.name, proc.pid)
                await stop_process(proc, grace_s, self._os)
        self.state = ProcessState.STOPPED
        self._job = None

    def detach(self) -> None:
        """Leave the process running and forget it (the CLI leaves Ollama up for the editor's next steps)."""
        self._detached = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._proc = None
        self._children = []
        self.state = ProcessState.STOPPED
