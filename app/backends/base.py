"""What every backend is: the `Backend` protocol, the call path they share, and the batch's handle.

The shared call path (`BackendBase.chat`) is where the breaker, the concurrency bound and the structured
output fallback live, once for every engine: a backend module only says how to talk to its engine
(`_chat`, `probe`, ...).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from app.backends.bound import Bound, follow_engine
from app.backends.breaker import Breaker
from app.backends.parallelism import ParallelismMeter, Stay, advice
from app.backends.timings import CallTimings
from app.errors import BackendCallError, ErrorKind
from app.metrics import Metrics
from app.settings import Settings

log = logging.getLogger(__name__)

Message = dict[str, str]
BackendKind = Literal["ollama", "openai", "embedded"]


@dataclass(frozen=True)
class ChatRequest:
    """One chat call: what to ask and its bounds."""

    model: str
    messages: list[Message]
    max_tokens: int
    temperature: float
    timeout_s: float
    # The answer's JSON schema, sent as structured output while the server accepts it.
    answer_schema: dict[str, Any] | None = None
    # The sampling seed (Ollama `options.seed`, OpenAI `seed`): a line's candidates differ by it.
    seed: int | None = None
    # Completions wanted from this one request (llama-server's `n`: one prompt evaluation, copied to n
    # slots); the backend sends as many as it has free slots for, at least 1.
    n: int = 1
    # Loop time by which the line this call serves must be done: how long the call may wait for a
    # restarting engine (the breaker's restart window). None: the call waits for no restart.
    deadline: float | None = None


@dataclass(frozen=True)
class ChatReply:
    content: str
    # Thinking text the backend returned in a separate field (Ollama `thinking`, /v1 `reasoning`).
    thinking: str
    # "stop", "length" (cut off by the cap), ...
    finish_reason: str | None
    # Where the call's time went (engine-reported parts; service_wait set by the shared call path).
    timings: CallTimings | None = None
    # The call's stay at the engine on the service's clock (time.perf_counter): sent, answered.
    sent_at: float | None = None
    answered_at: float | None = None

    def stay(self) -> Stay | None:
        """The call's stay at the engine, when the engine reported its compute time."""
        timings = self.timings
        compute = timings.compute if timings else None
        if timings is None or compute is None or self.sent_at is None or self.answered_at is None:
            return None
        # The engine's own clock when it says how long the call was there (its queue included); else ours.
        at_engine = timings.at_engine
        if at_engine is None:
            at_engine = self.answered_at - self.sent_at
        return Stay(end=self.answered_at, at_engine=max(at_engine, compute), compute=compute)

    # The other completions of a several-answer request (llama-server `n`), in the engine's order.
    more: tuple[ChatReply, ...] = ()


@dataclass(frozen=True)
class Readiness:
    """A backend's answer to "can you translate?", from a cheap check."""

    ok: bool
    problem: str | None = None
    version: str | None = None
    # None: the backend does not list its models (some OpenAI-compatible servers).
    models: frozenset[str] | None = None
    # False: it can translate once its engine is started again (the embedded engine after an unload): a
    # batch never reuses such a check, it starts the engine first.
    serving: bool = True
    checked_at: float = field(default_factory=time.monotonic)


