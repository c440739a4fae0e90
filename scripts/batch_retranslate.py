#!/usr/bin/env python3
"""Drop-in replacement for LocalClip-Editor's batch_retranslate_ollama.py.

    python batch_retranslate.py CONFIG.json [--include-failed] [--strict] [--keep-loaded] [--deadline S]
                                            [--no-results-block] [--no-model-fallback] [--allow-demo] [--url URL]

The editor runs this file with its own Python, which has none of the service's dependencies: so this is
one file, standard library only, for Python 3.8 and later.

1. When the retranslate service answers (RETRANSLATE_URL, default http://127.0.0.1:8642; RETRANSLATE_API_KEY
   is sent as a bearer token when set), the work goes there (POST /retranslate/stream, for progress).
2. Otherwise the in-process CLI runs with the service's own interpreter (RETRANSLATE_PYTHON, else the
   project's .venv next to this script) as `python -m app.cli CONFIG.json ...`; its output and exit code
   pass through unchanged.
3. When neither is possible: one line saying why, and an empty list.

The output is the CLI's (app/cli.py): progress lines, a summary, the model line, a [Results] block, a
FINAL RESULTS (JSON) line and the list again, last; nothing after it. Failed items are left out unless
--include-failed; exit code 0 whenever the list was printed (--strict: 1 when an item failed). The config's
output_file is never written.

Some helpers here (output sealing, list printing, model choice) mirror app/cli.py on purpose: this file
cannot import the service's package. Change both together; tests/scripts/ checks they print the same way.
"""

import argparse
import contextlib
import http.client
import io
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple
from urllib.parse import urlsplit

# The service's own default address (RETRANSLATE_HOST:RETRANSLATE_PORT).
DEFAULT_URL = "http://127.0.0.1:8642"
# Mirrors the service's RETRANSLATE_CLI_DEADLINE_S default: well before the editor's 600 s kill.
DEFAULT_DEADLINE_S = 480.0
# What the old script used when the config named no model (the live caller never names one).
OLD_DEFAULT_MODEL = "qwen2.5:32b"
CONNECT_TIMEOUT_S = 3.0
UNLOAD_RESERVE_S = 5.0

RESULTS_START = "[Results]"
RESULTS_END = "[/Results]"
FINAL_MARKER = "==================== FINAL RESULTS (JSON) ===================="
MAX_FIELD_CHARS = 4000  # JSON needs at most 6 bytes a character: far below the 64 KiB line limit
MAX_PROGRESS_CHARS = 300
MAX_NOTICE_CHARS = 2000
DEMO_NOTICE = (
    "not translated: the packaged demo model answers (RETRANSLATE_BACKEND=embedded without "
    "RETRANSLATE_EMBEDDED_MODEL_PATH); its translations must not go into a dub. Use --allow-demo to get them anyway."
)
# str.splitlines() also breaks at these; escaped, they are the same JSON string.
_LINE_BREAKS_IN_STRINGS = {0x2028: "\\u2028", 0x2029: "\\u2029", 0x85: "\\u0085"}

Item = Dict[str, Any]


class ServiceDown(Exception):
    """Nothing that speaks our API answers at the URL: fall back to the in-process CLI."""


class NoResults(Exception):
    """The service answered but cannot translate: one line saying why, then the (empty) list."""


# --- output ------------------------------------------------------------------------------------------------


def use_utf8_streams() -> None:
    # The editor decodes our output as UTF-8; Windows' default code page would mangle Korean text.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(encoding="utf-8", errors="replace", line_buffering=True)


