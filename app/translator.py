"""The translator: fan-out under one shared bound, retries, re-asks, time budgets, per-item results.

Every route, the stream and the CLI call `Translator.run`. Guarantees:
- at most `max_concurrency` backend calls in flight for the whole service (one semaphore, released while
  a retry backs off);
- every task comes back, in request order, with a result; a failed item has `translation=None`;
- time is bounded per call, per item (from its first call, retries included) and per request;
- when the backend stops answering (several timeouts/refused connections in a row), the rest of the
  batch fails fast with that error; the next request probes again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from app.backend import ModelInfo, Supervisor
from app.dubbing import HARD_RULES, Fitness, assess, better, length_budget
from app.errors import BackendCallError, ThinkingExhausted, UnusableOutput
from app.languages import Language, UnknownLanguage, resolve_language
from app.prompt import (
    Message,
    UnusableAnswer,
    build_messages,
    glossary_for,
    parse_answer,
    reask_messages,
    strip_thinking,
)
from app.schemas import ItemResult, RetranslateRequest, RetranslateResponse, Summary
from app.settings import Settings

log = logging.getLogger(__name__)

ResultCallback = Callable[[int, ItemResult], None]


@dataclass(frozen=True)
class Job:
    """One line to translate, validated and resolved."""

    task_id: str
    source: str
    target_language: str
    max_length: int | None = None
    context: Sequence[str] | None = None


@dataclass
class _Batch:
    model: ModelInfo
    max_tokens: int
    deadline: float | None  # loop time
    deadline_s: float | None
    glossary: Mapping[str, object] | None
    total: int
    done: int = 0
    consecutive_failures: int = 0
    broken: str | None = None
    started: float = field(default_factory=time.monotonic)


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
    def __init__(self, settings: Settings, supervisor: Supervisor) -> None:
        self.settings = settings
        self.supervisor = supervisor
        # One bound for the whole service, not per HTTP request: two editors' batches share it.
        self._slots = asyncio.Semaphore(settings.max_concurrency)

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
                jobs, model, deadline_s=body.deadline_s, glossary=body.glossary, on_result=on_result
            )
        finally:
            if body.unload_after:
                # Voice cloning runs next on the same GPU: free it even when the batch failed.
                await asyncio.shield(self.supervisor.unload(model.name))
        return RetranslateResponse(model=model.answering, backend=model.backend, results=results, summary=summary)

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.settings.retry_backoff_max_s)
        base = self.settings.retry_backoff_s * (2 ** (retry - 1))
        # Full jitter: retries of many items that failed together do not return together.
        return min(self.settings.retry_backoff_max_s, random.uniform(base / 2, base * 1.5))

    async def run(
        self,
        jobs: Sequence[Job],
        model: ModelInfo,
        *,
        deadline_s: float | None = None,
        glossary: Mapping[str, object] | None = None,
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
            total=len(jobs),
        )

        async def one(index: int, job: Job) -> ItemResult:
            result = await self._item(job, batch)
            batch.done += 1
            self._log_item(batch, result)
            if on_result is not None:
                on_result(index, result)
            return result

        results = list(await asyncio.gather(*(one(i, job) for i, job in enumerate(jobs))))
        summary = summarize(results, time.monotonic() - batch.started)
        log.info(
            "done: %d tasks, %d succeeded, %d failed, %.2f s total, %.2f s per line",
            summary.total,
            summary.succeeded,
            summary.failed,
            summary.elapsed,
            summary.avg_per_task,
        )
        return results, summary

    @staticmethod
    def _log_item(batch: _Batch, r: ItemResult) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        if r.success:
            log.info(
                "[%d/%d] ✓ %s: %s -> %s (%.2fs)",
                batch.done,
                batch.total,
                r.task_id,
                r.source,
                r.translation,
                r.elapsed,
            )
        else:
            log.info(
                "[%d/%d] ✗ %s: %s: %s (%.2fs)",
                batch.done,
                batch.total,
                r.task_id,
                r.source,
                r.error,
                r.elapsed,
            )

    async def _item(self, job: Job, batch: _Batch) -> ItemResult:
        started = time.monotonic()
        try:
            lang = resolve_language(job.target_language)
        except UnknownLanguage as exc:  # only the CLI lets these through: a failed item there
            return _failed(job, str(exc), started, attempts=0)
        budget = length_budget(job.source, lang, job.max_length)
        state = _ItemState()
        loop = asyncio.get_running_loop()
        item_deadline: float | None = None
        try:
            async with asyncio.timeout_at(batch.deadline) as scope:

                def start_clock() -> None:
                    # The item's own clock starts at its first call: waiting for a slot behind a long
                    # batch is not the item's fault.
                    nonlocal item_deadline
                    if item_deadline is None:
                        item_deadline = loop.time() + self.settings.item_timeout_s
                        scope.reschedule(min(item_deadline, batch.deadline or item_deadline))

                await self._attempts(job, lang, budget, batch, state, start_clock)
        except TimeoutError:
            now = loop.time()
            if (
                batch.deadline is not None
                and now >= batch.deadline - 1e-3
                and (item_deadline is None or batch.deadline <= item_deadline)
            ):
                never = "" if state.attempts else " (it never reached the backend)"
                state.error = (
                    f"the request's deadline_s of {batch.deadline_s:g} s passed before this item finished{never}"
                )
            else:
                state.error = (
                    f"the item timed out after {self.settings.item_timeout_s:g} s (RETRANSLATE_ITEM_TIMEOUT_S); "
                    f"{state.attempts} backend call(s) made"
                )
        return self._result(job, lang, state, started)

    async def _attempts(
        self,
        job: Job,
        lang: Language,
        budget: int | None,
        batch: _Batch,
        state: _ItemState,
        start_clock: Callable[[], None],
    ) -> None:
        first = build_messages(
            job.source,
            lang,
            budget,
            glossary_for(job.source, glossary_terms(batch.glossary, lang)),
            job.context,
        )
        messages = first
        retries = reasks = 0
        while True:
            if batch.broken is not None:
                state.error = _broken_error(batch.broken, state)
                return
            try:
                text = await self._call(messages, batch, state, start_clock)
            except BackendCallError as exc:
                state.error = str(exc)
                if not exc.transient or retries >= self.settings.max_retries:
                    return
                retries += 1
                await asyncio.sleep(self._backoff(retries, exc.retry_after))
                continue
            fitness = assess(text, job.source, lang, budget)
            if better(fitness, state.best_fitness):
                state.best, state.best_fitness = text, fitness
            if fitness.acceptable or reasks >= self.settings.max_reasks:
                return
            reasks += 1
            messages = first + reask_messages(text, fitness, lang)

    async def _call(
        self, messages: list[Message], batch: _Batch, state: _ItemState, start_clock: Callable[[], None]
    ) -> str:
        """One backend call under the shared bound; returns the parsed translation."""
        async with self._slots:
            if batch.broken is not None:
                raise _Broken(_broken_error(batch.broken, state))
            start_clock()
            state.attempts += 1
            try:
                reply = await self.supervisor.chat.chat(
                    batch.model.name,
                    messages,
                    max_tokens=batch.max_tokens,
                    temperature=self.settings.temperature,
                    timeout_s=self.settings.request_timeout_s,
                )
            except BackendCallError as exc:
                if exc.breaker:
                    batch.consecutive_failures += 1
                    if batch.consecutive_failures >= self.settings.breaker_failures and batch.broken is None:
                        batch.broken = f"{batch.consecutive_failures} calls in a row failed; last: {exc}"
                        log.error("backend stopped answering: failing the rest of the batch fast (%s)", exc)
                raise
            batch.consecutive_failures = 0
        return self._interpret(reply.content, reply.thinking, reply.finish_reason, batch)

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
            return parse_answer(content).text
        except UnusableAnswer as exc:
            raise UnusableOutput(str(exc)) from None

    def _result(self, job: Job, lang: Language, state: _ItemState, started: float) -> ItemResult:
        elapsed = round(time.monotonic() - started, 3)
        fit = state.best_fitness
        if state.best is None or fit is None:
            return _failed(job, state.error or "no answer", started, state.attempts)
        fields = {
            "length": fit.length,
            "length_unit": fit.length_unit,
            "length_budget": fit.length_budget,
            "within_budget": fit.within_budget,
            "warnings": fit.warnings,
        }
        if not fit.script_ok:
            # The editor dubs every non-empty translation: an answer in the wrong script must not reach it.
            reasons = "; ".join(HARD_RULES[c] for c in fit.hard_failures)
            return ItemResult(
                task_id=job.task_id,
                source=job.source,
                translation=None,
                success=False,
                elapsed=elapsed,
                error=f"no acceptable answer after {state.attempts} call(s): {reasons}",
                attempts=state.attempts,
                **fields,
            )
        return ItemResult(
            task_id=job.task_id,
            source=job.source,
            translation=state.best,
            success=True,
            elapsed=elapsed,
            error=None,
            attempts=state.attempts,
            **fields,
        )


@dataclass
class _ItemState:
    attempts: int = 0
    best: str | None = None
    best_fitness: Fitness | None = None
    error: str | None = None


class _Broken(BackendCallError):
    transient = False


def _broken_error(reason: str, state: _ItemState) -> str:
    if state.attempts == 0:
        return f"not attempted: the backend stopped answering ({reason})"
    return f"gave up: the backend stopped answering ({reason}); this item's last error: {state.error}"


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


def summarize(results: Sequence[ItemResult], elapsed: float) -> Summary:
    succeeded = sum(1 for r in results if r.success)
    return Summary(
        total=len(results),
        succeeded=succeeded,
        failed=len(results) - succeeded,
        elapsed=round(elapsed, 3),
        avg_per_task=round(elapsed / len(results), 3) if results else 0.0,
    )
