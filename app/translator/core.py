"""Batches: fan-out, retries, re-asks, time budgets, cache and single-flight.

Every route, the stream and the CLI run batches through `Translator.run` with the handle the selector gave
the batch. Guarantees:
- every task comes back, in request order, with a result; a failed item has `translation=None` and an
  `error_code`;
- the fan-out is structured (a TaskGroup): nothing of a batch keeps running unobserved after it ends;
- at most the backend's bound of calls in flight for the whole service (the backend enforces it);
- time is bounded per call, per item (from its first call, retries included) and per request;
- identical items share one computation ("flight"), within a request and across concurrent requests;
- good results are cached; a cached item costs no backend call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app import langid
from app.backends.base import BackendHandle, ChatReply, ChatRequest
from app.backends.parallelism import Stay, parallelism
from app.backends.timings import CallTimings
from app.cache import CachedValue, ResultCache, cache_key
from app.dubbing import Fitness, better, length_budget
from app.errors import BackendCallError, ErrorKind
from app.languages import Language, UnknownLanguage, resolve_language
from app.metrics import Metrics
from app.prompt import ANSWER_SCHEMA, PROMPT_VERSION, Message, build_messages, glossary_for, reask_messages
from app.schemas import ItemResult, Summary, Timings
from app.settings import Settings
from app.translator import candidates
from app.translator.answers import Answer, has_thinking, interpret, judge
from app.translator.flights import Flight, Flights
from app.translator.retry import RetryPolicy

log = logging.getLogger(__name__)

SHUTTING_DOWN = "the service is shutting down"

TIMING_PARTS = ("service_wait", "engine_wait", "load", "prompt", "generate")

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
    """One request's shared state: its handle, time budget and options. No backend state lives here."""

    handle: BackendHandle
    max_tokens: int
    deadline: float | None  # loop time
    deadline_s: float | None
    glossary: Mapping[str, object] | None
    use_cache: bool
    total: int
    # Answers asked at once when a line's answer misses (1: one re-ask at a time).
    candidates: int = 1
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    # Each answered call's stay at the engine (when it reported its compute): the batch's engine_parallelism.
    stays: list[Stay] = field(default_factory=list)


@dataclass
class _Outcome:
    """What a flight has produced so far: the best answer seen, or why there is none."""

    attempts: int = 0
    # Model answers the kept one was chosen from (every answer of the line competes).
    considered: int = 0
    best: str | None = None
    best_fitness: Fitness | None = None
    error: str | None = None
    error_kind: ErrorKind | None = None
    # Seconds per part summed over the answered calls; a part stays absent until some call measured it.
    timings: dict[str, float] = field(default_factory=dict)

    def add_timings(self, timings: CallTimings | None) -> None:
        for part in TIMING_PARTS:
            value = getattr(timings, part) if timings is not None else None
            if value is not None:
                self.timings[part] = self.timings.get(part, 0.0) + value

    def fail(self, kind: ErrorKind, error: str) -> None:
        self.error_kind, self.error = kind, error


@dataclass(frozen=True)
class _Prepared:
    lang: Language
    budget: int | None
    glossary: dict[str, str]
    key: str


@dataclass
class _Line:
    """One computation's calls: what they are for, the seeds they sent and the retries they spent."""

    job: Job
    prepared: _Prepared
    batch: _Batch
    outcome: _Outcome
    start_clock: Callable[[], None]
    seeds: candidates.Seeds
    retries: int = 0


