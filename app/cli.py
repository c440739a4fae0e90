"""`python -m app.cli CONFIG.json` (console script `retranslate-batch`): the upstream script, replaced.

LocalClip-Editor runs the old `batch_retranslate_ollama.py` as a subprocess and parses its output in
several unforgiving ways (the README section "LocalClip-Editor: switching to the service" lists them).
Hence the output rules this module keeps:

- progress lines, a summary and one line naming the model, then a `[Results]` block, a line with
  `FINAL RESULTS (JSON)`, and the list again, LAST: the live caller parses from the last line starting with
  `[`, so nothing at all (no log line, no warning at exit) may follow it;
- the lists are pretty-printed, one field per line, and no line is longer than 64 KiB (one caller reads
  lines with asyncio's default limit);
- failed items are left out unless `--include-failed` (the editor dubs every non-empty `translation`);
- exit code 0 whenever the list was printed (the callers discard everything else), unless `--strict`;
- the config's `output_file` is never written (one caller sets it to the subtitle file itself).

In-process by default, with the service's own settings and translator; `--url` sends the work to a running
service instead.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from app.backend import Supervisor, same_model
from app.cache import ResultCache
from app.errors import ServiceError
from app.schemas import ItemResult, Task
from app.settings import Settings, get_settings
from app.translator import Job, Translator, summarize

log = logging.getLogger("app.cli")

# What the old script used when the config named no model (the live caller never names one).
OLD_DEFAULT_MODEL = "qwen2.5:32b"

RESULTS_START = "[Results]"
RESULTS_END = "[/Results]"
FINAL_MARKER = "==================== FINAL RESULTS (JSON) ===================="

# A subtitle line is far shorter. JSON escapes a character in at most 6 bytes, so a field this long still
# fits a 64 KiB line with room to spare.
MAX_FIELD_CHARS = 4000
# Progress and notice lines are for people: long texts are cut.
MAX_PROGRESS_CHARS = 300
MAX_NOTICE_CHARS = 2000

# Room kept at the end of the deadline for unloading the model (voice cloning needs the GPU next).
UNLOAD_RESERVE_S = 5.0

DEMO_NOTICE = (
    "not translated: the packaged demo model answers (RETRANSLATE_BACKEND=embedded without "
    "RETRANSLATE_EMBEDDED_MODEL_PATH); its translations must not go into a dub. Use --allow-demo to get them anyway."
)

# Python's str.splitlines() also breaks at these; json.dumps leaves them raw inside strings, so a caller
# that splits that way could see a line start inside a value. Escaped, they are the same JSON string.
_LINE_BREAKS_IN_STRINGS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


# --- command line and config ----------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="retranslate-batch",
        description="Re-translate subtitle lines from the upstream batch_retranslate_ollama.py config file.",
    )
    parser.add_argument("config", type=Path, help='the config file: {"tasks": [...], "model": ...} (UTF-8)')
    parser.add_argument("--url", help="send the work to the service running at URL instead of translating here")
    parser.add_argument(
        "--include-failed",
        action="store_true",
        help="keep failed items in the list (translation null, with an error); default: leave them out",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when any item failed")
    parser.add_argument("--keep-loaded", action="store_true", help="do not unload the model afterwards")
    parser.add_argument(
        "--deadline",
        type=_positive_float,
        metavar="S",
        help="overall deadline in seconds; unfinished items then fail (default: RETRANSLATE_CLI_DEADLINE_S)",
    )
    parser.add_argument(
        "--no-results-block",
        action="store_true",
        help="print only the final list (no [Results] block, no FINAL RESULTS marker)",
    )
    parser.add_argument(
        "--no-model-fallback",
        action="store_true",
        help=f"use only the config's model (or {OLD_DEFAULT_MODEL} when it names none), never RETRANSLATE_MODEL",
    )
    parser.add_argument("--allow-demo", action="store_true", help="return results even from the packaged demo model")
    return parser.parse_args(argv)


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Config:
    tasks: list[Any]
    model: str | None


def read_config(path: Path) -> Config:
    """The upstream config. `num_processes`, a top-level `max_length` and `output_file` are ignored, as the
    old script did: `output_file` is the translated subtitle file itself in one caller."""
    try:
        # utf-8-sig: Windows editors (and PowerShell's Out-File) write a BOM.
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the config {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise ConfigError(f'the config {path} must be a JSON object with a "tasks" list')
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ConfigError(f'the config\'s "model" must be a string, not {model!r}')
    return Config(tasks=data["tasks"], model=model or None)


# --- the batch ------------------------------------------------------------------------------------------


def one_line(text: str, limit: int) -> str:
    """`text` on one line (every kind of line break and run of spaces becomes one space), cut at `limit`."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "task"
        parts.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def _validate(raw: Any, seen: set[str]) -> Task | str:
    """The task, or why it cannot be translated (it then becomes a failed item: never a reason to drop the
    whole batch)."""
    try:
        task = Task.model_validate(raw)
    except ValidationError as exc:
        return _validation_message(exc)
    if task.task_id in seen:
        # The editor writes a translation into the subtitle its task_id names: the first one wins.
        return f"repeated task_id {task.task_id!r}: only its first task is translated"
    if len(task.source) > MAX_FIELD_CHARS or len(task.task_id) > MAX_FIELD_CHARS:
        return f"task_id or source longer than {MAX_FIELD_CHARS} characters: not a subtitle line"
    return task


