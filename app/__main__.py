"""`python -m app` (or `retranslate-serve`): serve on RETRANSLATE_HOST:RETRANSLATE_PORT.

A bad setting is one line per value naming the environment variable, and exit status 2. On SIGTERM or
Ctrl-C the app drains (see app.main); uvicorn's own graceful-shutdown bound is set a little beyond the
drain's grace, so that batches cut at the grace still get their answers written. The port is checked before
anything starts (an engine, a model load): taken, it is one line saying which setting to change, or that the
service already runs there, and exit status 1.
"""

from __future__ import annotations

import json
import math
import socket
import sys
import urllib.request

import uvicorn

from app.logs import uvicorn_log_config
from app.main import create_app
from app.settings import load_settings

# Time to write the answers of batches whose calls were cut at the grace.
ANSWER_MARGIN_S = 5.0


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


def main() -> None:
    settings = load_settings()
    problem = port_problem(settings.host, settings.port)
    if problem is not None:
        sys.stderr.write(f"retranslate: {problem}\n")
        raise SystemExit(1)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=uvicorn_log_config(),
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s + ANSWER_MARGIN_S),
    )


if __name__ == "__main__":
    main()