def emit(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def one_line(text: str, limit: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def render_list(items: List[Item]) -> str:
    # Pretty-printed, one field per line: no line inside the list starts with "[" and none nears 64 KiB.
    text = json.dumps(items, ensure_ascii=False, indent=2).translate(_LINE_BREAKS_IN_STRINGS)
    return text.replace(RESULTS_END, "[\\/Results]")


def print_results(items: List[Item], results_block: bool) -> None:
    listing = render_list(items)
    if results_block:
        emit(RESULTS_START)
        emit(listing)
        emit(RESULTS_END)
        emit(FINAL_MARKER)
    emit(listing)


def seal_output() -> None:
    """Nothing may follow the list (the live caller parses from the last line starting with "[")."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    except (OSError, ValueError):
        pass


# --- config and tasks ----------------------------------------------------------------------------------------


def read_config(path: str) -> Dict[str, Any]:
    # utf-8-sig: a BOM written by a Windows editor is tolerated.
    with open(path, "rb") as handle:
        data = json.loads(handle.read().decode("utf-8-sig"))
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list):
        raise ValueError('it must be a JSON object with a "tasks" list')
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ValueError('"model" must be a string')
    return data


def task_problem(task: Any, seen: Set[str], languages: Optional[Set[str]]) -> Optional[str]:
    """Why the service would refuse this task (it refuses a whole request for one bad task, so bad tasks
    are failed here and never sent), or None."""
    if not isinstance(task, dict):
        return "task: must be a JSON object"
    for name in ("task_id", "source", "target_language"):
        if not isinstance(task.get(name), str) or not task[name]:
            return name + ": must be a non-empty string"
    if not task["source"].strip():
        return "source: the text is blank: send the Chinese line to translate"
    if languages is not None and task["target_language"].strip().casefold() not in languages:
        name = task["target_language"]
        return f"target_language: unsupported target_language {name!r} (GET /languages lists every accepted name)"
    max_length = task.get("max_length")
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, (int, float)) or max_length != int(max_length)
    ):
        return "max_length: must be a whole number"
    context = task.get("context")
    if context is not None and (not isinstance(context, list) or not all(isinstance(c, str) for c in context)):
        return "context: must be a list of strings"
    if task["task_id"] in seen:
        return f"repeated task_id {task['task_id']!r}: only its first task is translated"
    if len(task["task_id"]) > MAX_FIELD_CHARS or len(task["source"]) > MAX_FIELD_CHARS:
        return f"task_id or source longer than {MAX_FIELD_CHARS} characters: not a subtitle line"
    return None


def sendable(task: Dict[str, Any]) -> Dict[str, Any]:
    out = {k: task[k] for k in ("task_id", "source", "target_language")}
    if task.get("max_length") is not None:
        out["max_length"] = int(task["max_length"])
    if task.get("context") is not None:
        out["context"] = task["context"]
    return out


class Batch:
    """The config's tasks in order, each with its result once known; prints a progress line per result."""

    def __init__(self, tasks: List[Any]) -> None:
        self.tasks = tasks
        self.total = len(tasks)
        self.started = time.monotonic()
        self.results: List[Optional[Item]] = [None] * self.total
        self.done = 0

    def identity(self, position: int) -> Tuple[str, str]:
        task = self.tasks[position]
        fields = task if isinstance(task, dict) else {}
        return str(fields.get("task_id") or ""), str(fields.get("source") or "")

    def failed(self, position: int, error: str) -> Item:
        task_id, source = self.identity(position)
        return {
            "task_id": task_id,
            "source": source,
            "translation": None,
            "success": False,
            "elapsed": 0.0,
            "error": error,
        }

    def finish(self, position: int, item: Item) -> None:
        if self.results[position] is not None:
            return
        self.results[position] = item
        self.done += 1
        task_id, source = one_line(item["task_id"], MAX_PROGRESS_CHARS), one_line(item["source"], MAX_PROGRESS_CHARS)
        if item["success"]:
            outcome = "✓ " + task_id + ": " + source + " -> " + one_line(item["translation"], MAX_PROGRESS_CHARS)
        else:
            outcome = (
                "✗ " + task_id + ": " + source + ": " + one_line(item.get("error") or "failed", MAX_PROGRESS_CHARS)
            )
        emit(f"[{self.done}/{self.total}] {outcome} ({item['elapsed']:.2f}s)")

    def pending(self) -> List[int]:
        return [i for i, r in enumerate(self.results) if r is None]

    def fail_pending(self, error: str, report: bool) -> None:
        for position in self.pending():
            if report:
                self.finish(position, self.failed(position, error))
            else:
                self.results[position] = self.failed(position, error)


def choose_model(config_model: Optional[str], installed: List[str], default: str, fallback: bool) -> Tuple[str, str]:
    """The CLI's choice: the first installed of the config's model (or the old default when it names none)
    and, with `fallback`, the service's default model."""

    def norm(name: str) -> str:
        return name[: -len(":latest")] if name.endswith(":latest") else name

    if config_model:
        candidates = [(config_model, "the config's model")]
    else:
        candidates = [(OLD_DEFAULT_MODEL, "the config names no model: the old script's default")]
    if fallback and norm(default) != norm(candidates[0][0]):
        candidates.append((default, "the service's default, RETRANSLATE_MODEL"))
    if not installed:
        return candidates[0]
    have = {norm(name) for name in installed}
    missing: List[str] = []
    for name, why in candidates:
        if norm(name) in have:
            return name, why + ("; not installed: " + ", ".join(missing) if missing else "")
        missing.append(name)
    name, why = candidates[0]
    return name, f"{why}; not installed, nor is any fallback: {', '.join(missing)}"


# --- the service -----------------------------------------------------------------------------------------------


class Service:
    """Plain http.client calls to the retranslate service."""

    def __init__(self, url: str, api_key: Optional[str]) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServiceDown(f"RETRANSLATE_URL must look like {DEFAULT_URL}, not {url!r}")
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = "Bearer " + api_key

    def open(self, method: str, path: str, body: Any, timeout_s: float) -> Tuple[http.client.HTTPConnection, Any]:
        """(connection, response). A refused or unreachable connection is ServiceDown; once connected, the
        service is up, however slowly it answers."""
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=CONNECT_TIMEOUT_S)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise ServiceDown(f"no service answers at {self.url} ({exc})") from None
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
        return json.loads(raw.decode("utf-8"))


def http_detail(status: int, raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    try:
        detail = json.loads(text).get("detail")
    except (ValueError, AttributeError):
        detail = None
    if detail is not None:
        text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
    return f"HTTP {status}: {one_line(text, MAX_NOTICE_CHARS)}"


def read_lines(response: Any, lines: "queue.Queue[Any]") -> None:
    """Reader thread: puts each NDJSON line, then None at the end (or the exception that ended it)."""
    try:
        for raw in response:
            lines.put(raw)
        lines.put(None)
    except BaseException as exc:  # the main thread reports it: a thread must not print
        lines.put(exc)


def accepted_languages(service: Service, timeout_s: float) -> Optional[Set[str]]:
    """Every target language name the service accepts (casefolded, as it compares them), or None."""
    try:
        return {
            name.casefold() for lang in service.get_json("/languages", timeout_s) for name in lang["accepted_names"]
        }
    except (NoResults, ServiceDown, ValueError, LookupError, TypeError):
        return None  # the service still checks every task itself


def translate_via_service(service: Service, batch: Batch, config: Dict[str, Any], args: Any, deadline_at: float) -> str:
    """Sends the valid tasks to the service; returns the model line. Raises ServiceDown or NoResults."""

    def remaining() -> float:
        return max(0.0, deadline_at - time.monotonic())

    models = service.get_json("/models", remaining())
    if models.get("demo_model") and not args.allow_demo:
        raise NoResults(DEMO_NOTICE)
    languages = accepted_languages(service, remaining())
    seen: Set[str] = set()
    positions: List[int] = []  # config position of each task sent, in the order sent
    for position, task in enumerate(batch.tasks):
        problem = task_problem(task, seen, languages)
        if problem is None:
            seen.add(task["task_id"])
            positions.append(position)
        else:
            batch.finish(position, batch.failed(position, problem))
    if not positions:
        return ""
    installed = models.get("models") or []
    name, why = choose_model(
        config.get("model") or None, installed, models.get("default") or "", not args.no_model_fallback
    )
    model_line = f"model: {name} ({why})"
    reserve = min(UNLOAD_RESERVE_S, args.deadline * 0.1)  # time kept for unloading the model
    body = {
        "tasks": [sendable(batch.tasks[p]) for p in positions],
        "model": name,
        "deadline_s": max(remaining() - reserve, 0.001),
        "unload_after": not args.keep_loaded,
    }
    conn, response = service.open("POST", "/retranslate/stream", body, remaining())
    try:
        if response.status != 200:
            raise NoResults("no backend can translate: " + http_detail(response.status, response.read()))
        # A reader thread, so that waiting for the next line is bounded by the deadline.
        lines: queue.Queue[Any] = queue.Queue()
        threading.Thread(target=read_lines, args=(response, lines), daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=max(remaining(), 0.01))
            except queue.Empty:
                return model_line  # the deadline passed: the unfinished items fail
            if line is None:
                return model_line
            if isinstance(line, BaseException):
                raise NoResults(f"the stream from {service.url} broke off: {line}")
            if not line.strip():
                continue
            event = json.loads(line.decode("utf-8"))
            if "summary" in event:
                if event.get("model") and event["model"] != name:
                    model_line = f"model: {name} ({why}; answered by {event['model']})"
                continue
            batch.finish(positions[event["index"]], upstream_item(event))
    finally:
        # Shutting the socket down wakes the reader thread if it still waits.
        if conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()


def upstream_item(event: Dict[str, Any]) -> Item:
    """The old script's item shape; a failed item has translation null, never the source."""
    success = bool(event["success"])
    item = {
        "task_id": event["task_id"],
        "source": event["source"],
        "translation": event["translation"] if success else None,
        "success": success,
        "elapsed": event.get("elapsed", 0.0),
    }
    if not success:
        item["error"] = event.get("error") or "failed"
    return item


# --- the in-process CLI fallback ----------------------------------------------------------------------------


def service_python(repo: str) -> Optional[str]:
    explicit = os.environ.get("RETRANSLATE_PYTHON")
    if explicit:
        return explicit if os.path.isfile(explicit) else None
    for candidate in (
        os.path.join(repo, ".venv", "bin", "python"),
        os.path.join(repo, ".venv", "Scripts", "python.exe"),
    ):
        if os.path.isfile(candidate):
            return candidate
    return None


def cli_command(python: str, args: Any, deadline_at: float) -> List[str]:
    command = [python, "-m", "app.cli", os.path.abspath(args.config)]
    if args.deadline_given:
        command += ["--deadline", f"{max(deadline_at - time.monotonic(), 0.001):.3f}"]
    for name in ("include_failed", "strict", "keep_loaded", "no_results_block", "no_model_fallback", "allow_demo"):
        if getattr(args, name):
            command.append("--" + name.replace("_", "-"))
    return command


def run_cli(python: str, repo: str, args: Any, deadline_at: float) -> int:
    """The in-process CLI; its output passes through unchanged (same format, its list last)."""
    sys.stdout.flush()
    sys.stderr.flush()
    # The CLI keeps its own deadline (its settings' default unless --deadline was given); this timeout,
    # beyond the editor's own 600 s kill, only guards the caller that waits forever against a hang.
    guard_s = max(args.deadline, 600.0) + 30
    return subprocess.run(cli_command(python, args, deadline_at), cwd=repo, timeout=guard_s).returncode


# --- main ---------------------------------------------------------------------------------------------------


def parse_args(argv: Optional[List[str]]) -> Any:
    parser = argparse.ArgumentParser(description="Re-translate subtitle lines (LocalClip-Editor drop-in).")
    parser.add_argument("config", help="the upstream config file (JSON, UTF-8)")
    parser.add_argument("--url", help=f"the service's URL (default: RETRANSLATE_URL, else {DEFAULT_URL})")
    parser.add_argument("--include-failed", action="store_true", help="keep failed items (translation null)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any item failed")
    parser.add_argument("--keep-loaded", action="store_true", help="do not unload the model afterwards")
    parser.add_argument("--deadline", type=float, metavar="S", help="overall deadline in seconds (default 480)")
    parser.add_argument("--no-results-block", action="store_true", help="print only the final list")
    parser.add_argument("--no-model-fallback", action="store_true", help="never fall back to the default model")
    parser.add_argument("--allow-demo", action="store_true", help="return results even from the demo model")
    args = parser.parse_args(argv)
    if args.deadline is not None and not args.deadline > 0:
        parser.error("--deadline must be above 0")
    args.deadline_given = args.deadline is not None
    if args.deadline is None:
        args.deadline = float(os.environ.get("RETRANSLATE_CLI_DEADLINE_S") or DEFAULT_DEADLINE_S)
    return args


def finish(batch: Batch, args: Any, model_line: str, notice: Optional[str]) -> int:
    """Summary, model line (or the notice), results; returns the exit code."""
    if notice is not None:
        batch.fail_pending(notice, report=False)
    else:
        batch.fail_pending(f"not finished within the deadline of {args.deadline:g} s", report=True)
    results = [r for r in batch.results if r is not None]
    elapsed = time.monotonic() - batch.started
    failed = sum(1 for r in results if not r["success"])
    average = elapsed / len(results) if results else 0.0
    emit(
        f"总计: {len(results)} 个任务  成功: {len(results) - failed}  失败: {failed}  "
        f"总耗时: {elapsed:.2f} 秒  平均速度: {average:.2f} 秒/句"
    )
    if notice is not None:
        emit(one_line(notice, MAX_NOTICE_CHARS))
    elif model_line:
        emit(one_line(model_line, MAX_NOTICE_CHARS))
    # Only refused tasks can carry longer texts (never translated); cut them to keep every line short.
    items = [
        {k: v[:MAX_FIELD_CHARS] if isinstance(v, str) else v for k, v in r.items()}
        for r in results
        if r["success"] or args.include_failed
    ]
    print_results(items, not args.no_results_block)
    return 1 if args.strict and failed else 0


def run(argv: Optional[List[str]] = None) -> int:
    use_utf8_streams()
    args = parse_args(argv)
    deadline_at = time.monotonic() + args.deadline
    try:
        config = read_config(args.config)
    except (OSError, ValueError) as exc:
        emit(one_line(f"cannot read the config {args.config}: {exc}", MAX_NOTICE_CHARS))
        return 2
    batch = Batch(config["tasks"])
    if not batch.tasks:
        return finish(batch, args, "", None)

    url = args.url or os.environ.get("RETRANSLATE_URL") or DEFAULT_URL
    try:
        service = Service(url, os.environ.get("RETRANSLATE_API_KEY"))
        return finish(batch, args, translate_via_service(service, batch, config, args, deadline_at), None)
    except NoResults as exc:
        return finish(batch, args, "", str(exc))
    except ServiceDown as exc:
        no_service = str(exc)
    except (OSError, http.client.HTTPException) as exc:
        return finish(batch, args, "", f"the service at {url} stopped answering: {exc}")
    except (ValueError, LookupError, TypeError) as exc:  # a malformed answer: nothing to retry in-process
        return finish(batch, args, "", f"unexpected answer from the service at {url}: {exc}")

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    python = service_python(repo)
    if python is None:
        where = os.environ.get("RETRANSLATE_PYTHON") or os.path.join(repo, ".venv")
        return finish(
            batch,
            args,
            "",
            f"not translated: {no_service}, and the service's Python ({where}) is not "
            "there: start the service (scripts/serve.sh) or set RETRANSLATE_PYTHON",
        )
    try:
        return run_cli(python, repo, args, deadline_at)
    except OSError as exc:
        return finish(batch, args, "", f"not translated: {no_service}, and {python} cannot run: {exc}")
    except subprocess.TimeoutExpired:
        return finish(batch, args, "", f"not translated: the in-process CLI ({python}) did not finish in time")


def main() -> int:
    code = run()
    seal_output()
    return code


if __name__ == "__main__":
    sys.exit(main())
