"""`python -m app`: serve on RETRANSLATE_HOST:RETRANSLATE_PORT.

On SIGTERM/SIGINT uvicorn stops accepting connections and gives requests in progress
RETRANSLATE_SHUTDOWN_GRACE_S to finish. We also tell the translator to drain: calls already at the
backend finish, lines not yet sent fail at once with "the service is shutting down", so a batch in
progress answers with per-item errors instead of being cut off. The lifespan then stops any Ollama or
llama-server the service spawned.
"""

from __future__ import annotations

import copy
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.config import LOGGING_CONFIG

from app.main import LOG_FORMAT, create_app
from app.settings import get_settings


class _DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        translator = getattr(self._app.state, "translator", None)  # set by the lifespan
        if translator is not None:
            translator.drain()
        super().handle_exit(sig, frame)


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with the request id on every line (access lines included)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"request_id": {"()": "app.middleware.RequestIdFilter"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["request_id"]
    config["formatters"]["default"]["fmt"] = "%(levelprefix)s [%(request_id)s] %(message)s"
    config["formatters"]["access"]["fmt"] = (
        '%(levelprefix)s [%(request_id)s] %(client_addr)s - "%(request_line)s" %(status_code)s'
    )
    # Our own loggers go through the same handler and format.
    config["formatters"]["app"] = {"format": LOG_FORMAT}
    config["handlers"]["app"] = {
        "class": "logging.StreamHandler",
        "formatter": "app",
        "stream": "ext://sys.stderr",
        "filters": ["request_id"],
    }
    config["loggers"]["app"] = {"handlers": ["app"], "propagate": False}
    return config


def main() -> None:
    settings = get_settings()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=_log_config(),
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None,
    )
    _DrainingServer(config, app).run()


if __name__ == "__main__":
    main()
