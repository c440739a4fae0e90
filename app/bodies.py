"""The one place a request body becomes data: strict JSON (RFC 8259), or a 422 that says what is wrong.

FastAPI's own parsing accepts NaN and Infinity, lets 1e400 become infinity, lets lone surrogates
through (to crash the response later), answers a body that is not UTF-8 with a 400, and one nested 1,000
deep with a string `detail`. Here every one of those is a 422 in the documented shape
(`detail: [{loc, msg, type}]`), and nothing a client sends can reach a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from app.errors import InvalidRequest, PayloadTooLarge
from app.security import check_api_key, require_api_key

# Our bodies are at most four levels deep (glossary -> language -> term); this leaves room for clients
# that wrap, and none for a body built to exhaust the parser.
MAX_DEPTH = 32
MAX_INT = 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Rejected(ValueError):
    pass


def _no_constants(name: str) -> Any:
    raise _Rejected(f"{name} is not JSON (RFC 8259 has no NaN or Infinity): send a number or null")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Rejected(f"the number {text[:40]} is out of range: send a number a double can hold")
    return value


def _bounded(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise _Rejected(f"the number {text[:40]}... is out of range: integers are at most {MAX_INT}")
    value = int(text)
    if abs(value) > MAX_INT:
        raise _Rejected(f"the number {text} is out of range: integers are at most {MAX_INT}")
    return value


def parse_body(raw: bytes) -> Any:
    """`raw` as JSON, or InvalidRequest naming the problem (and where it is)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte order mark: RFC 8259 lets a parser ignore it
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(
            f"the body is not UTF-8 (byte {exc.start} is 0x{raw[exc.start]:02x}): send JSON encoded as UTF-8",
            type_="json_invalid",
        ) from None
    try:
        value = json.loads(text, parse_constant=_no_constants, parse_float=_finite, parse_int=_bounded)
    except _Rejected as exc:
        raise InvalidRequest(str(exc), type_="json_invalid") from None
    except RecursionError:
        raise InvalidRequest(
            f"the body is nested too deep: at most {MAX_DEPTH} levels of arrays and objects", type_="json_invalid"
        ) from None
    except ValueError as exc:  # JSONDecodeError, or a number Python will not read
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)[:200]
        raise InvalidRequest(f"the body is not valid JSON: {message}{where}", type_="json_invalid") from None
    _check_tree(value)
    return value


def _check_tree(value: Any) -> None:
    """Depth and text of every node, without recursion (the body decides how deep it goes)."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ("body",))]
    while stack:
        node, loc = stack.pop()
        if len(loc) - 1 > MAX_DEPTH:
            raise InvalidRequest(
                f"the body is nested too deep: at most {MAX_DEPTH} levels of arrays and objects",
                loc=loc[:MAX_DEPTH],
                type_="json_invalid",
            )
        if isinstance(node, str):
            _check_text(node, loc)
        elif isinstance(node, dict):
            for key, item in node.items():
                _check_text(key, (*loc, key))
                stack.append((item, (*loc, key)))
        elif isinstance(node, list):
            stack.extend((item, (*loc, index)) for index, item in enumerate(node))


def _check_text(text: str, loc: tuple[str | int, ...]) -> None:
    found = _SURROGATE.search(text)
    if found is not None:
        where = tuple(
            part if isinstance(part, int) else part.encode("utf-8", "backslashreplace").decode() for part in loc
        )
        raise InvalidRequest(
            f"the text holds a lone surrogate (\\u{ord(found.group(0)):04x}), which is not valid Unicode: "
            "send text as UTF-8, or escape characters outside the BMP as a surrogate pair",
            loc=where,
            type_="string_unicode",
        )


# A task's required key, counted in the raw bytes: an unescaped `"source":` can only be a JSON key.
_TASK_KEY = re.compile(rb'"source"\s*:')


def count_tasks(raw: bytes) -> int:
    """At least how many tasks a body holds, without parsing it (one C scan, ~20 ms for 17 MB): parsing and
    validating 240,000 tasks holds the event loop for seconds, a thread would not help (json.loads keeps the
    GIL), so a body over RETRANSLATE_MAX_TASKS is refused on this count."""
    return len(_TASK_KEY.findall(raw))


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            raw = await self.body()
            settings = getattr(getattr(self.scope.get("app"), "state", None), "settings", None)
            if settings is not None:
                counted = count_tasks(raw)
                if counted > settings.max_tasks:
                    raise PayloadTooLarge(
                        f"{counted} tasks in one request (counted before parsing); the limit is "
                        f"{settings.max_tasks} (RETRANSLATE_MAX_TASKS): split the batch"
                    )
            self._json = parse_body(raw)
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body goes through `parse_body`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        keyed = any(dep.call is require_api_key for dep in self.dependant.dependencies)

        async def strict(request: Request) -> Response:
            if keyed:  # the key before the body: a keyless client costs no read and no parsing
                check_api_key(request.app.state.settings, request)
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
