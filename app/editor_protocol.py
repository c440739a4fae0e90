"""LocalClip-Editor's protocol, in one place: standard library only, Python 3.8 syntax.

The editor runs `[python, script, CONFIG.json]` and parses what the script prints in several unforgiving
ways (README, "LocalClip-Editor: switching to the service"). Everything about that exchange lives here:
the language names it sends, the model choice, reading and validating the config task by task, the
progress lines, the summary, the lists and their markers, sealing the output, and the NDJSON client of the
service. `app.cli` imports this module; `scripts/batch_retranslate.py`, run by the editor's own Python
(which has none of our dependencies), imports it from its checkout. Nothing here may import from outside
the standard library, nor from `app` but `app.vocabulary` (the words it shares with the service).

The rules the output keeps:
- progress lines, a summary, one line naming the model (or saying why nothing was translated), then a
  `[Results]` block, a line with `FINAL RESULTS (JSON)`, and the list again, LAST: the live caller parses
  from the last line starting with `[`, so nothing (no log line, no warning at exit) may follow it;
- the lists are pretty-printed, one field per line, and no line nears 64 KiB (one caller reads lines with
  asyncio's default limit);
- failed items are left out unless `--include-failed` (the editor dubs every non-empty `translation`);
- exit code 0 whenever the list was printed (callers discard everything else), unless `--strict`;
- the config's `output_file` is never written (one caller sets it to the subtitle file itself).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import math
import os
import queue
import socket
import sys
import threading
import time
from typing import Any, Dict, Mapping, NamedTuple, Sequence
from urllib.parse import urlsplit

from app.vocabulary import (
    DEFAULT_DEADLINE_S,
    DEMO_WARNING,
    MAX_FIELD_CHARS,
    MODEL_PREFERENCE,
    RECOMMENDED_MODEL,
    first_installed,
    language_code,
    same_model,
    unknown_language_message,
)

Item = Dict[str, Any]


class ModelChoice(NamedTuple):
    # None: let the service choose (RETRANSLATE_MODEL, else the preference list).
    name: str | None
    reason: str


def choose_model(config_model: str | None, installed: Sequence[str], fallback: bool) -> ModelChoice:
    """The config's model when it is installed. Otherwise the service's own choice, unless `fallback` is off
    (`--no-model-fallback`), in which case the config's model is asked for anyway (and the service says it
    is missing). The editor's callers hard-code models (qwen2.5:32b) that a user may not have."""
    if not config_model:
        return ModelChoice(None, "the config names no model: the service's choice")
    found = first_installed([config_model], installed) if installed else config_model
    if found is not None:
        return ModelChoice(found, "the config's model")
    if not fallback:
        return ModelChoice(config_model, "the config's model (--no-model-fallback)")
    return ModelChoice(None, f"the config's model {config_model} is not installed: the service's choice")


# --- the config and its tasks -------------------------------------------------------------------------


class ConfigError(Exception):
    """The config cannot be read at all (no tasks to fail one by one)."""