class Batch:
    """Every task of the config, in order, with its result once known; prints a progress line per result."""

    def __init__(self, raw_tasks: Sequence[Any]) -> None:
        self.total = len(raw_tasks)
        self.started = time.monotonic()
        self._done = 0
        self._ids: list[tuple[str, str]] = []
        self._tasks: list[Task | None] = []
        self._results: list[ItemResult | None] = [None] * self.total
        refused: list[tuple[int, str]] = []
        seen: set[str] = set()
        for position, raw in enumerate(raw_tasks):
            fields = raw if isinstance(raw, dict) else {}
            self._ids.append((str(fields.get("task_id") or ""), str(fields.get("source") or "")))
            checked = _validate(raw, seen)
            if isinstance(checked, str):
                self._tasks.append(None)
                refused.append((position, checked))
            else:
                self._tasks.append(checked)
                seen.add(checked.task_id)
        for position, why in refused:
            self.finish(position, self._failed(position, why))

    def pending(self) -> list[tuple[int, Task]]:
        """(position in the config, task) of every task still without a result."""
        return [(i, t) for i, t in enumerate(self._tasks) if t is not None and self._results[i] is None]

    def finish(self, position: int, result: ItemResult) -> None:
        if self._results[position] is not None:
            return
        self._results[position] = result
        self._done += 1
        r = result
        task_id, source = one_line(r.task_id, MAX_PROGRESS_CHARS), one_line(r.source, MAX_PROGRESS_CHARS)
        if r.success and r.translation is not None:
            translation = one_line(r.translation, MAX_PROGRESS_CHARS)
            emit(f"[{self._done}/{self.total}] ✓ {task_id}: {source} -> {translation} ({r.elapsed:.2f}s)")
        else:
            error = one_line(r.error or "failed", MAX_PROGRESS_CHARS)
            emit(f"[{self._done}/{self.total}] ✗ {task_id}: {source}: {error} ({r.elapsed:.2f}s)")

    def fail_pending(self, error: str, *, report: bool) -> None:
        """Every task still without a result fails with `error`; `report` prints their progress lines (not
        wanted when one notice line already says why nothing was translated)."""
        for position, _ in self.pending():
            result = self._failed(position, error)
            if report:
                self.finish(position, result)
            else:
                self._results[position] = result

    def results(self) -> list[ItemResult]:
        return [r if r is not None else self._failed(i, "no result") for i, r in enumerate(self._results)]

    def _failed(self, position: int, error: str) -> ItemResult:
        task_id, source = self._ids[position]
        return ItemResult(
            task_id=task_id, source=source, translation=None, success=False, elapsed=0.0, error=error, attempts=0
        )


# --- model choice ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelChoice:
    name: str
    reason: str


