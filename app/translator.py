"""The translator: fan-out under one shared bound, retries, re-asks, time budgets, cache and single-flight.

Every route, the stream and the CLI call `Translator.run`. Guarantees:
- at most `max_concurrency` backend calls in flight for the whole service (one semaphore, released while
  a retry backs off);
- every task comes back, in request order, with a result; a failed item has `translation=None`;
- time is bounded per call, per item (from its first call, retries included) and per request;
- when the backend stops answering (several timeouts/refused connections in a row), the rest of the
  batch fails fast with that error; the next request probes again;
- identical items (same cache key) share one computation ("flight"), within a request and across
  concurrent requests; a flight is cancelled only when the last item waiting on it has gone;
- good results are cached; a cached item costs no backend call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from app.backend import ModelInfo, Supervisor
from app.cache import CachedValue, ResultCache, cache_key
from app.dubbing import HARD_RULES, Fitness, assess, better, length_budget
from app.errors import (
    BackendBusy,
    BackendCallError,
    BackendConnectionError,
    BackendRejected,
    BackendServerError,
    BackendTimeout,
    ModelMissing,
    ThinkingExhausted,
    UnusableOutput,
)
from app.languages import Language, UnknownLanguage, resolve_language
from app.metrics import Metrics
from app.prompt import (
    PROMPT_VERSION,
    Message,
    UnusableAnswer,
    build_messages,
    copies_example,
    glossary_for,
    parse_answer,
    reask_messages,
    strip_thinking,
)
from app.schemas import ItemResult, RetranslateRequest, RetranslateResponse, Summary
from app.settings import Settings

log = logging.getLogger(__name__)

SHUTTING_DOWN = "the service is shutting down"

# (index in the request, result, items done so far, total)
ResultCallback = Callable[[int, ItemResult, int, int], None]


@dataclass(frozen=True)
class Job:
    """One line to translate."""

    task_id: str
    source: str
    target_language: str
    max_length: int | None = None
    context: Sequence[str] | None = None


@dataclass
class _Batch:
    """One request's shared state."""

    model: ModelInfo
    max_tokens: int
    deadline: float | None  # loop time
    deadline_s: float | None
    glossary: Mapping[str, object] | None
    use_cache: bool
    total: int
    done: int = 0
    consecutive_failures: int = 0
    broken: str | None = None
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Outcome:
    """What a flight produced: the best answer seen, or why there is none."""

    attempts: int = 0
    best: str | None = None
    best_fitness: Fitness | None = None
    error: str | None = None


@dataclass
class _Flight:
    task: asyncio.Task[_Outcome]
    outcome: _Outcome
    waiters: int = 0


@dataclass(frozen=True)
class _Prepared:
    lang: Language
    budget: int | None
    glossary: dict[str, str]
    key: str


def glossary_terms(glossary: Mapping[str, object] | None, lang: Language) -> dict[str, str] | None:
    """The glossary that applies to `lang`: a flat {term: rendering}, or the language's own section."""
    if not glossary:
        return None
    section = glossary.get(lang.code)
    if isinstance(section, Mapping):
        return {str(k): str(v) for k, v in section.items()}
    flat = {str(k): str(v) for k, v in glossary.items() if isinstance(v, str)}
    return flat or None