def read_config(path: str) -> dict[str, Any]:
    """The upstream config. `num_processes`, a top-level `max_length` and `output_file` are ignored, as the
    old script did: `output_file` is the translated subtitle file itself in one caller."""
    try:
        with open(path, "rb") as handle:
            # utf-8-sig: Windows editors (and PowerShell's Out-File) write a BOM. NaN and Infinity are read
            # (Python's json.dump writes them); the task that holds one fails on its own.
            data = json.loads(handle.read().decode("utf-8-sig"))
    except (OSError, ValueError, RecursionError) as exc:
        raise ConfigError(f"cannot read the config {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise ConfigError(f'cannot read the config {path}: it must be a JSON object with a "tasks" list')
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ConfigError(f'cannot read the config {path}: "model" must be a string, not {model!r}')
    return data


def _has_lone_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _text_problem(name: str, value: Any, required: bool = True) -> str | None:
    if not isinstance(value, str) or (required and not value):
        return f"{name}: must be a non-empty string"
    if _has_lone_surrogate(value):
        return f"{name}: holds a lone surrogate, which is not valid Unicode (write the config as UTF-8)"
    if len(value) > MAX_FIELD_CHARS:
        return f"{name}: longer than {MAX_FIELD_CHARS} characters, which is not a subtitle line"
    return None


def _whole_number(value: Any) -> int | None:
    """A JSON integer (or a float with an integral value, as int(x * 0.8) computations may write); never a
    string, a boolean, NaN or infinity."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return None


def task_problem(task: Any, seen: set[str]) -> str | None:
    """Why this task cannot be translated (it then fails alone: never a reason to drop the batch), or None."""
    if not isinstance(task, dict):
        return "task: must be a JSON object"
    for name in ("task_id", "source", "target_language"):
        problem = _text_problem(name, task.get(name))
        if problem:
            return problem
    if not task["source"].strip():
        return "source: the text is blank: send the Chinese line to translate"
    if language_code(task["target_language"]) is None:
        return "target_language: " + unknown_language_message(task["target_language"])
    if "max_length" in task and task["max_length"] is not None and _whole_number(task["max_length"]) is None:
        return f"max_length: must be a whole number, not {json.dumps(task['max_length'])}"
    context = task.get("context")
    if context is not None:
        if not isinstance(context, list):
            return "context: must be a list of strings"
        for line in context:
            problem = _text_problem("context", line, required=False)
            if problem:
                return problem
    if task["task_id"] in seen:
        # The editor writes a translation into the subtitle its task_id names: the first one wins.
        return f"repeated task_id {task['task_id']!r}: only its first task is translated"
    return None


def clean_task(task: dict[str, Any]) -> dict[str, Any]:
    """A valid task as the service takes it (only the fields it uses)."""
    out = {name: task[name] for name in ("task_id", "source", "target_language")}
    length = _whole_number(task.get("max_length"))
    if length is not None:
        out["max_length"] = length
    if task.get("context") is not None:
        out["context"] = list(task["context"])
    return out


# --- the output -----------------------------------------------------------------------------------------

RESULTS_START = "[Results]"
RESULTS_END = "[/Results]"
FINAL_MARKER = "==================== FINAL RESULTS (JSON) ===================="
# Progress and notice lines are for people: long texts are cut.
MAX_PROGRESS_CHARS = 300
MAX_NOTICE_CHARS = 2000
# The user started the demo (`serve.py --demo`) and cannot pass flags through the editor: say what to do instead.
DEMO_NOTICE = (
    f"not translated: {DEMO_WARNING} The service runs it because it was started with "
    "`python scripts/serve.py --demo`: start it again without --demo for real translations."
)
# Python's str.splitlines() also breaks at these; json.dumps leaves them raw inside strings, so a caller
# that splits that way could see a line start inside a value. Escaped, they are the same JSON string.
_LINE_BREAKS_IN_STRINGS = {0x2028: "\\u2028", 0x2029: "\\u2029", 0x85: "\\u0085"}


def use_utf8_streams() -> None:
    """UTF-8 whatever the platform's code page: the editor decodes our output as UTF-8 (on Windows the
    default would be cp936 or cp1252, and Korean text would turn into '?' or a crash)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8", errors="replace", line_buffering=True)