def choose_model(config_model: str | None, installed: Sequence[str], default: str, *, fallback: bool) -> ModelChoice:
    """The first installed of: the config's model; the old script's default when the config names none;
    the service's default (`fallback` only). None installed: the first, and the backend says what is wrong."""
    if config_model:
        candidates = [(config_model, "the config's model")]
    else:
        candidates = [(OLD_DEFAULT_MODEL, "the config names no model: the old script's default")]
    if fallback and not any(same_model(default, name) for name, _ in candidates):
        candidates.append((default, "the service's default, RETRANSLATE_MODEL"))
    if not installed:  # e.g. an OpenAI-compatible server without /v1/models: it may serve any name
        return ModelChoice(*candidates[0])
    missing: list[str] = []
    for name, why in candidates:
        if any(same_model(name, have) for have in installed):
            return ModelChoice(name, why + (f"; not installed: {', '.join(missing)}" if missing else ""))
        missing.append(name)
    name, why = candidates[0]
    return ModelChoice(name, f"{why}; not installed, nor is any fallback: {', '.join(missing)}")


# --- the work: in-process or through a running service -------------------------------------------------


@dataclass
class Outcome:
    """What the run has to say besides the results."""

    model_line: str | None = None  # which model and why
    notice: str | None = None  # why nothing was translated (no backend, demo model), as one line


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds
        # Kept free at the end for unloading the model, so that the unload happens inside the deadline.
        self.reserve = min(UNLOAD_RESERVE_S, seconds * 0.1)

    def remaining(self) -> float:
        return max(0.0, self._at - time.monotonic())

    def for_work(self) -> float:
        """What a run may take: the remaining time less the unload reserve (never 0: an API needs > 0)."""
        return max(self.remaining() - self.reserve, 0.001)


def _notice_unavailable(detail: str) -> str:
    return "no backend can translate: " + one_line(detail, MAX_NOTICE_CHARS)


async def translate_in_process(
    batch: Batch, config: Config, args: argparse.Namespace, settings: Settings, deadline: Deadline
) -> Outcome:
    supervisor = Supervisor(settings, allow_autostart=True)
    # The same cache as the service (RETRANSLATE_CACHE_PATH): the editor re-runs the same lines often.
    cache = ResultCache(settings.cache_size, settings.cache_path)
    try:
        await cache.open()
        return await _in_process(supervisor, Translator(settings, supervisor, cache), batch, config, args, deadline)
    finally:
        # An Ollama we had to start stays up: the editor's next steps call Ollama directly.
        if supervisor.ollama_process is not None:
            supervisor.ollama_process.detach()
        await supervisor.close()
        cache.close()


async def _in_process(
    supervisor: Supervisor,
    translator: Translator,
    batch: Batch,
    config: Config,
    args: argparse.Namespace,
    deadline: Deadline,
) -> Outcome:
    settings = translator.settings
    try:
        async with asyncio.timeout(deadline.for_work()):
            await supervisor.start()
            if supervisor.demo and not args.allow_demo:
                return Outcome(notice=DEMO_NOTICE)
            installed = await supervisor.available_models()
            choice = choose_model(config.model, installed, settings.model, fallback=not args.no_model_fallback)
            model = await supervisor.ensure_ready(choice.name)
    except ServiceError as exc:
        return Outcome(notice=_notice_unavailable(exc.detail))
    except TimeoutError:
        why = f"the backend was not ready within the deadline of {deadline.seconds:g} s"
        return Outcome(notice=_notice_unavailable(why))
    if model.backend == "embedded":  # llama-server serves the one model it loaded, whatever the name
        outcome = Outcome(model_line=f"model: {model.answering} (the embedded llama-server's model)")
    else:
        answered_by = f"; answered by {model.answering}" if model.answering != choice.name else ""
        outcome = Outcome(model_line=f"model: {choice.name} ({choice.reason}{answered_by})")

    pending = batch.pending()
    jobs = [Job(t.task_id, t.source, t.target_language, t.max_length, t.context) for _, t in pending]

    def on_result(index: int, result: ItemResult, *_: int) -> None:
        batch.finish(pending[index][0], result)

    try:
        # The translator keeps its own deadline; this one only guards against it overrunning.
        async with asyncio.timeout(deadline.remaining()):
            await translator.run(jobs, model, deadline_s=deadline.for_work(), on_result=on_result)
    except TimeoutError:
        pass  # the unfinished items fail with the deadline's reason
    finally:
        if not args.keep_loaded:
            await _unload(supervisor, model.name, deadline)
    return outcome