class Backend(Protocol):
    kind: BackendKind
    name: str
    breaker: Breaker
    structured: bool

    @property
    def slots(self) -> int | None: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def measured_parallelism(self) -> float | None: ...

    def parallelism_advice(self) -> str | None: ...

    @property
    def multi_completion(self) -> bool: ...

    async def chat(self, request: ChatRequest, on_send: Callable[[], None] | None = None) -> ChatReply: ...

    async def probe(self) -> Readiness: ...

    async def ensure_up(self) -> Readiness: ...

    async def capabilities(self, model: str) -> frozenset[str]: ...

    async def unload(self, model: str) -> None: ...

    def describe(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class BackendBase:
    """The call path every backend shares. Subclasses implement `_chat` (one call, errors classified)."""

    kind: BackendKind

    def __init__(self, settings: Settings, metrics: Metrics, name: str) -> None:
        self.settings = settings
        self.metrics = metrics
        self.name = name
        self.breaker = Breaker(
            name,
            settings.breaker_failures,
            settings.breaker_cooldown_s,
            restart_window_s=settings.breaker_restart_window_s,
        )
        # One bound for every call to this backend, from every request: the smaller of the setting and
        # the parallel slots the engine has, when we know them.
        self._limiter = Bound(settings.max_concurrency)
        self._slots: int | None = None
        # What the engine really computes at once, from the timings it reports (rolling, per backend).
        self.meter = ParallelismMeter(max(8, 2 * settings.max_concurrency))
        self._advised = False
        # Send the answer's JSON schema until the server rejects it (remembered per backend).
        self.structured = True

    @property
    def slots(self) -> int | None:
        return self._slots

    def set_slots(self, slots: int | None) -> None:
        self._slots = slots if slots and slots > 0 else None
        self._limiter.capacity = min(self.settings.max_concurrency, self._slots or self.settings.max_concurrency)

    @property
    def concurrency(self) -> int:
        return self._limiter.capacity

    @property
    def measured_parallelism(self) -> float | None:
        return self.meter.measured

    @property
    def is_ollama(self) -> bool:
        """Whether the engine is Ollama (its advice names OLLAMA_NUM_PARALLEL)."""
        return False

    def parallelism_advice(self) -> str | None:
        """How to get more than one line computed at once, when the engine stays near one while we send more."""
        measured = self.meter.measured
        if measured is None or not self.meter.serial or self.settings.max_concurrency < 2:
            return None
        return advice(measured, self.settings.max_concurrency, ollama=self.is_ollama)

    def _observe(self, reply: ChatReply) -> None:
        """Feed a call's reported timings to the meter; let the bound follow; advise once."""
        stay = reply.stay()
        if stay is None:
            return  # the engine reports nothing: nothing measured, behaviour unchanged
        self.meter.record(stay)
        if self.settings.adapt_concurrency:
            size = follow_engine(
                self._limiter.capacity,
                self.meter.measured,
                self.meter.engine_bound,
                self._slots,
                self.settings.max_concurrency,
            )
            if size != self._limiter.capacity:
                log.info(
                    "%s computes about %s call(s) at once (%s sent): at most %d in flight now",
                    self.name, self.meter.measured, self.meter.sent, size,
                )  # fmt: skip
                self._limiter.capacity = size
        if not self._advised:
            text = self.parallelism_advice()
            if text is not None:
                self._advised = True
                log.warning("%s: %s", self.name, text)

    @property
    def multi_completion(self) -> bool:
        """Whether one request can return several completions (`ChatRequest.n`)."""
        return False

    async def chat(self, request: ChatRequest, on_send: Callable[[], None] | None = None) -> ChatReply:
        """One chat call: through the breaker (fails at once while it is open), under the backend's
        concurrency bound, with structured output while the server accepts it. `on_send` runs under the
        slot right before the request goes out; it may refuse the call by raising BackendCallError (which
        then says nothing about the backend)."""
        deadline = None
        if request.deadline is not None:
            deadline = self.breaker.now() + request.deadline - asyncio.get_running_loop().time()
        for _ in range(1000):  # bounded: a turn per probe that found the engine still restarting
            probe = await self.breaker.admit(deadline)
            verdict = False
            sent_at = self.breaker.now()
            arrived = time.perf_counter()
            try:
                async with self._limiter:
                    service_wait = time.perf_counter() - arrived
                    self.breaker.recheck(probe)
                    if on_send is not None:
                        on_send()
                    verdict = True
                    sent_at = self.breaker.now()
                    # Each extra completion holds one more slot of the bound, taken only if free now: never
                    # more in flight than the engine can take.
                    extra = 0
                    while extra < request.n - 1 and self.multi_completion and self._limiter.try_acquire():
                        extra += 1
                    sent = replace(request, n=1 + extra)
                    self.metrics.in_flight.inc()
                    started = time.perf_counter()
                    try:
                        reply = await self._chat_structured(sent)
                    finally:
                        for _ in range(extra):
                            self._limiter.release()
                        self.metrics.in_flight.dec()
                        answered = time.perf_counter()
                        self.metrics.backend_latency.observe(answered - started)
                    reply = replace(
                        reply,
                        timings=replace(reply.timings or CallTimings(), service_wait=service_wait),
                        sent_at=started,
                        answered_at=answered,
                    )
                    self._observe(reply)
            except BackendCallError as exc:
                if not verdict:
                    self.breaker.abandon(probe)
                    if exc.kind is ErrorKind.BREAKER_OPEN and deadline is not None and self.breaker.restarting():
                        continue  # it opened while this call waited for a slot: wait for its probe instead
                    raise
                self.breaker.record(exc.kind, probe, str(exc), sent_at=sent_at, refused=exc.refused)
                if exc.refused and deadline is not None and self.breaker.restarting():
                    # The request never reached the engine, still restarting: wait for the next probe.
                    continue
                raise
            except BaseException:
                self.breaker.abandon(probe)
                raise
            self.breaker.record(None, probe)
            return reply
        raise BackendCallError(ErrorKind.BREAKER_OPEN, f"{self.name} kept refusing connections")

    async def _chat_structured(self, request: ChatRequest) -> ChatReply:
        if request.answer_schema is None or not self.structured:
            return await self._chat(replace(request, answer_schema=None))
        try:
            return await self._chat(request)
        except BackendCallError as exc:
            if exc.kind is not ErrorKind.REJECTED:
                raise
            first = exc
        # A 400 to a request with a schema: try once without it. If that works, the server does not
        # support structured output, and every later call goes without it.
        try:
            reply = await self._chat(replace(request, answer_schema=None))
        except BackendCallError as exc:
            if exc.kind is ErrorKind.REJECTED:
                raise first from None  # the 400 was about something else
            raise
        self.structured = False
        log.warning("%s rejected structured output (%s): sending the prompt-only form from now on", self.name, first)
        return reply

    async def _chat(self, request: ChatRequest) -> ChatReply:
        """One call to the engine, its failures classified (each backend module)."""
        raise NotImplementedError

    def describe_common(self) -> dict[str, Any]:
        return {
            "breaker": self.breaker.describe(),
            "structured_output": self.structured,
            "slots": self._slots,
            "concurrency": self.concurrency,
            "measured_parallelism": self.meter.measured,
            "sent_parallelism": self.meter.sent,
        }


@dataclass(frozen=True)
class BackendHandle:
    """What a batch runs on, fixed when the batch starts and kept to its end: the engine, the model (the
    name sent is the model answering: the embedded llama-server's alias is its GGUF's own name), what it
    can do and why it was chosen. Nothing a batch depends on is
    looked up again on a shared object that could change under it."""

    backend: Backend
    model: str
    thinking_capable: bool
    demo: bool
    model_reason: str

    @property
    def kind(self) -> BackendKind:
        return self.backend.kind