def emit(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def printable(value: Any) -> str:
    """Text that can be printed and parsed back: a lone surrogate becomes U+FFFD."""
    text = str(value)
    if _has_lone_surrogate(text):
        text = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


# Every marker one of the editor's parsers looks for. Task text printed anywhere must not hold one: a source
# holding "FINAL RESULTS (JSON)" made the /translate-text route start reading at a progress line, one holding
# "[Results]" made the translation stage's regex start there. In the list the JSON string keeps its value
# (an escape); in a line for people the look-alike keeps its sense.
_MARKERS_IN_JSON = (
    (RESULTS_END, "[\\/Results]"),
    (RESULTS_START, "\\u005bResults]"),
    ("FINAL RESULTS", "FINAL\\u0020RESULTS"),
    ("翻译结果（JSON）", "翻译结果\\uff08JSON）"),
)
_MARKERS_IN_TEXT = (
    (RESULTS_END, "［/Results］"),
    (RESULTS_START, "［Results］"),
    ("FINAL RESULTS", "FINAL\u00a0RESULTS"),
    ("翻译结果（JSON）", "翻译结果(JSON)"),
)


def defuse_markers(text: str, table: Sequence[tuple[str, str]] = _MARKERS_IN_TEXT) -> str:
    for marker, harmless in table:
        text = text.replace(marker, harmless)
    return text


def one_line(text: Any, limit: int) -> str:
    """`text` on one line (every kind of line break and run of spaces becomes one space), cut at `limit`,
    no editor marker left in it."""
    flat = defuse_markers(" ".join(printable(text).split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


TIMING_PARTS = ("service_wait", "engine_wait", "load", "prompt", "generate")


def timing_note(timings: Any) -> str:
    """`; service_wait 0.31s, engine_wait 1.20s, ...` for a progress line: the parts of the item's time that
    were measured (docs/why-slow.md); nothing when none was (a cached item, an engine that reports none)."""
    if not isinstance(timings, dict):
        return ""
    parts = [
        f"{part} {float(timings[part]):.2f}s"
        for part in TIMING_PARTS
        if isinstance(timings.get(part), (int, float)) and not isinstance(timings.get(part), bool)
    ]
    return "; " + ", ".join(parts) if parts else ""


def upstream_item(result: Item) -> Item:
    """The old script's item shape; a failed item has `translation: null`, never the source."""
    success = bool(result.get("success"))
    item: Item = {
        "task_id": printable(result.get("task_id", ""))[:MAX_FIELD_CHARS],
        "source": printable(result.get("source", ""))[:MAX_FIELD_CHARS],
        "translation": printable(result["translation"]) if success and result.get("translation") else None,
        "success": success and bool(result.get("translation")),
        "elapsed": result.get("elapsed", 0.0),
    }
    if not item["success"]:
        item["error"] = printable(result.get("error") or "failed")[:MAX_FIELD_CHARS]
        item["error_code"] = result.get("error_code") or "internal"
    return item


def render_list(items: list[Item]) -> str:
    """Pretty-printed, one field per line: every caller's parser accepts it, no line nears 64 KiB, and no
    line inside the list starts with `[` (the live caller looks for the last such line)."""
    text = json.dumps(items, ensure_ascii=False, indent=2).translate(_LINE_BREAKS_IN_STRINGS)
    # A marker inside a value would move an editor parser's start or end (see _MARKERS_IN_JSON); escaped, the
    # string is the same. Markers can only be inside strings here: the keys are ours.
    return defuse_markers(text, _MARKERS_IN_JSON)


def print_results(items: list[Item], results_block: bool) -> None:
    listing = render_list(items)
    if results_block:
        emit(RESULTS_START)
        emit(listing)
        emit(RESULTS_END)
        emit(FINAL_MARKER)
    emit(listing)


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


class Batch:
    """Every task of the config, in order, with its result once known; prints a progress line per result."""

    def __init__(self, tasks: Sequence[Any]) -> None:
        self.tasks = list(tasks)
        self.total = len(self.tasks)
        self.started = time.monotonic()
        self.results: list[Item | None] = [None] * self.total
        self.done = 0
        self.valid: list[tuple[int, dict[str, Any]]] = []  # (position, clean task) of every valid task
        seen: set[str] = set()
        refused: list[tuple[int, str]] = []
        for position, task in enumerate(self.tasks):
            problem = task_problem(task, seen)
            if problem is None:
                seen.add(task["task_id"])
                self.valid.append((position, clean_task(task)))
            else:
                refused.append((position, problem))
        self._refused = refused

    def report_refused(self) -> None:
        """The invalid tasks fail now, with their progress lines. Called by whoever does the work (a
        drop-in that hands the batch to the CLI must not print them twice)."""
        for position, problem in self._refused:
            self.finish(position, self.failed(position, problem, "invalid_task"))
        self._refused = []

    def identity(self, position: int) -> tuple[str, str]:
        task = self.tasks[position]
        fields = task if isinstance(task, dict) else {}
        return str(fields.get("task_id") or ""), str(fields.get("source") or "")

    def failed(self, position: int, error: str, code: str) -> Item:
        task_id, source = self.identity(position)
        return {"task_id": task_id, "source": source, "translation": None, "success": False,
                "elapsed": 0.0, "error": error, "error_code": code}  # fmt: skip

    def pending(self) -> list[tuple[int, dict[str, Any]]]:
        """(position, clean task) of every valid task still without a result."""
        return [(p, t) for p, t in self.valid if self.results[p] is None]

    def finish(self, position: int, result: Item) -> None:
        if self.results[position] is not None:
            return
        item = upstream_item(result)
        self.results[position] = item
        self.done += 1
        task_id = one_line(item["task_id"], MAX_PROGRESS_CHARS)
        source = one_line(item["source"], MAX_PROGRESS_CHARS)
        if item["success"]:
            outcome = f"✓ {task_id}: {source} -> {one_line(item['translation'], MAX_PROGRESS_CHARS)}"
        else:
            outcome = f"✗ {task_id}: {source}: {one_line(item['error'], MAX_PROGRESS_CHARS)}"
        note = timing_note(result.get("timings"))
        emit(f"[{self.done}/{self.total}] {outcome} ({float(item['elapsed'] or 0):.2f}s{note})")

    def fail_pending(self, error: str, code: str, report: bool) -> None:
        """Every valid task still without a result fails with `error`; `report` prints their progress lines
        (not wanted when one notice line already says why nothing was translated)."""
        for position, _ in self.pending():
            item = self.failed(position, error, code)
            if report:
                self.finish(position, item)
            else:
                self.results[position] = upstream_item(item)

    def final_items(self) -> list[Item]:
        return [r if r is not None else upstream_item(self.failed(i, "no result", "internal"))
                for i, r in enumerate(self.results)]  # fmt: skip


class Outcome:
    """What a run has to say besides its results: which model and why, or why nothing was translated."""

    def __init__(self, model_line: str | None = None, notice: str | None = None) -> None:
        self.model_line = model_line
        self.notice = notice


def finish_run(batch: Batch, outcome: Outcome, args: Any, deadline: Deadline) -> int:
    """The end of every run, whatever happened: unfinished lines fail with the reason, then the summary, the
    model line (or the notice), the lists. Returns the exit code."""
    batch.report_refused()
    if outcome.notice is not None:
        batch.fail_pending(outcome.notice, "not_translated", report=False)
    else:
        batch.fail_pending(
            f"not finished within the deadline of {deadline.seconds:g} s (--deadline / RETRANSLATE_CLI_DEADLINE_S)",
            "deadline",
            report=True,
        )
    results = batch.final_items()
    elapsed = time.monotonic() - batch.started
    failed = sum(1 for r in results if not r["success"])
    average = elapsed / len(results) if results else 0.0
    emit(
        f"总计: {len(results)} 个任务  成功: {len(results) - failed}  失败: {failed}  "
        f"总耗时: {elapsed:.2f} 秒  平均速度: {average:.2f} 秒/句"
    )
    if outcome.notice is not None:
        emit(one_line(outcome.notice, MAX_NOTICE_CHARS))
    elif outcome.model_line:
        emit(one_line(outcome.model_line, MAX_NOTICE_CHARS))
    items = [r for r in results if r["success"] or args.include_failed]
    print_results(items, not args.no_results_block)
    return 1 if args.strict and failed else 0


def model_line(name: str | None, reason: str, answered_by: str | None, service_reason: str = "") -> str:
    """`model: NAME (why)`: the model that answered and why it was chosen."""
    shown = answered_by or name or "unknown"
    why = reason
    if name is None and service_reason:
        why = f"{reason}: {service_reason}"
    elif name is not None and answered_by and not same_model(name, answered_by):
        why = f"{reason}; answered by {answered_by}"
    return f"model: {shown} ({why})"


# --- time -----------------------------------------------------------------------------------------------

# Room kept at the end of the deadline for unloading the model (voice cloning needs the GPU next).
UNLOAD_RESERVE_S = 5.0


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


# --- the command line -----------------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text}")
    return value


def parse_args(prog: str, argv: Sequence[str] | None, url_help: str) -> argparse.Namespace:
    """The flags of both `python -m app.cli` and the drop-in (they must be the same)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Re-translate subtitle lines from the upstream batch_retranslate_ollama.py config file.",
    )
    parser.add_argument("config", help='the config file: {"tasks": [...], "model": ...} (UTF-8)')
    parser.add_argument("--url", help=url_help)
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
        help="use only the config's model, even when it is not installed",
    )
    parser.add_argument("--allow-demo", action="store_true", help="return results even from the packaged demo model")
    # Internal, between the drop-in and the CLI it falls back to: where no service answered.
    parser.add_argument("--no-service-at", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def cli_flags(args: argparse.Namespace) -> list[str]:
    """The flags to hand on to another run of the same command line (the drop-in to the CLI)."""
    flags = []
    for name in ("include_failed", "strict", "keep_loaded", "no_results_block", "no_model_fallback", "allow_demo"):
        if getattr(args, name):
            flags.append("--" + name.replace("_", "-"))
    return flags


def read_env_file(path: str) -> dict[str, str]:
    """The `KEY=VALUE` lines of the service's `.env` (the file its settings read), for the drop-in, which
    cannot import the settings: blank lines and `#` comments skipped, an `export ` prefix and matching quotes
    around a value removed, a ` #` comment after an unquoted value dropped. A missing or unreadable file
    is an empty one."""
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return values
    for raw in lines:
        line = raw.strip()
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def deadline_seconds(
    args: argparse.Namespace, default: float | None = None, env: Mapping[str, str] | None = None
) -> float:
    """--deadline, else `default` (the CLI's setting), else RETRANSLATE_CLI_DEADLINE_S from `env` (the
    environment unless given)."""
    if args.deadline is not None:
        return float(args.deadline)
    if default is not None:
        return default
    env = os.environ if env is None else env
    try:
        value = float(env.get("RETRANSLATE_CLI_DEADLINE_S") or DEFAULT_DEADLINE_S)
    except ValueError:
        return DEFAULT_DEADLINE_S
    return value if value > 0 and math.isfinite(value) else DEFAULT_DEADLINE_S


# --- the service, over HTTP -----------------------------------------------------------------------------

DEFAULT_URL = "http://127.0.0.1:8642"
CONNECT_TIMEOUT_S = 3.0
START_HINT = "start it with `python scripts/serve.py` (Windows: `py scripts\\serve.py`)"


class ServiceDown(Exception):
    """Nothing that speaks our API answers at the URL."""


class NoResults(Exception):
    """The service answered, but cannot translate: one line saying why, then the (empty) list."""


def http_detail(status: int, raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    try:
        detail = json.loads(text).get("detail")
    except (ValueError, AttributeError):
        detail = None
    if detail is not None:
        if isinstance(detail, list):
            detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
        text = str(detail)
    return f"HTTP {status}: {one_line(text, MAX_NOTICE_CHARS)}"


class ServiceClient:
    """Plain http.client calls to the retranslate service."""

    def __init__(self, url: str, api_key: str | None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServiceDown(f"RETRANSLATE_URL must look like {DEFAULT_URL}, not {url!r}")
        self.url = url.rstrip("/")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = "Bearer " + api_key

    def open(self, method: str, path: str, body: Any, timeout_s: float) -> tuple[http.client.HTTPConnection, Any]:
        """(connection, response). A refused or unreachable connection is ServiceDown; once connected, the
        service is up, however slowly it answers."""
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=CONNECT_TIMEOUT_S)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise ServiceDown(f"no service answered at {self.url} ({exc})") from None
        assert conn.sock is not None
        conn.sock.settimeout(max(timeout_s, 0.1))
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            conn.request(method, self.prefix + path, body=data, headers=self.headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise NoResults(f"the service at {self.url} did not answer {method} {path}: {exc}") from None

    def get_json(self, path: str, timeout_s: float) -> Any:
        conn, response = self.open("GET", path, None, timeout_s)
        try:
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise NoResults(f"the service at {self.url} did not answer GET {path}: {exc}") from None
        finally:
            conn.close()
        if response.status == 404:
            raise ServiceDown(f"{self.url} answers, but it is not the retranslate service (GET {path}: 404)")
        if response.status != 200:
            raise NoResults("no backend can translate: " + http_detail(response.status, raw))
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError:
            raise NoResults(f"unexpected answer from the service at {self.url} (GET {path})") from None


def _read_lines(response: Any, lines: queue.Queue[Any]) -> None:
    """Reader thread: puts each NDJSON line, then None at the end (or the exception that ended it)."""
    try:
        for raw in response:
            lines.put(raw)
        lines.put(None)
    except BaseException as exc:  # the main thread reports it: a thread must not print
        lines.put(exc)


def translate_via_service(
    client: ServiceClient, batch: Batch, config_model: str | None, args: Any, deadline: Deadline
) -> Outcome:
    """The valid tasks, sent to the service (POST /retranslate/stream, for progress). Raises ServiceDown
    when no service answers (the caller may translate in-process instead) and NoResults when it answers but
    cannot translate. A connection lost mid-stream fails the unfinished lines, naming it."""
    models = client.get_json("/models", deadline.remaining())
    batch.report_refused()
    if not isinstance(models, dict):
        raise NoResults(f"unexpected answer from the service at {client.url} (GET /models)")
    if models.get("demo_model") and not args.allow_demo:
        raise NoResults(DEMO_NOTICE)
    pending = batch.pending()
    if not pending:
        return Outcome()
    installed = [str(m) for m in models.get("models") or []]
    choice = choose_model(config_model, installed, not args.no_model_fallback)
    outcome = Outcome(model_line=model_line(choice.name, choice.reason, None))
    # A config bigger than the service takes in one request goes in batches, in order, under the one deadline;
    # the model is unloaded after the last only.
    size = _batch_size(models.get("max_tasks"))
    for start in range(0, len(pending), size):
        chunk = pending[start : start + size]
        last = start + size >= len(pending)
        body: dict[str, Any] = {
            "tasks": [task for _, task in chunk],
            "deadline_s": deadline.for_work(),
            "unload_after": last and not args.keep_loaded,
        }
        if choice.name is not None:
            body["model"] = choice.name
        if not _stream_batch(client, batch, chunk, body, choice, outcome, deadline) or deadline.remaining() <= 0:
            break
    return outcome


def _batch_size(max_tasks: Any) -> int:
    """The service's RETRANSLATE_MAX_TASKS from /models (an older service does not say: its default)."""
    if isinstance(max_tasks, int) and not isinstance(max_tasks, bool) and max_tasks > 0:
        return max_tasks
    return 10_000


def _stream_batch(
    client: ServiceClient,
    batch: Batch,
    pending: list[tuple[int, dict[str, Any]]],
    body: dict[str, Any],
    choice: ModelChoice,
    outcome: Outcome,
    deadline: Deadline,
) -> bool:
    """One request's tasks through POST /retranslate/stream; False when the run cannot go on (the connection
    was lost: every unfinished line failed, naming it; or the deadline passed)."""
    conn, response = client.open("POST", "/retranslate/stream", body, deadline.remaining())
    lost: str | None = None
    finished = False
    try:
        if response.status != 200:
            raise NoResults("no backend can translate: " + http_detail(response.status, response.read()))
        # A reader thread, so that waiting for the next line is bounded by the deadline.
        lines: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=_read_lines, args=(response, lines), daemon=True).start()
        while not finished:
            try:
                line = lines.get(timeout=max(deadline.remaining(), 0.01))
            except queue.Empty:
                break  # the deadline passed: the unfinished items fail with its reason
            if line is None:
                lost = "the stream ended early"
                break
            if isinstance(line, BaseException):
                lost = f"{type(line).__name__}: {line}"
                break
            if not line.strip():
                continue
            try:
                event = json.loads(line.decode("utf-8"))
                if "summary" in event:
                    outcome.model_line = model_line(
                        choice.name, choice.reason, event.get("model"), event.get("model_reason") or ""
                    )
                    finished = True
                    continue
                batch.finish(pending[event["index"]][0], event)
            except (ValueError, LookupError, TypeError):
                lost = "the service sent a line that is not a result"
                break
    finally:
        # Shutting the socket down wakes the reader thread if it still waits.
        if conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
    if lost is not None:
        unfinished = len(batch.pending())
        batch.fail_pending(
            f"the connection to the service at {client.url} was lost before this line finished ({lost}); "
            f"{unfinished} line(s) unfinished",
            "service_lost",
            report=True,
        )
        return False
    return finished


def no_service_notice(url: str, problem: str) -> str:
    return f"not translated: no service answered at {url} (RETRANSLATE_URL; {START_HINT}), and {problem}"


def models_table() -> str:
    """The README's preference list (`python -m app.editor_protocol --models`)."""
    lines = ["| preference | model |", "|---|---|"]
    lines += [f"| {i} | `{name}`{' (recommended)' if name == RECOMMENDED_MODEL else ''} |"
              for i, name in enumerate(MODEL_PREFERENCE, 1)]  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--models"]:
        print(models_table())
