"""What a new user meets first: what to do next when no backend answers (one text, shown by /health, the
docs page and `scripts/serve.py`'s console, which reads it through the service's own Python), the advice for a
missing model, and a port already in use (checked by `python -m app` and by serve.py before anything starts).
Light on imports: serve.py loads it with the settings on every start."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterable

from app.vocabulary import MODEL_PREFERENCE, RECOMMENDED_MODEL, same_model

# Ollama's own install commands, per OS (https://ollama.com/download).
INSTALL_OLLAMA = (
    ("Windows", "winget install Ollama.Ollama"),
    ("macOS", "brew install ollama"),
    ("Linux", "curl -fsSL https://ollama.com/install.sh | sh"),
)


def install_lines() -> list[str]:
    return [f"{system}: `{command}`" for system, command in INSTALL_OLLAMA]


def next_steps() -> str:
    """One paragraph: install Ollama and pull the recommended model, or point at a server the user has."""
    installs = "; ".join(install_lines())
    return (
        f"To translate, install Ollama ({installs}; or the installer from https://ollama.com/download), then "
        f"`ollama pull {RECOMMENDED_MODEL}` and start the service again (`python scripts/serve.py`): Ollama is "
        "picked up with no setting. Or point RETRANSLATE_OPENAI_BASE_URL at an OpenAI-compatible server you have "
        "(its /v1 URL, with RETRANSLATE_BACKEND=openai), or set RETRANSLATE_EMBEDDED_MODEL_PATH to a GGUF model "
        "for the embedded llama-server. To see the pipeline only: `python scripts/serve.py --demo` (builds the "
        "embedded engine with a tiny demo model, not on Windows; its translations are poor)."
    )


def next_steps_markdown() -> str:
    """The same for the docs page, as a list."""
    installs = "\n".join(f"   - {line}" for line in install_lines())
    return (
        "**No backend is ready yet.** To translate:\n\n"
        f"1. Install Ollama (or the installer from https://ollama.com/download):\n{installs}\n"
        f"2. `ollama pull {RECOMMENDED_MODEL}`\n"
        "3. Start the service again: `python scripts/serve.py` (Ollama is picked up with no setting).\n\n"
        "Or point `RETRANSLATE_OPENAI_BASE_URL` at an OpenAI-compatible server you have (with "
        "`RETRANSLATE_BACKEND=openai`). `GET /health` says what is missing now."
    )


def missing_model_fix(named: str, installed: Iterable[str], *, ollama: bool) -> str:
    """How to fix a named model the backend does not have. With Ollama the first of the preference list
    comes first (the editor's old default, qwen2.5:32b, is ~20 GB; the recommended one ~2.5 GB), then
    pulling the named one; then the models it has, when it has any."""
    have = sorted(installed)[:20]
    ways = []
    if ollama:
        first = MODEL_PREFERENCE[0]
        if not same_model(named, first):
            ways.append(
                f"`ollama pull {first}` (recommended: the first of the preference list) and leave the model unset "
                "(RETRANSLATE_MODEL, the request's model) so that the service picks it"
            )
        ways.append(f"`ollama pull {named}`")
    if have:
        ways.append(f"set RETRANSLATE_MODEL (or the request's model) to one it has: {', '.join(have)}")
    elif not ollama:
        ways.append("set RETRANSLATE_MODEL (or the request's model) to a model the server offers")
    return "; or ".join(ways) + ("" if have else " (no model is installed yet)" if ollama else "")


# Asked directly, never through http_proxy: it is this machine.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _is_this_service(host: str, port: int) -> bool:
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "[::1]" if host == "::" else host
    target = f"[{target}]" if ":" in target and not target.startswith("[") else target
    try:
        with _DIRECT.open(f"http://{target}:{port}/health", timeout=3) as response:
            body = json.loads(response.read(65536))
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and "backend" in body and "status" in body


def port_problem(host: str, port: int) -> str | None:
    """Why the service cannot bind host:port, in words naming the setting to change; None when it can."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"RETRANSLATE_HOST={host!r} is not an address of this machine ({exc}): set RETRANSLATE_HOST"
    family, _, _, _, address = infos[0]
    try:
        # The same SO_REUSEADDR as uvicorn's own socket: a port in TIME_WAIT is free for both.
        with socket.create_server(address[:2], family=family):
            return None
    except OSError as exc:
        if _is_this_service(host, port):
            return (
                f"the service already runs at http://{host}:{port} (its /health answers): use it, or set "
                "RETRANSLATE_PORT to another port to start a second one"
            )
        return (
            f"port {port} on {host} is in use by another program ({exc.strerror or exc}): set RETRANSLATE_PORT "
            "to a free port (or stop that program)"
        )