class _Call:
    """A call in progress, so that a shutdown can cut it: at once if it was not sent yet, after the
    grace if it was (by cancelling its task; `_call` turns that cancellation into SHUTTING_DOWN)."""

    __slots__ = ("cut", "sent", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.sent = False
        self.cut = False


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
        cache: ResultCache | None = None,
        metrics: Metrics | None = None,
        on_thinking: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache if cache is not None else ResultCache(0, None)
        self.metrics = metrics if metrics is not None else Metrics()
        self._on_thinking = on_thinking or (lambda model: None)
        self.retry = RetryPolicy(settings.max_retries, settings.retry_backoff_s, settings.retry_backoff_max_s)
        self.draining = False
        self._flights: Flights[_Outcome, _Outcome] = Flights(self._land)
        self._calls: set[_Call] = set()
        self._pending_writes: set[asyncio.Task[None]] = set()
        self._drain_timer: asyncio.TimerHandle | None = None

    # --- a batch -------------------------------------------------------------------------------------------

    async def run(
        self,
        jobs: Sequence[Job],
        handle: BackendHandle,
        *,
        deadline_s: float | None = None,
        glossary: Mapping[str, object] | None = None,
        use_cache: bool = True,
        on_result: ResultCallback | None = None,
        candidates: int | None = None,
    ) -> tuple[list[ItemResult], Summary]:
        """Translate `jobs` on `handle`; results in request order, whatever happened. `candidates`: answers
        asked at once for a line that missed (unset: RETRANSLATE_CANDIDATES)."""
        loop = asyncio.get_running_loop()
        max_tokens = self.settings.max_output_tokens
        if handle.thinking_capable:
            # A model that obeys "no thinking" stops early anyway; one that cannot stop needs room to reach
            # its answer.
            max_tokens += self.settings.thinking_tokens
        batch = _Batch(
            handle=handle,
            max_tokens=max_tokens,
            deadline=None if deadline_s is None else loop.time() + deadline_s,
            deadline_s=deadline_s,
            glossary=glossary,
            use_cache=use_cache,
            total=len(jobs),
            candidates=self.settings.candidates if candidates is None else max(1, candidates),
        )
        results: list[ItemResult | None] = [None] * len(jobs)

        async def one(index: int, job: Job) -> None:
            result = await self._item(job, batch)
            results[index] = result
            outcome = "cached" if result.cached else "succeeded" if result.success else "failed"
            self.metrics.tasks.labels(outcome).inc()
            for part, seconds in result.timings.model_dump().items():
                if seconds is not None:
                    self.metrics.item_timings.labels(part).observe(seconds)
            batch.done += 1
            self._log_item(batch, result)
            if on_result is not None:
                on_result(index, result, batch.done, batch.total)

        # Structured: if anything here fails or the request is cancelled, no item task outlives the batch.
        async with asyncio.TaskGroup() as group:
            for index, job in enumerate(jobs):
                group.create_task(one(index, job))
        final = [r for r in results if r is not None]
        assert len(final) == len(jobs)
        summary = summarize(final, time.monotonic() - batch.started, parallelism(batch.stays))
        log.info(
            "done: %d tasks, %d succeeded, %d failed, %.2f s total, %.2f s per line",
            summary.total, summary.succeeded, summary.failed, summary.elapsed, summary.avg_per_task,
        )  # fmt: skip
        return final, summary

    @staticmethod
    def _log_item(batch: _Batch, r: ItemResult) -> None:
        if not log.isEnabledFor(logging.INFO):
            return  # cheap at high N when progress lines are off
        k, n = batch.done, batch.total
        if r.success:
            log.info("[%d/%d] ✓ %s: %s -> %s (%.2fs)", k, n, r.task_id, r.source, r.translation, r.elapsed)
        else:
            log.info("[%d/%d] ✗ %s: %s: %s (%.2fs)", k, n, r.task_id, r.source, r.error, r.elapsed)

    # --- one item --------------------------------------------------------------------------------------------

    def _prepare(self, job: Job, batch: _Batch, lang: Language) -> _Prepared:
        budget = length_budget(job.source, lang, job.max_length)
        terms = glossary_for(job.source, glossary_terms(batch.glossary, lang), self.settings.max_prompt_glossary_chars)
        handle = batch.handle
        key = cache_key(
            backend=handle.kind,
            model=handle.model,
            prompt=PROMPT_VERSION,
            structured=handle.backend.structured,
            source=job.source,
            lang=lang.code,
            budget=budget,
            glossary=terms,
            context=list(job.context or []),
            temperature=self.settings.temperature,
            max_tokens=batch.max_tokens,
            max_reasks=self.settings.max_reasks,
            candidates=batch.candidates,
        )
        return _Prepared(lang, budget, terms, key)

    async def _item(self, job: Job, batch: _Batch) -> ItemResult:
        started = time.monotonic()
        try:
            return await self._item_inner(job, batch, started)
        except Exception as exc:  # a bug must cost one item, never the batch
            log.exception("unexpected error translating %s", job.task_id)
            return _failed(job, ErrorKind.INTERNAL, f"internal error: {type(exc).__name__}", started, attempts=0)

    async def _item_inner(self, job: Job, batch: _Batch, started: float) -> ItemResult:
        try:
            lang = resolve_language(job.target_language)
        except UnknownLanguage as exc:  # only the CLI lets these through: a failed item there
            return _failed(job, ErrorKind.INVALID_TASK, str(exc), started, attempts=0)
        prepared = self._prepare(job, batch, lang)
        if lang.latin:
            await langid.ready()  # the rules of a Latin-script answer need the language identifier
        if batch.use_cache:
            hit = self._trusted_hit(prepared, job)
            if hit is not None:
                self.metrics.cache_hits.inc()
                return _from_cache(job, hit, started)

        flight, joined = self._flights.join(prepared.key, self._starter(job, prepared, batch), _Outcome())
        if joined:
            self.metrics.dedup_joins.inc()
        try:
            outcome = await self._flights.wait(flight, batch.deadline)
        except TimeoutError:
            progress = flight.progress
            never = "" if progress.attempts else " (it never reached the backend)"
            outcome = _Outcome(
                attempts=progress.attempts,
                considered=progress.considered,
                best=progress.best,
                best_fitness=progress.best_fitness,
                timings=dict(progress.timings),
            )
            outcome.fail(
                ErrorKind.DEADLINE,
                f"the request's deadline_s of {batch.deadline_s:g} s passed before this item finished{never}",
            )
        return self._result(job, prepared.lang, outcome, started)

    def _trusted_hit(self, prepared: _Prepared, job: Job) -> CachedValue | None:
        """A cached result, checked again as if a model had just answered it (the SQLite file may come from
        an older version, or be edited): anything that would not pass now is dropped and asked afresh."""
        hit = self.cache.get(prepared.key)
        if hit is None:
            return None
        translation = hit.get("translation") if isinstance(hit, dict) else None
        problem: str | None = None
        if not isinstance(translation, str) or set(hit) - _CACHED_FIELDS:
            problem = "it is not a cached result of this version (no translation, or other fields)"
        else:
            # The same judgement as a fresh answer, with the line's budget and language of today.
            verdict = judge(job.source, prepared.lang, translation, prepared.budget,
                            max_chars=self.settings.max_answer_chars)  # fmt: skip
            fit = verdict.fitness
            if not verdict.accepted or fit is None or not fit.acceptable or verdict.text != translation:
                problem = f"it would not pass as an answer now ({verdict.message or 'over its budget'})"
            else:
                hit = {"translation": translation, "length": fit.length, "length_unit": fit.length_unit,
                       "length_budget": fit.length_budget, "within_budget": fit.within_budget,
                       "warnings": fit.warnings}  # fmt: skip
        if problem is not None:
            log.warning("dropping a cached result for %s: %s", job.task_id, problem)
            self.cache.discard(prepared.key)
            return None
        return hit

    def _starter(
        self, job: Job, prepared: _Prepared, batch: _Batch
    ) -> Callable[[_Outcome], Coroutine[Any, Any, _Outcome]]:
        return lambda outcome: self._compute(job, prepared, batch, outcome)

    def _land(self, key: str, flight: Flight[_Outcome, _Outcome]) -> None:
        """A flight ended: cache a good result."""
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
                    # The item's clock starts at its first call: waiting for a slot behind a long batch is
                    # not the item's fault.
                    if scope.when() is None:
                        scope.reschedule(loop.time() + self.settings.item_timeout_s)

                await self._attempts(job, prepared, batch, outcome, start_clock)
        except TimeoutError:
            last = f"; last error: {outcome.error}" if outcome.error else ""
            outcome.fail(
                ErrorKind.ITEM_TIMEOUT,
                f"the item timed out after {self.settings.item_timeout_s:g} s (RETRANSLATE_ITEM_TIMEOUT_S); "
                f"{outcome.attempts} backend call(s) made{last}",
            )
        except Exception as exc:  # a bug must cost one item, never the batch
            log.exception("unexpected error translating %s", job.task_id)
            outcome.fail(ErrorKind.INTERNAL, f"internal error: {type(exc).__name__}")
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
        line = _Line(job, prepared, batch, outcome, start_clock, candidates.Seeds(prepared.key))
        got = await self._ask(first, line, self.settings.temperature)
        if got is None:
            return
        answer = self._consider(got[0], outcome)[0]
        reasks = 0
        while not answer.fitness.acceptable and reasks < self.settings.max_reasks:
            reasks += 1
            self.metrics.reasks.inc()
            messages = first + reask_messages(answer.text, answer.fitness, lang)
            answers = await self._round(messages, line)
            if not answers:
                return  # every candidate failed for good: its error is on the outcome
            self._consider(answers, outcome)
            answer = answers[candidates.pick([a.fitness for a in answers])]

    async def _round(self, messages: list[Message], line: _Line) -> list[Answer]:
        """One follow-up: k answers at once, each through the backend's bound like any call (a one-slot
        engine gets them one after another). Where one request can return several completions (llama-server
        `n`: one prompt evaluation), it asks them that way, as many as there are free slots, and the rest
        as calls of their own."""
        k = line.batch.candidates
        temps = candidates.temperatures(k, self.settings.temperature)
        answers: list[Answer] = []
        if k > 1 and line.batch.handle.backend.multi_completion:
            # One request, one seed: its completions are sampled apart, so all of them get the sampled
            # temperature (the line's first answer was the one at the configured temperature).
            got = await self._ask(messages, line, temps[-1], n=k)
            if got is None:
                return []
            answers += got[0]
            temps = temps[got[1] :]
        async with asyncio.TaskGroup() as group:
            asks = [group.create_task(self._ask(messages, line, t)) for t in temps]
        for ask in asks:
            result = ask.result()
            if result is not None:
                answers += result[0]
        return answers

    @staticmethod
    def _consider(answers: list[Answer], outcome: _Outcome) -> list[Answer]:
        """Count answers; the outcome keeps the best one seen for the line."""
        outcome.considered += len(answers)
        chosen = answers[candidates.pick([a.fitness for a in answers])]
        if better(chosen.fitness, outcome.best_fitness):
            outcome.best, outcome.best_fitness = chosen.text, chosen.fitness
        return answers

    async def _ask(
        self, messages: list[Message], line: _Line, temperature: float, n: int = 1
    ) -> tuple[list[Answer], int] | None:
        """One call's answers and how many completions it returned, retried on transient failures (the
        line's retries are shared by its calls); None when it failed for good (the reason is on the
        outcome)."""
        while True:
            try:
                return await self._call(messages, line, line.seeds.next(), temperature, n)
            except BackendCallError as exc:
                line.outcome.fail(exc.kind, self._call_error(exc, line.outcome))
                if not self.retry.should_retry(exc, line.retries):
                    return None
                line.retries += 1
                self.metrics.retries.inc()
                await asyncio.sleep(self.retry.backoff(line.retries, exc.retry_after))

    def _wait_deadline(self, batch: _Batch) -> float:
        """How long a line may wait for a restarting engine: the request's deadline, else an item's bound."""
        bound = asyncio.get_running_loop().time() + self.settings.item_timeout_s
        return bound if batch.deadline is None else min(bound, batch.deadline)

    @staticmethod
    def _call_error(exc: BackendCallError, outcome: _Outcome) -> str:
        if exc.kind in (ErrorKind.BREAKER_OPEN, ErrorKind.SHUTTING_DOWN):
            if outcome.attempts == 0:
                return f"not attempted: {exc}"
            return f"gave up: {exc}; this item's last error: {outcome.error}"
        return str(exc)

    async def _call(
        self, messages: list[Message], line: _Line, seed: int | None, temperature: float, n: int = 1
    ) -> tuple[list[Answer], int]:
        """One backend call, cut short by a shutdown; returns the reply's translations, judged (the first one
        usable, or the call fails; the others of a several-completion reply kept when usable), and how many
        completions came back."""
        if self.draining:
            raise BackendCallError(ErrorKind.SHUTTING_DOWN, SHUTTING_DOWN)
        job, prepared, batch, outcome = line.job, line.prepared, line.batch, line.outcome
        handle = batch.handle
        # Tracked, so that a shutdown can cut it (at once if not sent yet, after the grace if it was).
        task = asyncio.current_task()
        assert task is not None
        call = _Call(task)
        self._calls.add(call)

        def on_send() -> None:
            # Under the backend's slot, right before the request goes out.
            if self.draining:
                raise BackendCallError(ErrorKind.SHUTTING_DOWN, SHUTTING_DOWN)
            call.sent = True
            line.start_clock()
            outcome.attempts += 1

        try:
            request = ChatRequest(
                model=handle.model,
                messages=messages,
                max_tokens=batch.max_tokens,
                temperature=temperature,
                timeout_s=self.settings.request_timeout_s,
                answer_schema=ANSWER_SCHEMA,
                seed=seed,
                n=n,
                deadline=self._wait_deadline(batch),
            )
            reply = await handle.backend.chat(request, on_send)
            outcome.add_timings(reply.timings)
            stay = reply.stay()
            if stay is not None:
                batch.stays.append(stay)
        except asyncio.CancelledError:
            if not call.cut:
                raise  # the item's own bound, the request's deadline, a client gone: not ours to keep
            call.task.uncancel()
            if not call.sent:
                raise BackendCallError(ErrorKind.SHUTTING_DOWN, SHUTTING_DOWN) from None
            self.metrics.backend_calls.labels(ErrorKind.SHUTTING_DOWN.value).inc()
            raise BackendCallError(
                ErrorKind.SHUTTING_DOWN,
                f"{SHUTTING_DOWN}: the call did not finish within RETRANSLATE_SHUTDOWN_GRACE_S",
            ) from None
        except BackendCallError as exc:
            if exc.kind is not ErrorKind.BREAKER_OPEN or call.sent:
                self.metrics.backend_calls.labels(exc.kind.value).inc()
            raise
        finally:
            self._calls.discard(call)
        if has_thinking(reply):
            self._on_thinking(handle.model)

        def judged(r: ChatReply) -> Answer:
            return interpret(
                r,
                model=handle.model,
                max_tokens=batch.max_tokens,
                max_chars=self.settings.max_answer_chars,
                source=job.source,
                lang=prepared.lang,
                budget=prepared.budget,
            )

        try:
            answers = [judged(reply)]
        except BackendCallError as exc:
            self.metrics.backend_calls.labels(exc.kind.value).inc()
            raise
        self.metrics.backend_calls.labels("ok").inc()
        for other in reply.more:
            try:
                answers.append(judged(other))
            except BackendCallError:
                continue  # an unusable extra completion is one candidate fewer, not a failed call
        return answers, 1 + len(reply.more)

    # --- shutdown ------------------------------------------------------------------------------------------

    def drain(self, grace_s: float) -> None:
        """Shutdown has begun: lines not yet sent fail at once with a reason; calls already at the backend
        may finish within `grace_s`, then they are cut and their items fail with the same reason, so every
        batch still answers before the server closes its connections."""
        if self.draining:
            return
        self.draining = True
        loop = asyncio.get_running_loop()
        log.warning("draining: %d call(s) in flight get %g s to finish", len(self._calls), grace_s)
        self._cut(sent=False)
        self._drain_timer = loop.call_later(grace_s, self._cut, True)

    def _cut(self, sent: bool) -> None:
        for call in list(self._calls):
            if (sent or not call.sent) and not call.cut:
                call.cut = True
                call.task.cancel()

    async def close(self) -> None:
        """Let pending cache writes land (the lifespan closes the cache next)."""
        if self._drain_timer is not None:
            self._drain_timer.cancel()
        if self._pending_writes:
            await asyncio.gather(*self._pending_writes, return_exceptions=True)

    # --- results -----------------------------------------------------------------------------------------

    @staticmethod
    def _result(job: Job, lang: Language, outcome: _Outcome, started: float) -> ItemResult:
        elapsed = round(time.monotonic() - started, 3)
        fit = outcome.best_fitness
        if outcome.best is None or fit is None:
            kind = outcome.error_kind or ErrorKind.INTERNAL
            return _failed(job, kind, outcome.error or "no answer", started, outcome.attempts, outcome.timings)
        common = {
            "task_id": job.task_id,
            "source": job.source,
            "elapsed": elapsed,
            "attempts": outcome.attempts,
            "candidates_considered": outcome.considered,
            "length": fit.length,
            "length_unit": fit.length_unit,
            "length_budget": fit.length_budget,
            "within_budget": fit.within_budget,
            "warnings": fit.warnings,
            "timings": Timings(**_rounded(outcome.timings)),
        }
        if not fit.script_ok:
            # The editor dubs every non-empty translation: an answer that breaks a hard rule must not reach it.
            error = f"no acceptable answer after {outcome.attempts} call(s): {fit.reasons(lang)}"
            return ItemResult(
                translation=None, success=False, error=error, error_code=ErrorKind.RULE_VIOLATION.value, **common
            )
        return ItemResult(translation=outcome.best, success=True, error=None, error_code=None, **common)


def _rounded(timings: dict[str, float]) -> dict[str, float]:
    return {part: round(seconds, 4) for part, seconds in timings.items()}


def _failed(
    job: Job, kind: ErrorKind, error: str, started: float, attempts: int, timings: dict[str, float] | None = None
) -> ItemResult:
    return ItemResult(
        task_id=job.task_id,
        source=job.source,
        translation=None,
        success=False,
        elapsed=round(time.monotonic() - started, 3),
        error=error,
        error_code=kind.value,
        attempts=attempts,
        timings=Timings(**_rounded(timings or {})),
    )


# What a cached value holds (`_land`); a row with anything else was not written by this version.
_CACHED_FIELDS = frozenset({"translation", "length", "length_unit", "length_budget", "within_budget", "warnings"})


def _from_cache(job: Job, hit: CachedValue, started: float) -> ItemResult:
    return ItemResult(
        task_id=job.task_id,
        source=job.source,
        success=True,
        elapsed=round(time.monotonic() - started, 3),
        error=None,
        error_code=None,
        attempts=0,
        cached=True,
        **hit,
    )


def summarize(results: Sequence[ItemResult], elapsed: float, engine_parallelism: float | None = None) -> Summary:
    succeeded = sum(1 for r in results if r.success)
    return Summary(
        total=len(results),
        succeeded=succeeded,
        failed=len(results) - succeeded,
        elapsed=round(elapsed, 3),
        avg_per_task=round(elapsed / len(results), 3) if results else 0.0,
        engine_parallelism=None if engine_parallelism is None else round(engine_parallelism, 2),
    )
