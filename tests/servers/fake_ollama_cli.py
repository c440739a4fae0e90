"""An ``ollama``-like command line backed by the fake server (standard library only).

Tests that exercise the service's "spawn/inspect a local Ollama" code put an
executable named ``ollama`` (see :func:`write_fake_ollama_executable`) first on
PATH.  Supported, with the real CLI's output shapes (ollama/ollama cmd/cmd.go):

* ``ollama serve``      run the fake in the foreground on OLLAMA_HOST (SIGTERM stops
                        it; extra config from the FAKE_OLLAMA_CONFIG JSON env var)
* ``ollama list``/``ls`` GET /api/tags and print NAME / ID / SIZE / MODIFIED
* ``ollama ps``         GET /api/ps
* ``ollama stop MODEL`` POST /api/show, then the unload request
                        (POST /api/generate {"model": MODEL, "keep_alive": 0})
* ``ollama pull MODEL`` POST /api/pull, printing the progress statuses
* ``ollama --version``  GET /api/version -> "ollama version is X"

Like the real client, a server that cannot be reached gives
"Error: could not connect to ollama server, run 'ollama serve' to start it" and
exit status 1.  Must run on Python 3.8+.
"""

from __future__ import annotations

import calendar
import json
import os
import stat
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.servers import fake_ollama

CLIENT_VERSION = fake_ollama.DEFAULT_VERSION
NOT_RUNNING = "could not connect to ollama server, run 'ollama serve' to start it"
USAGE = """Large language model runner

Usage:
  ollama [flags]
  ollama [command]

Available Commands:
  serve       Start ollama
  pull        Pull a model from a registry
  list        List models
  ps          List running models
  stop        Stop a running model

Flags:
  -h, --help      help for ollama
  -v, --version   Show version information
"""


class _ApiError(Exception):
    """A non-2xx reply: the server's {"error": ...} text."""


class _Unreachable(Exception):
    """Nothing listens at OLLAMA_HOST."""


def base_url() -> str:
    """Client view of OLLAMA_HOST (envconfig.ConnectableHost: wildcard -> loopback)."""
    raw = os.environ.get("OLLAMA_HOST", "")
    host, port = fake_ollama.parse_ollama_host(raw)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    scheme = "https" if raw.strip().startswith("https://") else "http"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def _request(method: str, path: str, body: Any = None, timeout: float = 30.0) -> Any:
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(base_url() + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")
        try:
            message = json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            message = text
        raise _ApiError(str(message)) from None
    except (urllib.error.URLError, ConnectionError, OSError) as exc:
        raise _Unreachable(str(exc)) from None
    lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return lines if len(lines) != 1 else lines[0]


def human_bytes(size: int) -> str:
    """format.HumanBytes: decimal units, one decimal below 10."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            value = size / scale
            if value >= 10 or value == int(value):
                return f"{int(value)} {unit}"
            return f"{value:.1f} {unit}"
    return f"{size} B"


def human_time_ago(stamp: str) -> str:
    """A coarse format.HumanTime ("2 days ago") for an RFC 3339 timestamp."""
    try:
        then = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return "Unknown"
    seconds = max(0, int(time.time() - then))
    for unit, length in (("year", 31536000), ("month", 2592000), ("week", 604800), ("day", 86400), ("hour", 3600)):
        if seconds >= length:
            n = seconds // length
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    if seconds >= 60:
        n = seconds // 60
        return f"{n} minute{'s' if n > 1 else ''} ago"
    if seconds < 1:
        return "Less than a second ago"
    return f"{seconds} second{'s' if seconds > 1 else ''} ago"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """tablewriter as cmd.go sets it up: left aligned, no border, 4-space padding."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    # (no zip(strict=...): that is 3.10+, and this runs on 3.8)
    lines = ["    ".join(row[i].ljust(w) for i, w in enumerate(widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines) + "\n"


def cmd_list(args: list[str]) -> int:
    models = _request("GET", "/api/tags")["models"]
    prefix = args[0].lower() if args else ""
    rows = [
        [m["name"], m["digest"][:12], human_bytes(int(m["size"])), human_time_ago(m["modified_at"])]
        for m in models
        if m["name"].lower().startswith(prefix)
    ]
    sys.stdout.write(_table(["NAME", "ID", "SIZE", "MODIFIED"], rows))
    return 0


def cmd_ps(args: list[str]) -> int:
    models = _request("GET", "/api/ps")["models"]
    rows = [
        [m["name"], m["digest"][:12], human_bytes(int(m["size"])), "100% GPU", str(m.get("context_length", "")), "-"]
        for m in models
    ]
    sys.stdout.write(_table(["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"], rows))
    return 0


def cmd_stop(args: list[str]) -> int:
    if len(args) != 1:
        print(f"Error: accepts 1 arg(s), received {len(args)}", file=sys.stderr)
        return 1
    model = args[0]
    try:
        _request("POST", "/api/show", {"model": model})
        _request("POST", "/api/generate", {"model": model, "keep_alive": 0})
    except _ApiError as exc:
        if "not found" in str(exc):
            raise _ApiError(f'couldn\'t find model "{model}" to stop') from None
        raise
    return 0


def cmd_pull(args: list[str]) -> int:
    if len(args) != 1:
        print(f"Error: accepts 1 arg(s), received {len(args)}", file=sys.stderr)
        return 1
    result = _request("POST", "/api/pull", {"model": args[0]}, timeout=600)
    for line in result if isinstance(result, list) else [result]:
        if "error" in line:
            raise _ApiError(line["error"])
        print(line.get("status", ""), file=sys.stderr)
    return 0


def cmd_version() -> int:
    try:
        server = _request("GET", "/api/version")["version"]
    except (_Unreachable, _ApiError):
        print("Warning: could not connect to a running Ollama instance")
        server = ""
    if server:
        print(f"ollama version is {server}")
    if server != CLIENT_VERSION:
        print(f"Warning: client version is {CLIENT_VERSION}")
    return 0


def main(argv: list[str]) -> int:
    """Entry point: ``main(sys.argv[1:])``; returns the exit status."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    command, args = argv[0], list(argv[1:])
    if command in ("-v", "--version", "version"):
        return cmd_version()
    if command == "serve":
        host, port = fake_ollama.parse_ollama_host(os.environ.get("OLLAMA_HOST"))
        return fake_ollama.serve(host, port, fake_ollama.config_from_env())
    commands = {"list": cmd_list, "ls": cmd_list, "ps": cmd_ps, "stop": cmd_stop, "pull": cmd_pull}
    if command not in commands:
        print(f'Error: unknown command "{command}" for "ollama"', file=sys.stderr)
        return 1
    try:
        return commands[command](args)
    except _Unreachable:
        print(f"Error: {NOT_RUNNING}", file=sys.stderr)
    except _ApiError as exc:
        print(f"Error: {exc}", file=sys.stderr)
    return 1


def write_fake_ollama_executable(directory: Path, python: str = sys.executable) -> Path:
    """Write an executable ``ollama`` into ``directory`` that runs :func:`main`.

    Put ``directory`` first on PATH to make the service find the fake instead
    of a real Ollama.  Returns the path of the script.
    """
    repo_root = Path(__file__).resolve().parents[2]
    path = Path(directory) / "ollama"
    path.write_text(
        f"#!{python}\n"
        f"import sys; sys.path.insert(0, {str(repo_root)!r}); "
        "from tests.servers.fake_ollama_cli import main; sys.exit(main(sys.argv[1:]))\n",
        encoding="utf-8",
    )
    path.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)  # 0o755
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
