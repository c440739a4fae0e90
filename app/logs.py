"""Logging: one format with the request id on every line, and user or model text made harmless.

Every argument of every log record passes `SafeTextFilter`: control characters (a newline in a task_id,
a carriage return in a model's answer) are shown escaped, so no input can write a line of its own into the
log, and long texts are cut (a 20 MB answer is not logged in full).
"""

from __future__ import annotations

import copy
import logging
import re
from contextvars import ContextVar
from typing import Any

from uvicorn.config import LOGGING_CONFIG

request_id: ContextVar[str] = ContextVar("request_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s"
MAX_ARG_CHARS = 500

# C0/C1 controls, DEL, the characters str.splitlines() also breaks at, and the bidi controls (a right-to-left
# override in a subtitle would show a log line's text reordered: "Trojan Source").
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def escape_for_log(text: str, limit: int = MAX_ARG_CHARS) -> str:
    """`text` on one line, control characters escaped (`\\n`, `\\x1b`, ...), lone surrogates escaped, cut."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record (for `%(request_id)s` in formats)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class SafeTextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_safe(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _safe(value) for key, value in record.args.items()}
        if isinstance(record.msg, str) and _CONTROL.search(record.msg) and not record.args:
            record.msg = escape_for_log(record.msg, 4 * MAX_ARG_CHARS)
        return True


def _safe(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    return escape_for_log(value if isinstance(value, str) else str(value))


def _add_filters(handler: logging.Handler) -> None:
    for kind in (RequestIdFilter, SafeTextFilter):
        if not any(isinstance(f, kind) for f in handler.filters):
            handler.addFilter(kind())


def configure_logging(level: str) -> None:
    """Our loggers log through the root's handlers (one is added if there is none); uvicorn's handlers,
    whoever configured them, get the same filters."""
    root = logging.getLogger()
    if not root.handlers:
        stream = logging.StreamHandler()
        stream.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(stream)
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "app"):
        for handler in logging.getLogger(name).handlers:
            _add_filters(handler)
    logging.getLogger("app").setLevel(level.upper())


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging for `python -m app`: the request id on every line (access lines included), our
    loggers through the same handler and format, and every line's text made harmless."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {
        "request_id": {"()": "app.logs.RequestIdFilter"},
        "safe_text": {"()": "app.logs.SafeTextFilter"},
    }
    for handler in config["handlers"].values():
        handler["filters"] = ["request_id", "safe_text"]
    config["formatters"]["default"]["fmt"] = "%(levelprefix)s [%(request_id)s] %(message)s"
    config["formatters"]["access"]["fmt"] = (
        '%(levelprefix)s [%(request_id)s] %(client_addr)s - "%(request_line)s" %(status_code)s'
    )
    config["formatters"]["app"] = {"format": LOG_FORMAT}
    config["handlers"]["app"] = {
        "class": "logging.StreamHandler",
        "formatter": "app",
        "stream": "ext://sys.stderr",
        "filters": ["request_id", "safe_text"],
    }
    config["loggers"]["app"] = {"handlers": ["app"], "propagate": False}
    return config
