"""`python -m app` (or `retranslate-serve`): serve on RETRANSLATE_HOST:RETRANSLATE_PORT.

A bad setting is one line per value naming the environment variable, and exit status 2. On SIGTERM or
Ctrl-C the app drains (see app.main); uvicorn's own graceful-shutdown bound is set a little beyond the
drain's grace, so that batches cut at the grace still get their answers written. The port is checked before
anything starts (an engine, a model load): taken, it is one line saying which setting to change, or that the
service already runs there, and exit status 1.
"""

from __future__ import annotations

import math
import sys

import uvicorn

from app.first_run import port_problem
from app.logs import uvicorn_log_config
from app.main import create_app
from app.settings import load_settings

# Time to write the answers of batches whose calls were cut at the grace.
ANSWER_MARGIN_S = 5.0


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