async def _unload(supervisor: Supervisor, model: str, deadline: Deadline) -> None:
    # The remaining time, and at least the reserve even if the batch overran it: a model left loaded
    # makes the editor's voice cloning run out of GPU memory.
    try:
        async with asyncio.timeout(max(deadline.remaining(), deadline.reserve)):
            await supervisor.unload(model)
    except TimeoutError:
        log.warning("unloading %s did not finish in time", model)


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    text = detail if isinstance(detail, str) else json.dumps(detail) if detail else response.text
    return f"HTTP {response.status_code}: {one_line(text, MAX_NOTICE_CHARS)}"


async def translate_via_service(
    batch: Batch, config: Config, args: argparse.Namespace, deadline: Deadline, url: str
) -> Outcome:
    """The same work, sent to a running service (`POST /retranslate/stream` for progress)."""
    # The service's own setting (environment or .env), so one key configures both.
    key = get_settings().api_key
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}
    outcome = Outcome()
    timeout = httpx.Timeout(deadline.remaining(), connect=5.0)
    async with httpx.AsyncClient(base_url=url.rstrip("/"), headers=headers, timeout=timeout) as client:
        try:
            async with asyncio.timeout(deadline.remaining()):
                await _via_service(client, batch, config, args, deadline, outcome)
        except TimeoutError:
            pass  # the unfinished items fail with the deadline's reason
        except httpx.HTTPError as exc:
            outcome.notice = f"the service at {url} did not answer: {one_line(str(exc) or repr(exc), 500)}"
        except (ValueError, LookupError, TypeError) as exc:  # not the service's documented answers
            outcome.notice = f"unexpected answer from the service at {url}: {one_line(str(exc), 500)}"
    return outcome


async def _via_service(
    client: httpx.AsyncClient,
    batch: Batch,
    config: Config,
    args: argparse.Namespace,
    deadline: Deadline,
    outcome: Outcome,
) -> None:
    response = await client.get("/models")
    if response.status_code != 200:
        outcome.notice = _notice_unavailable(_detail(response))
        return
    models = response.json()
    if models.get("demo_model") and not args.allow_demo:
        outcome.notice = DEMO_NOTICE
        return
    choice = choose_model(config.model, models["models"], models["default"], fallback=not args.no_model_fallback)
    outcome.model_line = f"model: {choice.name} ({choice.reason})"
    pending = batch.pending()
    body = {
        # The service refuses a whole request for one bad task: only tasks that passed our checks go.
        "tasks": [task.model_dump(exclude_none=True) for _, task in pending],
        "model": choice.name,
        "deadline_s": deadline.for_work(),
        "unload_after": not args.keep_loaded,
    }
    async with client.stream("POST", "/retranslate/stream", json=body) as stream:
        if stream.status_code != 200:
            await stream.aread()
            outcome.notice = _notice_unavailable(_detail(stream))
            return
        async for line in stream.aiter_lines():
            if not line.strip():
                continue
            event = json.loads(line)
            if "summary" in event:
                if event.get("model") and event["model"] != choice.name:
                    outcome.model_line = f"model: {choice.name} ({choice.reason}; answered by {event['model']})"
                continue
            batch.finish(pending[event["index"]][0], ItemResult.model_validate(event))


# --- output ---------------------------------------------------------------------------------------------


