#!/usr/bin/env python3
"""Drop-in replacement for LocalClip-Editor's batch_retranslate_ollama.py.

    python batch_retranslate.py CONFIG.json [--include-failed] [--strict] [--keep-loaded] [--deadline S]
                                            [--no-results-block] [--no-model-fallback] [--allow-demo] [--url URL]

The editor runs this file with its own Python (3.8 or later), which has none of the service's dependencies.
Everything about the editor's protocol (the config, the model choice, the output and its rules) lives in
`app/editor_protocol.py` of this same checkout, standard library only, imported from it: the CLI and this
file cannot drift.

1. When the retranslate service answers (RETRANSLATE_URL, default http://127.0.0.1:8642; RETRANSLATE_API_KEY
   is sent as a bearer token when set), the work goes there (POST /retranslate/stream, for progress). These
   and RETRANSLATE_CLI_DEADLINE_S come from the environment, else from the checkout's `.env`, as for the CLI.
2. Otherwise the in-process CLI runs with the service's own interpreter (RETRANSLATE_PYTHON, else the
   project's .venv) as `python -m app.cli CONFIG.json ...`; its output passes through.
3. Whatever fails, the output ends the same way: one line saying what happened and how to fix it, then the
   list, and exit code 0.
"""

import collections
import os
import subprocess
import sys
import threading
from types import ModuleType
from typing import Any, Deque, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTOCOL = os.path.join(REPO, "app", "editor_protocol.py")


def load_protocol() -> ModuleType:
    """`app.editor_protocol` of this checkout (it and `app.vocabulary` are standard library only)."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    from app import editor_protocol

    return editor_protocol


def service_python() -> Optional[str]:
    explicit = os.environ.get("RETRANSLATE_PYTHON")
    if explicit:
        return explicit if os.path.isfile(explicit) else None
    for candidate in (
        os.path.join(REPO, ".venv", "bin", "python"),
        os.path.join(REPO, ".venv", "Scripts", "python.exe"),
    ):
        if os.path.isfile(candidate):
            return candidate
    return None


def _pump_stderr(stream: Any, tail: Deque[str]) -> None:
    """The CLI's diagnostics reach the editor as they come (it merges stderr); the last lines are kept to say
    why the CLI failed, if it does."""
    for raw in stream:
        line = raw.decode("utf-8", "replace")
        sys.stderr.write(line)
        sys.stderr.flush()
        if line.strip():
            tail.append(line.strip())


def run_cli(protocol: ModuleType, python: str, args: Any, deadline: Any, url: str) -> Tuple[Optional[str], int]:
    """The in-process CLI, its output passed through as it comes. Returns (None, its exit code) when it
    printed its list, else (why it could not, 0)."""
    command: List[str] = [python, "-m", "app.cli", os.path.abspath(args.config)]
    command += ["--deadline", f"{max(deadline.remaining(), 0.001):.3f}", "--no-service-at", url]
    command += protocol.cli_flags(args)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        return f"{python} cannot run: {exc}", 0
    tail: Deque[str] = collections.deque(maxlen=5)
    pump = threading.Thread(target=_pump_stderr, args=(proc.stderr, tail), daemon=True)
    pump.start()
    last = ""
    assert proc.stdout is not None
    # Bounded by the CLI's own deadline; this guard is for a CLI that hangs anyway (the editor would wait
    # forever in one of its callers).
    guard = threading.Timer(deadline.remaining() + 60.0, proc.kill)
    guard.start()
    try:
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.strip():
                last = line.strip()
        proc.wait()
    finally:
        guard.cancel()
    pump.join(5)
    if last in ("]", "[]"):  # the CLI's list came last: its output is complete
        return None, proc.returncode
    why = tail[-1] if tail else f"it exited with code {proc.returncode} without a result list"
    return f"the in-process fallback ({python}) failed: {why}", 0


def run(protocol: ModuleType, argv: Optional[List[str]]) -> int:
    protocol.use_utf8_streams()
    args = protocol.parse_args(
        "batch_retranslate.py",
        argv,
        url_help=f"the service's URL (default: RETRANSLATE_URL, else {protocol.DEFAULT_URL})",
    )
    # Like the CLI and the service: the environment first, then the checkout's .env (one key for all).
    env = {**protocol.read_env_file(os.path.join(REPO, ".env")), **os.environ}
    deadline = protocol.Deadline(protocol.deadline_seconds(args, env=env))
    try:
        config = protocol.read_config(args.config)
    except protocol.ConfigError as exc:
        return int(protocol.finish_run(protocol.Batch([]), protocol.Outcome(notice=str(exc)), args, deadline))
    batch = protocol.Batch(config["tasks"])
    if not batch.pending():
        return int(protocol.finish_run(batch, protocol.Outcome(), args, deadline))

    url = (args.url or env.get("RETRANSLATE_URL") or protocol.DEFAULT_URL).rstrip("/")
    try:
        client = protocol.ServiceClient(url, env.get("RETRANSLATE_API_KEY") or None)
        outcome = protocol.translate_via_service(client, batch, config.get("model"), args, deadline)
    except protocol.NoResults as exc:
        outcome = protocol.Outcome(notice=str(exc))
    except protocol.ServiceDown:
        python = service_python()
        if python is None:
            where = os.environ.get("RETRANSLATE_PYTHON") or os.path.join(REPO, ".venv")
            problem: Optional[str] = (
                f"the in-process fallback cannot run: the service's Python ({where}) is not there (set "
                "RETRANSLATE_PYTHON to it, or run `python scripts/serve.py` once to create .venv)"
            )
        else:
            problem, code = run_cli(protocol, python, args, deadline, url)
            if problem is None:
                return code
        outcome = protocol.Outcome(notice=protocol.no_service_notice(url, problem))
    return int(protocol.finish_run(batch, outcome, args, deadline))


def main() -> int:
    try:
        protocol = load_protocol()
    except Exception as exc:  # without the protocol module: still one line saying why, and the list
        sys.stdout.write(
            f"not translated: cannot load {PROTOCOL} ({exc}); use a complete checkout of retranslate\n[]\n"
        )
        sys.stdout.flush()
        return 0
    code = run(protocol, sys.argv[1:])
    protocol.seal_output()
    return code


if __name__ == "__main__":
    sys.exit(main())