class Translator:
    def __init__(
        self,
        settings: Settings,
        supervisor: Supervisor,
        cache: ResultCache | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.cache = cache if cache is not None else ResultCache(0, None)
        self.metrics = metrics if metrics is not None else Metrics()
        self.draining = False
        # One bound for the whole service, not per HTTP request: two editors' batches share it.
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._flights: dict[str, _Flight] = {}
        self._pending_writes: set[asyncio.Task[None]] = set()

    async def retranslate(
        self,
        body: RetranslateRequest,
        model: ModelInfo | None = None,
        on_result: ResultCallback | None = None,
    ) -> RetranslateResponse:
        """Serve one /retranslate request. `model` comes from `supervisor.ensure_ready` (called here when
        the caller has not already done so, e.g. to answer 503 before a stream starts)."""
        if model is None:
            model = await self.supervisor.ensure_ready(body.model)
        jobs = [Job(t.task_id, t.source, t.target_language, t.max_length, t.context) for t in body.tasks]
        try:
            results, summary = await self.run(
                jobs,
                model,
                deadline_s=body.deadline_s,
                glossary=body.glossary,
                use_cache=body.use_cache,
                on_result=on_result,
            )
        finally:
            if body.unload_after:
                # Voice cloning runs next on the same GPU: free it even when the batch failed.
                await asyncio.shield(self.supervisor.unload(model.name))
        return RetranslateResponse(model=model.answering, backend=model.backend, results=results, summary=summary)

    async def run(
        self,
        jobs: Sequence[Job],
        model: ModelInfo,
        *,
        deadline_s: float | None = None,
        glossary: Mapping[str, object] | None = None,
        use_cache: bool = True,
        on_result: ResultCallback | None = None,
    ) -> tuple[list[ItemResult], Summary]:
        """Translate `jobs`; results in request order, whatever happened."""
        loop = asyncio.get_running_loop()
        max_tokens = self.settings.max_output_tokens
        if model.thinking_capable:
            # A model that obeys "no thinking" stops early anyway; one that cannot stop needs room to
            # reach its answer.
            max_tokens += self.settings.thinking_tokens
        batch = _Batch(
            model=model,
            max_tokens=max_tokens,
            deadline=None if deadline_s is None else loop.time() + deadline_s,
            deadline_s=deadline_s,
            glossary=glossary,
            use_cache=use_cache,
            total=len(jobs),
        )

        async def one(index: int, job: Job) -> ItemResult:
            result = await self._item(job, batch)
            outcome = "cached" if result.cached else "succeeded" if result.success else "failed"
            self.metrics.tasks.labels(outcome).inc()
            batch.done += 1
            self._log_item(batch, result)
            if on_result is not None:
                on_result(index, result, batch.done, batch.total)
            return result

        results = list(await asyncio.gather(*(one(i, job) for i, job in enumerate(jobs))))
        summary = summarize(results, time.monotonic() - batch.started)
        log.info(
            "done: %d tasks, %d succeeded, %d failed, %.2f s total, %.2f s per line",
            summary.total, summary.succeeded, summary.failed, summary.elapsed, summary.avg_per_task,
        )  # fmt: skip
        return results, summary

    @staticmethod
    def _log_item(batch: _Batch, r: ItemResult) -> None:
        if not log.isEnabledFor(logging.INFO):
            return  # cheap at high N when progress lines are off
        k, n = batch.done, batch.total
        if r.success:
            log.info("[%d/%d] ✓ %s: %s -> %s (%.2fs)", k, n, r.task_id, r.source, r.translation, r.elapsed)
        else:
            log.info("[%d/%d] ✗ %s: %s: %s (%.2fs)", k, n, r.task_id, r.source, r.error, r.elapsed)

    # --- one item ------------------------------------------------------------------------------------

    def _prepare(self, job: Job, batch: _Batch, lang: Language) -> _Prepared:
        budget = length_budget(job.source, lang, job.max_length)
        terms = glossary_for(job.source, glossary_terms(batch.glossary, lang))
        key = cache_key(
            backend=batch.model.backend,
            model=batch.model.answering,
            prompt=PROMPT_VERSION,
            source=job.source,
            lang=lang.code,
            budget=budget,
            glossary=terms,
            context=list(job.context or []),
            temperature=self.settings.temperature,
            max_tokens=batch.max_tokens,
            max_reasks=self.settings.max_reasks,
        )
        return _Prepared(lang, budget, terms, key)

    async def _item(self, job: Job, batch: _Batch) -> ItemResult:
        started = time.monotonic()
        try:
            lang = resolve_language(job.target_language)
        except UnknownLanguage as exc:  # only the CLI lets these through: a failed item there
            return _failed(job, str(exc), started, attempts=0)
        prepared = self._prepare(job, batch, lang)
        if batch.use_cache:
            hit = self.cache.get(prepared.key)
            if hit is not None:
                self.metrics.cache_hits.inc()
                return _from_cache(job, hit, started)
        flight = self._flights.get(prepared.key)
        if flight is not None:
            self.metrics.dedup_joins.inc()
        else:
            outcome = _Outcome()
            task = asyncio.create_task(self._compute(job, prepared, batch, outcome))
            flight = _Flight(task, outcome)
            self._flights[prepared.key] = flight
            task.add_done_callback(functools.partial(self._land, prepared.key, flight))
        flight.waiters += 1
        try:
            async with asyncio.timeout_at(batch.deadline):
                # shield: this waiter leaving (deadline, client gone) must not cancel a flight others
                # still wait on; the `finally` below cancels it when nobody is left.
                outcome = await asyncio.shield(flight.task)
        except TimeoutError:
            never = "" if flight.outcome.attempts else " (it never reached the backend)"
            outcome = _Outcome(
                attempts=flight.outcome.attempts,
                best=flight.outcome.best,
                best_fitness=flight.outcome.best_fitness,
                error=f"the request's deadline_s of {batch.deadline_s:g} s passed before this item finished{never}",
            )
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()
        return self._result(job, prepared.lang, outcome, started)

    def _land(self, key: str, flight: _Flight, _task: object = None) -> None:
        """A flight ended: forget it and cache a good result."""
        if self._flights.get(key) is flight:
            del self._flights[key]
        if flight.task.cancelled() or flight.task.exception() is not None:
            return
        outcome = flight.task.result()
        fit = outcome.best_fitness
        if outcome.best is not None and fit is not None and fit.script_ok and fit.within_budget is not False:
            value: CachedValue = {
                "translation": outcome.best,
                "length": fit.length,
                "length_unit": fit.length_unit,
                "length_budget": fit.length_budget,
                "within_budget": fit.within_budget,
                "warnings": fit.warnings,
            }
            task = asyncio.get_running_loop().create_task(self.cache.put(key, value))
            self._pending_writes.add(task)
            task.add_done_callback(self._pending_writes.discard)

    async def _compute(self, job: Job, prepared: _Prepared, batch: _Batch, outcome: _Outcome) -> _Outcome:
        """Ask, check, retry and re-ask, within the item's own time bound (from its first call)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as scope:

                def start_clock() -> None:
                    # The item's clock starts at its first call: waiting for a slot behind a long batch
                    # is not the item's fault.
                    if scope.when() is None:
                        scope.reschedule(loop.time() + self.settings.item_timeout_s)

                await self._attempts(job, prepared, batch, outcome, start_clock)
        except TimeoutError:
            last = f"; last error: {outcome.error}" if outcome.error else ""
            outcome.error = (
                f"the item timed out after {self.settings.item_timeout_s:g} s (RETRANSLATE_ITEM_TIMEOUT_S); "
                f"{outcome.attempts} backend call(s) made{last}"
            )
        except Exception as exc:  # a bug must cost one item, never the batch
            log.exception("unexpected error translating %s", job.task_id)
            outcome.error = f"internal error: {type(exc).__name__}: {exc}"
        return outcome

    async def _attempts(
        self,
        job: Job,
        prepared: _Prepared,
        batch: _Batch,
        outcome: _Outcome,
        start_clock: Callable[[], None],
    ) -> None:
        lang, budget = prepared.lang, prepared.budget
        first = build_messages(job.source, lang, budget, prepared.glossary, job.context)
        messages = first
        retries = reasks = 0
        while True:
            stop = self._stop_reason(batch)
            if stop is not None:
                outcome.error = _broken_error(stop, outcome)
                return
            try:
                text = await self._call(messages, batch, outcome, start_clock)
                if copies_example(text, job.source, lang):
                    # Small models sometimes copy a few-shot answer instead of translating the line.
                    raise UnusableOutput(f"the model repeated the prompt's example answer {text!r}")
            except BackendCallError as exc:
                outcome.error = str(exc)
                if not exc.transient or retries >= self.settings.max_retries:
                    return
                retries += 1
                self.metrics.retries.inc()
                await asyncio.sleep(self._backoff(retries, exc.retry_after))
                continue
            fitness = assess(text, job.source, lang, budget)
            if better(fitness, outcome.best_fitness):
                outcome.best, outcome.best_fitness = text, fitness
            if fitness.acceptable or reasks >= self.settings.max_reasks:
                return
            reasks += 1
            self.metrics.reasks.inc()
            messages = first + reask_messages(text, fitness, lang)

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.settings.retry_backoff_max_s)
        base = self.settings.retry_backoff_s * (2 ** (retry - 1))
        # Jitter: retries of many items that failed together do not come back together.
        return min(self.settings.retry_backoff_max_s, random.uniform(base / 2, base * 1.5))

    async def _call(
        self, messages: list[Message], batch: _Batch, outcome: _Outcome, start_clock: Callable[[], None]
    ) -> str:
        """One backend call under the shared bound; returns the parsed translation."""
        async with self._slots:
            stop = self._stop_reason(batch)
            if stop is not None:
                raise _Broken(_broken_error(stop, outcome))
            start_clock()
            outcome.attempts += 1
            self.metrics.in_flight.inc()
            started = time.perf_counter()
            try:
                reply = await self.supervisor.chat.chat(
                    batch.model.name,
                    messages,
                    max_tokens=batch.max_tokens,
                    temperature=self.settings.temperature,
                    timeout_s=self.settings.request_timeout_s,
                )
            except BackendCallError as exc:
                self.metrics.backend_calls.labels(_call_status(exc)).inc()
                if exc.breaker:
                    batch.consecutive_failures += 1
                    if batch.consecutive_failures >= self.settings.breaker_failures and batch.broken is None:
                        batch.broken = f"{batch.consecutive_failures} calls in a row failed; last: {exc}"
                        log.error("backend stopped answering: failing the rest of the batch fast (%s)", exc)
                raise
            finally:
                self.metrics.in_flight.dec()
                self.metrics.backend_latency.observe(time.perf_counter() - started)
            batch.consecutive_failures = 0
        try:
            text = self._interpret(reply.content, reply.thinking, reply.finish_reason, batch)
        except BackendCallError as exc:
            self.metrics.backend_calls.labels(_call_status(exc)).inc()
            raise
        self.metrics.backend_calls.labels("ok").inc()
        return text

    def _stop_reason(self, batch: _Batch) -> str | None:
        """Why no new backend call may start for this batch, if any."""
        if self.draining:
            return SHUTTING_DOWN
        return batch.broken

    def drain(self) -> None:
        """Shutdown has begun: calls in flight finish, lines not yet sent fail at once with a reason."""
        self.draining = True

    def _interpret(self, content: str, thinking: str, finish_reason: str | None, batch: _Batch) -> str:
        model = batch.model.name
        rest, tagged = strip_thinking(content)
        thought = bool(thinking.strip()) or tagged
        if thought:
            self.supervisor.note_thinking(model)
        if finish_reason == "length":
            if thought and not rest:
                raise ThinkingExhausted(
                    f"model {model} spent its whole allowance of {batch.max_tokens} tokens thinking and "
                    "gave no answer; it thinks whatever the request says. Fix: `ollama pull "
                    "qwen3:4b-instruct-2507-q4_K_M` and set RETRANSLATE_MODEL=qwen3:4b-instruct-2507-q4_K_M"
                )
            raise UnusableOutput(f"the answer was cut off at the output cap of {batch.max_tokens} tokens")
        try:
            text = parse_answer(content).text
        except UnusableAnswer as exc:
            raise UnusableOutput(str(exc)) from None
        return text

    @staticmethod
    def _result(job: Job, lang: Language, outcome: _Outcome, started: float) -> ItemResult:
        elapsed = round(time.monotonic() - started, 3)
        fit = outcome.best_fitness
        if outcome.best is None or fit is None:
            return _failed(job, outcome.error or "no answer", started, outcome.attempts)
        common = {
            "task_id": job.task_id,
            "source": job.source,
            "elapsed": elapsed,
            "attempts": outcome.attempts,
            "length": fit.length,
            "length_unit": fit.length_unit,
            "length_budget": fit.length_budget,
            "within_budget": fit.within_budget,
            "warnings": fit.warnings,
        }
        if not fit.script_ok:
            # The editor dubs every non-empty translation: an answer in the wrong script must not reach it.
            reasons = "; ".join(HARD_RULES[c] for c in fit.hard_failures)
            error = f"no acceptable answer after {outcome.attempts} call(s): {reasons}"
            return ItemResult(translation=None, success=False, error=error, **common)
        return ItemResult(translation=outcome.best, success=True, error=None, **common)


class _Broken(BackendCallError):
    transient = False


def _broken_error(reason: str, outcome: _Outcome) -> str:
    if reason == "the service is shutting down":
        return (
            f"not attempted: {reason}" if outcome.attempts == 0 else f"gave up: {reason}; last error: {outcome.error}"
        )
    if outcome.attempts == 0:
        return f"not attempted: the backend stopped answering ({reason})"
    return f"gave up: the backend stopped answering ({reason}); this item's last error: {outcome.error}"


_STATUS_BY_ERROR: dict[type[BackendCallError], str] = {
    BackendTimeout: "timeout",
    BackendConnectionError: "connection",
    BackendBusy: "busy",
    BackendServerError: "server_error",
    UnusableOutput: "unusable",
    ThinkingExhausted: "thinking_exhausted",
    ModelMissing: "model_missing",
    BackendRejected: "rejected",
}


def _call_status(exc: BackendCallError) -> str:
    for kind in type(exc).__mro__:
        if kind in _STATUS_BY_ERROR:
            return _STATUS_BY_ERROR[kind]
    return "error"


def _failed(job: Job, error: str, started: float, attempts: int) -> ItemResult:
    return ItemResult(
        task_id=job.task_id,
        source=job.source,
        translation=None,
        success=False,
        elapsed=round(time.monotonic() - started, 3),
        error=error,
        attempts=attempts,
    )


def _from_cache(job: Job, hit: CachedValue, started: float) -> ItemResult:
    return ItemResult(
        task_id=job.task_id,
        source=job.source,
        success=True,
        elapsed=round(time.monotonic() - started, 3),
        error=None,
        attempts=0,
        cached=True,
        **hit,
    )


def summarize(results: Sequence[ItemResult], elapsed: float) -> Summary:
    succeeded = sum(1 for r in results if r.success)
    return Summary(
        total=len(results),
        succeeded=succeeded,
        failed=len(results) - succeeded,
        elapsed=round(elapsed, 3),
        avg_per_task=round(elapsed / len(results), 3) if results else 0.0,
    )