def emit(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def upstream_item(result: ItemResult) -> dict[str, Any]:
    """The old script's item shape; a failed item has `translation: null`, never the source."""
    item: dict[str, Any] = {
        "task_id": result.task_id,
        "source": result.source,
        "translation": result.translation if result.success else None,
        "success": result.success,
        "elapsed": result.elapsed,
    }
    if not result.success:
        item["error"] = result.error
    # Only refused tasks can carry longer texts (they were never translated); cut them to keep lines short.
    return {k: v[:MAX_FIELD_CHARS] if isinstance(v, str) else v for k, v in item.items()}


def render_list(items: list[dict[str, Any]]) -> str:
    """Pretty-printed, one field per line: every caller's parser accepts it, no line nears 64 KiB, and no
    line inside the list starts with `[` (the live caller looks for the last such line)."""
    text = json.dumps(items, ensure_ascii=False, indent=2).translate(_LINE_BREAKS_IN_STRINGS)
    # "[/Results]" inside a value would end the translation stage's regex early; "\/" is the same string.
    return text.replace(RESULTS_END, "[\\/Results]")


def print_results(items: list[dict[str, Any]], *, results_block: bool) -> None:
    listing = render_list(items)
    if results_block:
        emit(RESULTS_START)
        emit(listing)
        emit(RESULTS_END)
        emit(FINAL_MARKER)
    emit(listing)


def print_summary(results: list[ItemResult], elapsed: float) -> None:
    s = summarize(results, elapsed)
    emit(
        f"总计: {s.total} 个任务  成功: {s.succeeded}  失败: {s.failed}  "
        f"总耗时: {s.elapsed:.2f} 秒  平均速度: {s.avg_per_task:.2f} 秒/句"
    )


# --- process setup --------------------------------------------------------------------------------------


def use_utf8_streams() -> None:
    """UTF-8 whatever the platform's code page: the editor decodes our output as UTF-8 (on Windows the
    default would be cp936 or cp1252 and Korean text would turn into '?' or a crash)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8", errors="replace", line_buffering=True)


def setup_logging(settings: Settings) -> None:
    # Our progress lines replace the translator's INFO lines; warnings and errors still reach stderr.
    level = max(logging.WARNING, logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.WARNING))
    logging.basicConfig(stream=sys.stderr, level=level, format="%(levelname)s %(name)s: %(message)s")


def silence_diagnostics() -> None:
    """From here on nothing but our own lines may reach the output: no log record, no warning."""
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")


def seal_output() -> None:
    """After the final list: point stdout and stderr at the null device, so that nothing the interpreter
    prints at exit (an "Exception ignored in ..." message, a ResourceWarning) can follow the list."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    except (OSError, ValueError):
        pass


# --- entry points ---------------------------------------------------------------------------------------


def run(argv: Sequence[str] | None = None) -> int:
    """The whole CLI run; returns the exit code."""
    use_utf8_streams()
    args = parse_args(argv)
    settings = get_settings()
    setup_logging(settings)
    try:
        config = read_config(args.config)
    except ConfigError as exc:
        emit(one_line(str(exc), MAX_NOTICE_CHARS))
        return 2
    deadline = Deadline(args.deadline or settings.cli_deadline_s)
    batch = Batch(config.tasks)
    outcome = Outcome()
    if batch.pending():  # zero tasks (or none valid): no backend needed
        if args.url:
            work = translate_via_service(batch, config, args, deadline, args.url)
        else:
            work = translate_in_process(batch, config, args, settings, deadline)
        try:
            outcome = asyncio.run(work)
        except Exception:  # a bug must not cost the editor the lines that did finish
            log.exception("the batch stopped on an unexpected error")
            outcome.notice = "the batch stopped on an unexpected error (see the log above)"
    silence_diagnostics()
    if outcome.notice is not None:
        batch.fail_pending(outcome.notice, report=False)
    else:
        batch.fail_pending(f"not finished within the deadline of {deadline.seconds:g} s", report=True)
    results = batch.results()
    print_summary(results, time.monotonic() - batch.started)
    if outcome.notice is not None:
        emit(outcome.notice)
    elif outcome.model_line is not None:
        emit(one_line(outcome.model_line, MAX_NOTICE_CHARS))
    items = [upstream_item(r) for r in results if r.success or args.include_failed]
    print_results(items, results_block=not args.no_results_block)
    return 1 if args.strict and any(not r.success for r in results) else 0


def main(argv: Sequence[str] | None = None) -> int:
    code = run(argv)
    seal_output()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
