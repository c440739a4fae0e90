"""A protocol-faithful fake Ollama server for tests (standard library only).

It speaks the parts of the Ollama HTTP API the retranslate service uses, with
the real field names, status codes and error texts, and "translates" Chinese
subtitle lines deterministically so tests can assert on exact answers.  Knobs
let a test inject latency, limited parallelism with a bounded queue (503 busy),
badly shaped model answers, and transport failures (500, hang, reset, ...).
A ``format`` ("json" or a JSON schema; /v1 ``response_format``) is obeyed like a
constrained model would; ``raw_by_source`` makes the model say exactly a given
string; ``pad_response_bytes`` inflates answer bodies; ``version`` selects the
version-dependent behaviour listed below.  Native answers carry Ollama's
``total_duration`` (from the request's arrival, the wait for a slot included),
``load_duration``, ``prompt_eval_duration`` and ``eval_duration`` in ns, all
measured (``durations: False`` drops them); ``v1_timings`` adds llama-server's
``timings`` to /v1 answers.  ``parallel`` (the slots) can be changed at any
time, on the same port, by ``configure``/``/_fake/config``.

Run it in-process (``FakeOllama(...).start()``) or as a process
(``python -m tests.servers.fake_ollama``); both are driven through the same
config/stats, the process via ``/_fake/config``, ``/_fake/stats`` and
``/_fake/reset``.  Must run on Python 3.8+.

Sources checked (ollama/ollama snapshot fb30760, tag v0.33.0-rc2, compared
with tags v0.5.7, v0.9.6, v0.11.10, v0.12.0, v0.12.6, v0.13.0, v0.20.0):
  docs/api.md, docs/api/openai-compatibility.mdx, docs/api/errors.mdx,
  docs/faq.mdx; server/routes.go (GenerateHandler, ChatHandler, ShowHandler,
  PullHandler, PsHandler, handleScheduleError, waitForStream, streamResponse,
  route table); server/sched.go (ErrMaxQueue, pending queue); server/images.go
  and server/download.go (pull progress lines); api/types.go (response
  structs, Duration and ThinkValue parsing); openai/openai.go and
  middleware/openai.go (/v1 shapes, NewError, thinkFromReasoningEffort, no
  keep_alive field); envconfig/config.go (OLLAMA_HOST, OLLAMA_NUM_PARALLEL=1,
  OLLAMA_MAX_QUEUE=512, OLLAMA_KEEP_ALIVE=5m); cmd/cmd.go (list/stop/
  --version); issues ollama/ollama#9355 and #11458 (keep_alive is ignored on
  /v1/chat/completions).

Version-dependent behaviour follows the "version" knob (default 0.13.0):
  * ``format``: api/types.go has ``Format string`` up to v0.4.7 and
    ``Format json.RawMessage`` since v0.5.0 (structured outputs).  Before
    0.5.0 an object is a gin bind error, 400 ``json: cannot unmarshal object
    into Go struct field ChatRequest.format of type string`` (issues
    ollama/ollama#7991 for GenerateRequest, ollama/ollama-python#428 "status
    code: 400"), and GenerateHandler answers 400 ``format must be empty or
    "json"`` to other strings (v0.4.7 server/routes.go).  Since v0.5.3
    llm/server.go Completion fails a format that is neither "json" nor an
    object: ``invalid format: %q; expected "json" or a valid JSON Schema
    object`` (a 500 from waitForStream/streamResponse); 0.5.0-0.5.2 only
    logged it.  null and "" mean "not set".
  * /v1 ``response_format`` (openai/openai.go FromChatRequest): "json_object"
    -> format "json" (all versions); "json_schema" -> format =
    json_schema.schema since v0.5.0 (ignored before: ResponseFormat had only
    ``type``); any other type -> no format.
  * /v1 errors coming from the native handler go through BaseWriter.writeError,
    which used ``NewError(http.StatusInternalServerError, ...)`` (type
    "api_error" whatever the status) until v0.17.x and
    ``NewError(w.ResponseWriter.Status(), ...)`` since v0.18.0.
  * /v1 stream deltas: every chunk is ``{"role":"assistant","content":...}``
    and the done chunk carries the finish_reason with content "" until
    v0.32.5; since v0.32.6 (openai.Delta, all omitempty) the role is only in
    the first chunk and finish_reason comes in its own chunk with ``{}``.
  * reasoning_effort: high/medium/low/none (v0.12.4+), plus max (v0.22.0+),
    plus minimal/xhigh/ultra mapping (v0.33.0+); native think "max" since
    v0.22.0 (the error texts change accordingly).
  * /api/tags "capabilities" since v0.30.0 (an earlier add in #10174 was
    reverted before release, #11004); /api/show "capabilities" since v0.6.4,
    "tensors" since v0.7.0; /api/ps "context_length" since v0.10.0; /api/show
    404 names the model by DisplayShortest ("x:latest") since v0.30.0, as
    typed before.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import hashlib
import io
import json
import math
import os
import random
import re
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# --------------------------------------------------------------------------
# Real Ollama texts (see the sources above)
# --------------------------------------------------------------------------

#: server/sched.go ErrMaxQueue (note the two spaces).
BUSY_MESSAGE = "server busy, please try again.  maximum pending requests exceeded"
#: llm/llama_server.go, the usual text of a runner failure (500).
RUNNER_ERROR = "an error was encountered while running the model: unexpected EOF"
#: server/images.go PullModel wrapping os.ErrNotExist from the registry.
PULL_NOT_FOUND = "pull model manifest: file does not exist"
#: middleware/openai.go for an empty messages list.
EMPTY_MESSAGES = "[] is too short - 'messages'"
#: llm/server.go Completion (v0.5.3+), for a format neither "json" nor an object.
INVALID_FORMAT = 'invalid format: {raw}; expected "json" or a valid JSON Schema object'
#: server/routes.go GenerateHandler up to v0.4.7, for a format string other than "json".
FORMAT_MUST_BE_JSON = 'format must be empty or "json"'
#: What an OpenAI-style server without structured outputs answers (reject_response_format).
UNSUPPORTED_RESPONSE_FORMAT = "Unsupported parameter: 'response_format' is not supported with this model."
DEFAULT_VERSION = "0.13.0"
DEFAULT_KEEP_ALIVE_S = 300.0
#: api.Duration maps negative values to math.MaxInt64 ns ("forever").
FOREVER_S = (2**63 - 1) / 1e9
_STARTED_WALL = time.time()

# --------------------------------------------------------------------------
# Deterministic "translation"
# --------------------------------------------------------------------------

_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("river", "light", "moon", "friend", "road", "rain", "home", "star",
           "wind", "song", "tree", "stone", "heart", "night", "door", "sea"),
    "fr": ("rivière", "lumière", "lune", "ami", "route", "pluie", "maison", "étoile",
           "vent", "chanson", "arbre", "pierre", "coeur", "nuit", "porte", "mer"),
    "de": ("Fluss", "Licht", "Mond", "Freund", "Weg", "Regen", "Haus", "Stern",
           "Wind", "Lied", "Baum", "Stein", "Herz", "Nacht", "Tür", "Meer"),
    "es": ("río", "luz", "luna", "amigo", "camino", "lluvia", "casa", "estrella",
           "viento", "canción", "árbol", "piedra", "corazón", "noche", "puerta", "mar"),
    "id": ("sungai", "cahaya", "bulan", "teman", "jalan", "hujan", "rumah", "bintang",
           "angin", "lagu", "pohon", "batu", "hati", "malam", "pintu", "laut"),
}  # fmt: skip
_NO_IDEOGRAPH_ANSWER = {"ko": "네", "ja": "はい"}
_TARGET_RE = re.compile(r"^\s*Target language:\s*(.*?)\s*\(([A-Za-z-]+)\)\s*$", re.MULTILINE)

STYLES = (
    "json", "fenced", "think_tags", "thinking_field", "always_thinks", "plain", "quoted",
    "placeholder", "empty", "cutoff", "echo", "long_then_short", "hanzi_then_clean",
    "never_comply_long", "never_comply_hanzi", "chinese",
)  # fmt: skip
#: Styles whose output is not a JSON document: a ``format`` grammar turns them into the bare object.
NOT_JSON_STYLES = ("plain", "quoted", "fenced", "think_tags")
FAILURE_MODES = ("http_500", "busy_503", "hang", "malformed", "reset", "model_404")


def is_ideograph(ch: str) -> bool:
    """CJK Unified Ideographs block, the only range the fake "translates"."""
    return "\u4e00" <= ch <= "\u9fff"


def translate(source: str, lang: str) -> str:
    """The fake model's answer for ``source`` in ``lang`` (deterministic)."""
    ideographs = [c for c in source if is_ideograph(c)]
    if not ideographs:
        return _NO_IDEOGRAPH_ANSWER.get(lang, "okay")
    if lang == "ko":
        return "".join(chr(0xAC00 + ord(c) % 11172) for c in ideographs)
    if lang == "ja":
        return "".join(chr(0x3041 + ord(c) % 86) for c in ideographs)
    words = _WORDS.get(lang, _WORDS["en"])
    # one word per two ideographs (rounded up), keyed by the pair's first one
    text = " ".join(words[ord(c) % len(words)] for c in ideographs[::2])
    return text[:1].upper() + text[1:]


def _content_text(content: Any) -> str:
    """Message content as text; OpenAI clients may send a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def parse_prompt(text: str) -> tuple[str, str]:
    """Read (source line, language code) out of the service's user message that holds the line.

    The language comes from ``Target language: <Name> (<code>)``; the source is
    the last block between a ``<source>`` line and a ``</source>`` line.  What
    is missing falls back to the whole message / ``en``, like a model would
    just answer whatever it was given.
    """
    lang = "en"
    match = _TARGET_RE.search(text)
    if match:
        lang = match.group(2).lower()
    blocks: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        marker = line.strip()
        if marker == "<source>":
            current = []
        elif marker == "</source>" and current is not None:
            blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    source = blocks[-1] if blocks else text
    return source, lang


# --------------------------------------------------------------------------
# Ollama value parsing (api/types.go, envconfig/config.go)
# --------------------------------------------------------------------------

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_NUM_RE = re.compile(r"\d+\.?\d*|\.\d+")
_GO_UNIT_RE = re.compile(r"[^\d.]+")


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds; raises ValueError with Go's message."""
    rest = text
    negative = rest[:1] == "-"
    if rest[:1] in ("-", "+"):
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f'time: invalid duration "{text}"')
    total = 0.0
    while rest:
        num = _GO_NUM_RE.match(rest)
        if not num:
            raise ValueError(f'time: invalid duration "{text}"')
        rest = rest[num.end() :]
        unit = _GO_UNIT_RE.match(rest)
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit.group() not in _GO_UNITS:
            raise ValueError(f'time: unknown unit "{unit.group()}" in duration "{text}"')
        rest = rest[unit.end() :]
        total += float(num.group()) * _GO_UNITS[unit.group()]
    return -total if negative else total


def parse_keep_alive(value: Any) -> float | None:
    """A request's keep_alive in seconds (None = absent, inf = forever).

    Numbers are seconds, strings are Go durations, negatives mean forever
    (api.Duration.UnmarshalJSON); anything else is a 400 in Ollama.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"Unsupported type: '{type(value).__name__}'")
    seconds = float(value) if not isinstance(value, str) else parse_go_duration(value)
    return math.inf if seconds < 0 else seconds


def env_keep_alive(value: str | None) -> float:
    """OLLAMA_KEEP_ALIVE as envconfig.KeepAlive reads it (default 5m)."""
    if not value:
        return DEFAULT_KEEP_ALIVE_S
    try:
        seconds = parse_go_duration(value)
    except ValueError:
        try:
            seconds = float(int(value))
        except ValueError:
            return DEFAULT_KEEP_ALIVE_S
    return math.inf if seconds < 0 else seconds


_VERSION_RE = re.compile(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?")


def version_tuple(text: Any) -> tuple[int, int, int]:
    """(major, minor, patch) of a version like "0.13.0" or "v0.33.0-rc2" (a pre-release counts as the release)."""
    match = _VERSION_RE.match(str(text))
    if not match:
        raise ValueError(f"version must look like '0.13.0', not {text!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def go_quote(raw: str) -> str:
    """Go's %q of a string/[]byte (strconv.Quote for printable text)."""
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\a": "\\a", "\b": "\\b",
               "\f": "\\f", "\v": "\\v"}  # fmt: skip
    out = []
    for ch in raw:
        if ch in escapes:
            out.append(escapes[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def go_json_kind(value: Any) -> str:
    """The JSON kind Go's UnmarshalTypeError names ("object", "array", "string", ...)."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"


def format_unmarshal_error(value: Any, kind: str) -> str:
    """The bind error of a non-string ``format`` before v0.5.0 (api.*Request.Format was a string)."""
    struct = "GenerateRequest" if kind == "generate" else "ChatRequest"
    return f"json: cannot unmarshal {go_json_kind(value)} into Go struct field {struct}.format of type string"


def format_mode(value: Any, version: tuple[int, int, int]) -> str:
    """What a (bind-valid) ``format`` does: "none", "json", "schema" (both constrain) or "invalid" (a 500)."""
    if value is None or value == "":
        return "none"
    if value == "json":
        return "json"
    if isinstance(value, dict):
        return "schema"
    # other strings/arrays/numbers: ignored up to 0.5.2 (only logged), an error since 0.5.3
    return "invalid" if version >= (0, 5, 3) else "none"


def format_from_response_format(value: Any, version: tuple[int, int, int]) -> Any:
    """openai.FromChatRequest: the native ``format`` a /v1 ``response_format`` maps to (None: no format)."""
    if not isinstance(value, dict):
        return None
    rtype = str(value.get("type") or "").strip().lower()
    if rtype == "json_object":
        return "json"
    if rtype == "json_schema" and version >= (0, 5, 0):
        schema = value.get("json_schema")
        return schema.get("schema") if isinstance(schema, dict) else None
    return None


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, ""))
    except ValueError:
        return default


def parse_ollama_host(value: str | None) -> tuple[str, int]:
    """(host, port) from OLLAMA_HOST the way ``ollama serve`` reads it.

    Accepts "host:port", "http://host:port", ":port", "host" and "[::1]:port";
    default 127.0.0.1:11434.  Like envconfig.Host, an explicit http:// or
    https:// without a port means port 80 / 443.  An empty host (":port")
    would bind every interface in Ollama; the fake binds loopback instead, as
    a test fixture has no business listening on the network.
    """
    text = (value or "").strip()
    default_port = 11434
    hostport = text
    if "://" in text:
        scheme, hostport = text.split("://", 1)
        default_port = {"http": 80, "https": 443}.get(scheme, default_port)
    hostport = hostport.split("/", 1)[0]
    host, port_text = "", ""
    if hostport.startswith("[") and "]:" in hostport:
        host, port_text = hostport[1:].split("]:", 1)
    elif hostport.count(":") == 1:
        host, port_text = hostport.split(":", 1)
    else:
        host = hostport.strip("[]")
    try:
        port = int(port_text) if port_text else default_port
        if not 0 <= port <= 65535:
            port = default_port
    except ValueError:
        port = default_port
    return host or "127.0.0.1", port


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def _qwen_details(family: str, size: str) -> dict[str, Any]:
    return {"parent_model": "", "format": "gguf", "family": family, "families": [family],
            "parameter_size": size, "quantization_level": "Q4_K_M"}  # fmt: skip


def default_models() -> dict[str, dict[str, Any]]:
    return {
        "qwen3:4b": {
            "capabilities": ["completion", "thinking", "tools"],
            "details": _qwen_details("qwen3", "4.0B"),
            "size": 2497293918,
        },
        "qwen3:4b-instruct-2507-q4_K_M": {
            "capabilities": ["completion", "tools"],
            "details": _qwen_details("qwen3", "4.0B"),
            "size": 2500683680,
        },
        "qwen2.5:32b": {
            "capabilities": ["completion", "tools"],
            "details": _qwen_details("qwen2", "32.8B"),
            "size": 19851349856,
        },
    }


def canonical_model_name(name: str) -> str:
    """Lookup key: case-insensitive, default registry/namespace dropped, ":latest" added."""
    key = name.strip().lower()
    for prefix in ("registry.ollama.ai/", "library/"):
        if key.startswith(prefix):
            key = key[len(prefix) :]
    if ":" not in key.rsplit("/", 1)[-1]:
        key += ":latest"
    return key


def display_model_name(name: str) -> str:
    """What /api/tags and /api/ps print (model.Name.DisplayShortest: tag always shown)."""
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


def _digest(name: str) -> str:
    return hashlib.sha256(("fake-ollama:" + display_model_name(name)).encode()).hexdigest()


def default_config() -> dict[str, Any]:
    """Fresh default knobs (reads OLLAMA_NUM_PARALLEL / OLLAMA_MAX_QUEUE / OLLAMA_KEEP_ALIVE)."""
    return {
        "latency_s": 0.0,
        "parallel": max(1, _env_int("OLLAMA_NUM_PARALLEL", 1)),
        "max_queue": max(0, _env_int("OLLAMA_MAX_QUEUE", 512)),
        "busy_retry_after": None,
        "models": default_models(),
        "pullable": None,
        "pull_step_s": 0.01,
        "style": "json",
        "styles_by_source": {},
        "translations": {},
        "thinking_tokens": 600,
        "failures": [],
        "hang_s": 3600.0,
        "keep_alive_s": env_keep_alive(os.environ.get("OLLAMA_KEEP_ALIVE")),
        "version": DEFAULT_VERSION,
        "not_found_style": "modern",
        # adversarial answers: {substring of the source: exact message content / thinking}, verbatim
        "raw_by_source": {},
        "raw_thinking_by_source": {},
        # extra "padding" field of this many bytes in each answer's JSON body (the last object when streaming)
        "pad_response_bytes": 0,
        # a hostile peer: every chat answer is gzip (Content-Encoding: gzip, whatever Accept-Encoding said)
        # and inflates to about this many bytes: a valid answer whose content is that long
        "gzip_bomb_bytes": 0,
        # 400 to a `format` object on /api/chat and /api/generate (as Ollama < 0.5.0 did)
        "reject_format": False,
        # 400 (OpenAI-style, param "response_format") to any /v1 response_format: a server without it
        "reject_response_format": False,
        # native answers carry total/load/prompt_eval/eval_duration (ns) as Ollama's do; False: a server without
        "durations": True,
        # /v1 answers carry llama-server's `timings` (prompt_ms, predicted_ms, ...): a llama-server stand-in
        "v1_timings": False,
        # seed mode: the answer depends on the request's seed (`options.seed`, /v1 `seed`; no seed: the
        # ask's number): over budget (the text 4 times) for this share of seeds, the plain text otherwise
        "seed_over_rate": None,
        # hold each re-ask (a follow-up after the line's answer) until this many re-asks are in flight at
        # once, or `gather_timeout_s` passes; each request's record says whether it met the others
        "gather_reasks": 0,
        "gather_timeout_s": 20.0,
    }


def _now_rfc3339(wall: float | None = None) -> str:
    """Go's time.Time JSON form in UTC, e.g. 2024-09-12T21:17:29.110811Z."""
    stamp = _dt.datetime.fromtimestamp(time.time() if wall is None else wall, _dt.timezone.utc)  # noqa: UP017 - datetime.UTC is 3.11+, this runs on 3.8
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expiry_rfc3339(expires_wall: float) -> str:
    if math.isinf(expires_wall):
        expires_wall = time.time() + FOREVER_S
    return _now_rfc3339(expires_wall)


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _compact(obj: Any) -> bytes:
    """JSON like Go's encoder: compact, UTF-8, non-ASCII unescaped.

    A lone surrogate (only from raw_by_source) has no UTF-8 form: it goes out
    as a JSON ``\\udXXX`` escape, so the client decodes that very code point.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # surrogates can only occur inside JSON strings, where an escape is valid
        return _SURROGATE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode("utf-8")


class _Answer:
    """One generation: what the fake model 'said' and why it stopped."""

    __slots__ = ("content", "reason", "thinking")

    def __init__(self, content: str, thinking: str = "", reason: str = "stop") -> None:
        self.content = content
        self.thinking = thinking
        self.reason = reason

    @property
    def tokens(self) -> int:
        """1 token per generated character; at least 1 (a model always emits EOS)."""
        return max(1, len(self.content) + len(self.thinking))


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------


class _Spent:
    """Where an answered request's time went, measured by the fake (seconds)."""

    __slots__ = ("compute_s", "load_s", "total_s")

    def __init__(self, total_s: float, load_s: float, compute_s: float) -> None:
        self.total_s, self.load_s, self.compute_s = total_s, load_s, compute_s


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # load tests open 200+ connections at once
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeOllama) -> None:
        self.fake = fake
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can stall on
        # reverse DNS in sandboxes; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every reply has a length or is chunked
    disable_nagle_algorithm = True  # else each small keep-alive reply waits ~40 ms for ACK
    server: _Server

    _rec: dict[str, Any] | None
    _method: str
    # Inference requests only: see _settle().
    _settled = True
    _slot_held = False

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; load tests make thousands of requests."""

    def setup(self) -> None:
        super().setup()
        self._rec = None
        self.server.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, False)

    # ----------------------------------------------------------- dispatch

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _routes(self) -> dict[str, dict[str, Callable[[Any], None]]]:
        return {
            "/": {"GET": self._root, "HEAD": self._root},
            "/api/version": {"GET": self._version, "HEAD": self._version},
            "/api/tags": {"GET": self._tags, "HEAD": self._tags},
            "/api/show": {"POST": self._show},
            "/api/ps": {"GET": self._ps},
            "/api/pull": {"POST": self._pull},
            "/api/chat": {"POST": lambda body: self._inference("chat", body)},
            "/api/generate": {"POST": lambda body: self._inference("generate", body)},
            "/v1/models": {"GET": self._v1_models},
            "/v1/chat/completions": {"POST": lambda body: self._inference("openai", body)},
            "/_fake/stats": {"GET": self._fake_stats},
            "/_fake/config": {"POST": self._fake_config},
            "/_fake/reset": {"POST": self._fake_reset},
        }

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        self._method = method
        path = self.path.split("?", 1)[0]
        raw = self._read_body()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw.decode("utf-8"))
            except ValueError:
                body = _BadBody(raw.decode("utf-8", "replace"))
        if not path.startswith("/_fake/"):
            self._rec = fake._record_start(method, path, body)
        try:
            handlers = self._routes().get(path)
            if handlers is None:
                self._send(404, b"404 page not found", "text/plain")
            elif method not in handlers:
                self._send(405, b"405 method not allowed", "text/plain")
            else:
                handlers[method](body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            if self._rec is not None:
                fake._abandon(self._rec)
        except Exception as exc:  # a bug in the fake: say so instead of a silent drop
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._json(500, {"error": f"fake ollama internal error: {exc!r}"})
            raise
        finally:
            if self._rec is not None:
                fake._record_end(self._rec)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # ----------------------------------------------------------- responses

    def _send(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self._settle()
        if self._method != "HEAD":
            self.wfile.write(payload)
        self._set_status(status)

    def _set_status(self, status: int | None) -> None:
        if self._rec is not None:
            self.server.fake._record_update(self._rec, status=status)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        """gin's c.JSON: compact, no trailing newline."""
        self._send(status, _compact(obj), "application/json; charset=utf-8", headers)

    def _error(
        self,
        status: int,
        message: str,
        openai: bool = False,
        headers: dict[str, str] | None = None,
        middleware: bool = False,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        """Native {"error": msg}; /v1 wraps it like openai.NewError (json.Encoder adds "\\n").

        ``middleware``: a /v1 error raised by ChatMiddleware itself (bind, messages, reasoning), typed
        by its status; one from the native handler goes through writeError, which typed every error
        "api_error" before v0.18.0.
        """
        if not openai:
            self._json(status, {"error": message}, headers)
            return
        etype = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        if not middleware and not self.server.fake._at_least(0, 18, 0):
            etype = "api_error"
        obj = {"error": {"message": message, "type": etype, "param": param, "code": code}}
        self._send(status, _compact(obj) + b"\n", "application/json", headers)

    def _start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._set_status(200)

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_chunked(self) -> None:
        self._settle()
        self.wfile.write(b"0\r\n\r\n")

    # ----------------------------------------------------------- simple endpoints

    def _root(self, body: Any) -> None:
        self._send(200, b"Ollama is running", "text/plain; charset=utf-8")

    def _version(self, body: Any) -> None:
        self._json(200, {"version": self.server.fake._config_value("version")})

    def _tags(self, body: Any) -> None:
        self._json(200, {"models": self.server.fake._tags()})

    def _v1_models(self, body: Any) -> None:
        data = [
            {"id": m["model"], "object": "model", "created": m["_created"], "owned_by": "library"}
            for m in self.server.fake._tags(with_created=True)
        ]
        # openai.ToListCompletion starts from a nil slice: no models -> "data": null
        self._send(200, _compact({"object": "list", "data": data or None}) + b"\n", "application/json")

    def _ps(self, body: Any) -> None:
        self._json(200, {"models": self.server.fake._ps()})

    def _show(self, body: Any) -> None:
        fake = self.server.fake
        if isinstance(body, _BadBody):
            return self._error(400, body.message())
        name = ""
        if isinstance(body, dict):
            name = str(body.get("model") or body.get("name") or "")
        if not name:
            return self._error(400, "missing request body" if body is None else "model is required")
        found = fake._lookup(name)
        if found is None:
            # ShowHandler: model '<DisplayShortest>' not found since v0.30.0 (before: as typed)
            shown = display_model_name(name) if fake._modern_errors() and fake._at_least(0, 30, 0) else name
            return self._error(404, f"model '{shown}' not found")
        self._json(200, fake._show(found[0], found[1]))

    def _pull(self, body: Any) -> None:
        fake = self.server.fake
        if isinstance(body, _BadBody):
            return self._error(400, body.message())
        if body is None:
            return self._error(400, "missing request body")
        name = str(body.get("model") or body.get("name") or "") if isinstance(body, dict) else ""
        if not name:
            return self._error(400, "invalid model name")
        stream = not (isinstance(body, dict) and body.get("stream") is False)
        spec = fake._pullable(name)
        step = float(fake._config_value("pull_step_s") or 0)
        lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        if spec is not None:
            for i, total in enumerate((spec.get("size", 2_000_000_000), 11_338, 487)):
                digest = "sha256:" + hashlib.sha256((f"{name}/{i}").encode()).hexdigest()
                status = "pulling " + digest[7:19]
                # completed is omitempty in ProgressResponse: absent while 0
                lines.append({"status": status, "digest": digest, "total": total})
                lines.append({"status": status, "digest": digest, "total": total, "completed": total // 2})
                lines.append({"status": status, "digest": digest, "total": total, "completed": total})
            lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}]
        if not stream:
            # waitForStream: the error becomes a 500, else the last progress object
            for _ in lines:
                if step:
                    time.sleep(step)
            # waitForStream sets Content-Type "application/json" first; gin's c.JSON keeps a set one
            if spec is None:
                return self._send(500, _compact({"error": PULL_NOT_FOUND}), "application/json")
            fake._install(name, spec)
            return self._send(200, _compact({"status": "success"}), "application/json")
        self._start_chunked("application/x-ndjson")
        for line in lines:
            self._chunk(_compact(line) + b"\n")
            if step:
                time.sleep(step)
        if spec is None:
            # streamResponse: an error after output started is one more NDJSON line
            self._chunk(_compact({"error": PULL_NOT_FOUND}) + b"\n")
        else:
            fake._install(name, spec)
            self._chunk(_compact({"status": "success"}) + b"\n")
        self._end_chunked()

    # ----------------------------------------------------------- control endpoints

    def _fake_stats(self, body: Any) -> None:
        self._json(200, self.server.fake.stats())

    def _fake_config(self, body: Any) -> None:
        if not isinstance(body, dict):
            return self._json(400, {"error": "body must be a JSON object"})
        try:
            self.server.fake.configure(**body)
        except (TypeError, ValueError) as exc:
            return self._json(400, {"error": str(exc)})
        self._json(200, {"config": self.server.fake._config_copy()})

    def _fake_reset(self, body: Any) -> None:
        restore = bool(isinstance(body, dict) and body.get("config"))
        self.server.fake.reset(config=restore)
        self._json(200, {"reset": True, "config_restored": restore})

    # ----------------------------------------------------------- inference

    def _inference(self, kind: str, body: Any) -> None:
        """/api/chat ("chat"), /api/generate ("generate"), /v1/chat/completions ("openai")."""
        fake = self.server.fake
        fake._in_flight(+1)
        self._settled = False
        # Ollama's checkpointStart: total_duration runs from here, the wait for a slot included.
        self._arrived = time.monotonic()
        try:
            self._inference_inner(kind, body)
        finally:
            self._settle()

    def _settle(self) -> None:
        """The reply is about to be complete: the request stops counting as in flight (and gives back its
        slot) before its last bytes leave. Otherwise a client that sends its next call the moment it has
        this answer is counted twice for an instant, and `max_in_flight` reads one above the truth."""
        if self._settled:
            return
        self._settled = True
        fake = self.server.fake
        if self._slot_held:
            self._slot_held = False
            fake._release_slot()
        fake._in_flight(-1)

    def _inference_inner(self, kind: str, body: Any) -> None:
        fake = self.server.fake
        openai = kind == "openai"
        bomb = int(fake._config_value("gzip_bomb_bytes") or 0)
        if bomb:
            return self._send(200, gzip_bomb(bomb, openai), "application/json", {"Content-Encoding": "gzip"})
        if isinstance(body, _BadBody):
            return self._error(400, body.message(), openai, middleware=True)
        if not isinstance(body, dict):
            msg = "missing request body" if body is None else body_type_error(body, kind)
            return self._error(400, msg, openai, middleware=True)

        # --- request fields, parsed the way Ollama parses them
        version = fake._version()
        think: Any = None
        keep_alive: float | None = None
        if openai:
            response_format = body.get("response_format")
            if response_format is not None and not isinstance(response_format, dict):
                msg = (
                    f"json: cannot unmarshal {go_json_kind(response_format)} into Go struct field "
                    "ChatCompletionRequest.response_format of type openai.ResponseFormat"
                )
                return self._error(400, msg, True, middleware=True)
            if response_format is not None and fake._config_value("reject_response_format"):
                return self._error(
                    400, UNSUPPORTED_RESPONSE_FORMAT, True, middleware=True,
                    param="response_format", code="unsupported_parameter",
                )  # fmt: skip
            if not body.get("messages"):
                return self._error(400, EMPTY_MESSAGES, True, middleware=True)
            fmt = format_from_response_format(response_format, version)
            reasoning = body.get("reasoning")
            effort = reasoning.get("effort") if isinstance(reasoning, dict) else body.get("reasoning_effort")
            try:
                think = think_from_reasoning_effort(effort or "", version)
            except ValueError as exc:
                return self._error(400, str(exc), True, middleware=True)
            cap = body.get("max_tokens")
            if cap is None:
                cap = body.get("max_completion_tokens")  # not read by real Ollama (see report)
            stream = bool(body.get("stream") or False)
            # ChatCompletionRequest has no keep_alive field: it is ignored on /v1
        else:
            think = body.get("think")
            if think is not None and not isinstance(think, bool) and think not in think_levels(version):
                return self._error(400, invalid_think_message(think, version))
            try:
                keep_alive = parse_keep_alive(body.get("keep_alive"))
            except ValueError as exc:
                return self._error(400, str(exc))
            fmt = body.get("format")
            # api.*Request.Format was a Go string before 0.5.0: anything else fails the bind (400)
            old_format = version < (0, 5, 0) and fmt is not None and not isinstance(fmt, str)
            if old_format or (isinstance(fmt, dict) and fake._config_value("reject_format")):
                return self._error(400, format_unmarshal_error(fmt, kind))
            options = body.get("options")
            cap = options.get("num_predict") if isinstance(options, dict) else None
            stream = body.get("stream") is not False  # native default is streaming
        fmt_mode = format_mode(fmt, version)
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self._error(400, "model is required", openai)
        found = fake._lookup(model)
        if found is None:
            return self._error(404, fake._not_found_message(model, kind), openai)
        installed, spec = found
        caps = spec.get("capabilities") or []

        if kind == "generate":
            prompt_text = str(body.get("prompt") or "")
            empty = prompt_text == ""
            prompt_tokens = len(prompt_text) + len(str(body.get("system") or ""))
        else:
            messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
            empty = not messages
            users = [_content_text(m.get("content")) for m in messages if str(m.get("role", "")).lower() == "user"]
            # The line to translate is in the last user message with a <source> block: earlier ones may
            # be few-shot examples, later ones re-asks.
            with_source = [text for text in users if "<source>" in text]
            prompt_text = with_source[-1] if with_source else (users[0] if users else "")
            prompt_tokens = sum(len(_content_text(m.get("content"))) for m in messages)

        # --- unload / load forms (empty prompt or messages; never on /v1)
        if empty and not openai and keep_alive == 0:
            fake._unload(installed)
            return self._json(200, self._native_envelope(kind, model, _Answer(""), "unload", metrics=False))
        if kind == "generate" and version < (0, 5, 0) and fmt not in (None, "", "json"):
            return self._error(400, FORMAT_MUST_BE_JSON)
        if think not in (None, False) and "thinking" not in caps:
            return self._error(400, f'"{model}" does not support thinking', openai)
        if empty and not openai:
            fake._load(installed, keep_alive)
            return self._json(200, self._native_envelope(kind, model, _Answer(""), "load", metrics=False))

        source, lang = parse_prompt(prompt_text)
        seed = body.get("seed") if openai else (options.get("seed") if isinstance(options, dict) else None)
        # A re-ask: the line's user message is followed by an answer and a follow-up (the few-shot turns
        # before it have assistant messages too).
        reask = kind != "generate" and bool(with_source) and bool(users) and "<source>" not in users[-1]
        if self._rec is not None:
            fake._record_update(self._rec, source=source, lang=lang, model=model, seed=seed, reask=reask)
        rule = fake._take_failure(source) if kind != "generate" else None
        mode = rule["mode"] if rule else None
        if rule is not None and self._rec is not None:
            fake._record_update(self._rec, failure=mode)
        if mode == "busy_503":
            return self._busy(openai, rule.get("retry_after") if rule else None)
        if mode == "model_404":
            return self._error(404, fake._not_found_message(model, kind), openai)

        if reask and int(fake._config_value("gather_reasks") or 0) > 0:
            met = fake._gather(float(fake._config_value("gather_timeout_s")))
            if self._rec is not None:
                fake._record_update(self._rec, gathered=met)
        got = self._acquire_slot()
        if got == "busy":
            return self._busy(openai, fake._config_value("busy_retry_after"))
        if got != "ok":
            return self._drop(abandoned=got == "gone")
        self._slot_held = True
        computing = time.monotonic()
        try:
            if mode == "hang":
                return self._hang()
            waited = self._wait_watching(float(fake._config_value("latency_s") or 0))
            if waited != "ok":
                return self._drop(abandoned=waited == "gone")
            if mode == "http_500":
                return self._error(500, str((rule or {}).get("message") or RUNNER_ERROR), openai)
            if mode == "malformed":
                # a reply cut short mid-string: Content-Type says JSON, the body is not
                garbage = '{"model":"' + model + '","message":{"role":"assistant","content":"{\\"tr\\": '
                return self._send(200, garbage.encode("utf-8"), "application/json; charset=utf-8")
            if mode == "reset":
                return self._reset_connection()
            loading = time.monotonic()
            fake._load(installed, keep_alive)
            load_s = time.monotonic() - loading
            if fmt_mode == "invalid":
                # llm/server.go Completion refuses it before generating: a 500 (nothing was streamed yet)
                raw_format = json.dumps(fmt, ensure_ascii=False, separators=(",", ":"))
                return self._error(500, INVALID_FORMAT.format(raw=go_quote(raw_format)), openai)
            answer = fake._answer(source, lang, think, cap, constrained=fmt_mode in ("json", "schema"), seed=seed)
            done = time.monotonic()
            spent = _Spent(done - self._arrived, load_s, done - computing - load_s)
            pad = max(0, int(fake._config_value("pad_response_bytes") or 0))
            if openai:
                self._openai_reply(model, answer, prompt_tokens, stream, body, pad, spent)
            elif stream:
                self._native_stream(kind, model, answer, prompt_tokens, spent, pad)
            else:
                reply = self._native_envelope(kind, model, answer, answer.reason, prompt_tokens, spent)
                if pad:
                    reply["padding"] = "x" * pad
                self._json(200, reply)
            if keep_alive == 0:
                fake._unload(installed)  # keep_alive 0 with a prompt: unload after the request
        finally:
            if self._slot_held:
                self._slot_held = False
                fake._release_slot()

    def _busy(self, openai: bool, retry_after: Any) -> None:
        headers = {}
        if retry_after is not None:
            value = float(retry_after)
            headers["Retry-After"] = str(int(value)) if value.is_integer() else str(value)
        self.server.fake._count("busy")
        self._error(503, BUSY_MESSAGE, openai, headers)

    def _drop(self, abandoned: bool) -> None:
        """Give up on the request without answering (client left, or server stopping)."""
        self.close_connection = True
        if abandoned and self._rec is not None:
            self.server.fake._abandon(self._rec)

    def _acquire_slot(self) -> str:
        """Wait (FIFO) for one of ``parallel`` slots: "ok", "busy", "gone" or "stopping".

        A queued request sleeps on its own event, set when a slot is handed
        to it, when its client disconnects (seen by the monitor thread), or on
        stop(): no polling threads, no thundering herd with 200+ waiters.
        """
        fake = self.server.fake
        with fake._lock:
            if fake._running < fake._parallel() and not fake._queue:
                fake._take_slot()
                return "ok"
            if len(fake._queue) >= int(fake._config["max_queue"]):
                return "busy"
            watch = fake._watch(self.connection)
            fake._queue.append(watch)
            fake._max_waiting = max(fake._max_waiting, len(fake._queue))
        try:
            while True:
                watch.event.wait()
                with fake._lock:
                    outcome = "gone" if watch.gone else "stopping" if fake._stopping.is_set() else "ok"
                    if watch.granted:
                        if outcome != "ok":
                            fake._release_slot()  # handed a slot just as the client left
                        return outcome
                    if outcome != "ok":
                        fake._queue.remove(watch)
                        return outcome
                    watch.event.clear()
        finally:
            fake._unwatch(watch)

    def _wait_watching(self, seconds: float) -> str:
        """Spend ``seconds`` while watching the client: "ok", "gone" or "stopping"."""
        fake = self.server.fake
        if seconds <= 0:
            return "ok"
        watch = fake._watch(self.connection)
        try:
            if not watch.event.wait(seconds):
                return "ok"
            return "gone" if watch.gone else "stopping"
        finally:
            fake._unwatch(watch)

    def _hang(self) -> None:
        """Accept and never answer, until the client leaves, ``hang_s`` passes, or stop()."""
        outcome = self._wait_watching(float(self.server.fake._config_value("hang_s") or 0))
        # the server then closes the socket: the client sees EOF and no reply
        self._drop(abandoned=outcome == "gone")

    def _reset_connection(self) -> None:
        """Start a reply, then drop the connection with a TCP RST mid-body."""
        self.close_connection = True
        self.wfile.write(
            b'HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 300\r\n\r\n{"model":"'
        )
        try:
            # linger 0: close() sends RST instead of FIN
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # the makefile() objects hold references: the fd closes only when all are closed
            self.wfile.close()
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass
        # BaseHTTPRequestHandler flushes/closes these afterwards: give it harmless sinks
        self.wfile = io.BytesIO()
        self.rfile = io.BytesIO()

    # ----------------------------------------------------------- reply shapes

    def _metrics(self, prompt_tokens: int, answer: _Answer, spent: _Spent) -> dict[str, int]:
        """Ollama's counters (server/routes.go): total_duration from the request's arrival (the wait for a
        slot included), load_duration, and the compute split into prompt_eval_duration and eval_duration;
        all measured here, in ns, so total - load - prompt_eval - eval is the time the request waited."""
        counts = {"prompt_eval_count": max(1, prompt_tokens), "eval_count": answer.tokens}
        if not self.server.fake._config_value("durations"):
            return counts
        load, compute = int(spent.load_s * 1e9), int(spent.compute_s * 1e9)
        prompt = compute // 4  # the fake's "prompt reading" is a quarter of its compute time
        return {
            "total_duration": max(int(spent.total_s * 1e9), load + compute),
            "load_duration": load,
            "prompt_eval_count": counts["prompt_eval_count"],
            "prompt_eval_duration": prompt,
            "eval_count": counts["eval_count"],
            "eval_duration": compute - prompt,
        }

    def _native_envelope(
        self,
        kind: str,
        model: str,
        answer: _Answer,
        reason: str,
        prompt_tokens: int = 0,
        spent: _Spent | None = None,
        metrics: bool = True,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"model": model, "created_at": _now_rfc3339()}
        if kind == "generate":
            out["response"] = answer.content
            if answer.thinking:
                out["thinking"] = answer.thinking
        else:
            message = {"role": "assistant", "content": answer.content}
            if answer.thinking:
                message["thinking"] = answer.thinking
            out["message"] = message
        out["done"] = True
        out["done_reason"] = reason
        if metrics:
            if kind == "generate":
                out["context"] = [151644, 872, 198]
            out.update(self._metrics(prompt_tokens, answer, spent or _Spent(0.0, 0.0, 0.0)))
        return out

    def _native_stream(
        self, kind: str, model: str, answer: _Answer, prompt_tokens: int, spent: _Spent, pad: int = 0
    ) -> None:
        self._start_chunked("application/x-ndjson")
        pieces = [("thinking", p) for p in _pieces(answer.thinking)]
        pieces += [("content", p) for p in _pieces(answer.content)]
        for field, piece in pieces:
            line: dict[str, Any] = {"model": model, "created_at": _now_rfc3339()}
            if kind == "generate":
                line["response"] = piece if field == "content" else ""
                if field == "thinking":
                    line["thinking"] = piece
            else:
                message = {"role": "assistant", "content": piece if field == "content" else ""}
                if field == "thinking":
                    message["thinking"] = piece
                line["message"] = message
            line["done"] = False
            self._chunk(_compact(line) + b"\n")
        final = self._native_envelope(kind, model, _Answer(""), answer.reason, prompt_tokens, spent)
        final.update(self._metrics(prompt_tokens, answer, spent))
        if pad:
            final["padding"] = "x" * pad
        self._chunk(_compact(final) + b"\n")
        self._end_chunked()

    def _openai_reply(
        self,
        model: str,
        answer: _Answer,
        prompt_tokens: int,
        stream: bool,
        body: dict[str, Any],
        pad: int = 0,
        spent: _Spent | None = None,
    ) -> None:
        ident = f"chatcmpl-{random.randint(0, 998)}"
        created = int(time.time())
        usage = {
            "prompt_tokens": max(1, prompt_tokens),
            "completion_tokens": answer.tokens,
            "total_tokens": max(1, prompt_tokens) + answer.tokens,
        }
        head = {"id": ident, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": "fp_ollama"}  # fmt: skip
        if not stream:
            message: dict[str, Any] = {"role": "assistant", "content": answer.content}
            if answer.thinking:
                message["reasoning"] = answer.thinking
            reply = dict(head, choices=[{"index": 0, "message": message, "finish_reason": answer.reason}], usage=usage)
            if spent is not None and self.server.fake._config_value("v1_timings"):
                # llama-server's shape (tools/server: result_timings): ms, no queue wait, load folded in
                compute_ms = (spent.load_s + spent.compute_s) * 1000
                reply["timings"] = {"prompt_n": usage["prompt_tokens"], "prompt_ms": compute_ms / 4,
                                    "predicted_n": answer.tokens, "predicted_ms": compute_ms * 3 / 4}  # fmt: skip
            if pad:
                reply["padding"] = "x" * pad
            return self._send(200, _compact(reply) + b"\n", "application/json")
        head["object"] = "chat.completion.chunk"
        # since v0.32.6 deltas are openai.Delta (omitempty) and the finish chunk is separate, with {};
        # before, each chunk was ToChunk of a native one: role and content always, the done one last
        delta_type = self.server.fake._at_least(0, 32, 6)
        self._start_chunked("text/event-stream")
        first = True
        pieces = [("reasoning", p) for p in _pieces(answer.thinking)] + [
            ("content", p) for p in _pieces(answer.content)
        ]
        if delta_type and not pieces:
            pieces = [("content", "")]  # a wholly empty completion still opens with a role chunk
        for field, piece in pieces:
            delta: dict[str, Any] = {"role": "assistant"} if first or not delta_type else {}
            delta["content"] = piece if field == "content" else ""
            if field == "reasoning":
                delta["reasoning"] = piece
            first = False
            chunk = dict(head, choices=[{"index": 0, "delta": delta, "finish_reason": None}])
            self._chunk(b"data: " + _compact(chunk) + b"\n\n")
        last_delta: dict[str, Any] = {} if delta_type else {"role": "assistant", "content": ""}
        finish = dict(head, choices=[{"index": 0, "delta": last_delta, "finish_reason": answer.reason}])
        if pad:
            finish["padding"] = "x" * pad
        self._chunk(b"data: " + _compact(finish) + b"\n\n")
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            self._chunk(b"data: " + _compact(dict(head, choices=[], usage=usage)) + b"\n\n")
        self._chunk(b"data: [DONE]\n\n")
        self._end_chunked()


_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)
_POLL_MASK: int = (
    getattr(select, "POLLIN", 0)
    | getattr(select, "POLLPRI", 0)
    | getattr(select, "POLLHUP", 0)
    | getattr(select, "POLLERR", 0)
    | getattr(select, "POLLRDHUP", 0)
)


class _Watch:
    """A request waiting on something, to be woken early if its client leaves.

    ``event`` is set when a slot is handed over (``granted``), when the
    monitor sees the client's end closed (``gone``), or on stop().
    """

    __slots__ = ("event", "gone", "granted", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.event = threading.Event()
        self.gone = False
        self.granted = False


def _peer_closed(sock: socket.socket) -> bool:
    """Peek (MSG_PEEK, consumes nothing): b"" or an error means the client closed."""
    try:
        return sock.recv(1, socket.MSG_PEEK | _DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except (OSError, ValueError):
        return True


def _closed_clients(watches: list[_Watch]) -> list[_Watch]:
    """The watches whose client has gone: one poll() over all of them, then peeks.

    poll() has no FD_SETSIZE limit (load tests push descriptors past 1024);
    select() in chunks is the fallback where poll is missing (Windows).
    """
    by_fd: dict[int, _Watch] = {}
    closed: list[_Watch] = []
    for watch in watches:
        try:
            fd = watch.sock.fileno()
        except OSError:
            fd = -1
        if fd < 0:
            closed.append(watch)
        else:
            by_fd[fd] = watch
    if hasattr(select, "poll"):
        poller = select.poll()
        for fd in by_fd:
            poller.register(fd, _POLL_MASK)
        ready = [fd for fd, _ in poller.poll(0)]
    else:
        fds = list(by_fd)
        ready = []
        for i in range(0, len(fds), 500):
            ready += select.select(fds[i : i + 500], [], [], 0)[0]
    closed += [by_fd[fd] for fd in ready if _peer_closed(by_fd[fd].sock)]
    return closed


def _first_match(table: dict[str, str] | None, source: str) -> str | None:
    """The value of the first key (in order) that is a substring of ``source``."""
    for needle, value in (table or {}).items():
        if needle in source:
            return value
    return None


_BOMBS: dict[tuple[int, bool], bytes] = {}


def gzip_bomb(size: int, openai: bool) -> bytes:
    """A gzip body inflating to a valid chat answer whose content is `size` letters (built once per size,
    1 MiB at a time: the fake never holds the inflated answer)."""
    key = (size, openai)
    if key not in _BOMBS:
        if openai:
            head = b'{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,'
            head += b'"finish_reason":"stop","message":{"role":"assistant","content":"'
            tail = b'"}}]}'
        else:
            head = b'{"model":"m","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":"'
            tail = b'"},"done":true,"done_reason":"stop"}'
        packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        parts = [packer.compress(head)]
        block = b"a" * (1024 * 1024)
        for _ in range(max(1, size // len(block))):
            parts.append(packer.compress(block))
        parts += [packer.compress(tail), packer.flush()]
        _BOMBS[key] = b"".join(parts)
    return _BOMBS[key]


def _pieces(text: str, size: int = 8) -> list[str]:
    """Stream pieces ("tokens") of ``size`` chars; at most ~1024 of them (a 2 MiB raw answer stays fast)."""
    size = max(size, -(-len(text) // 1024))
    return [text[i : i + size] for i in range(0, len(text), size)]


class _BadBody:
    """A request body that is not JSON (Ollama answers 400 with the decode error)."""

    def __init__(self, raw: str) -> None:
        self.raw = raw

    def message(self) -> str:
        first = self.raw.lstrip()[:1]
        return f"invalid character '{first}' looking for beginning of value" if first else "unexpected EOF"

    def __repr__(self) -> str:
        return f"_BadBody({self.raw!r})"


def body_type_error(body: Any, kind: str) -> str:
    go_type = {"chat": "api.ChatRequest", "generate": "api.GenerateRequest"}.get(kind, "openai.ChatCompletionRequest")
    json_kind = {list: "array", str: "string", bool: "bool", int: "number", float: "number"}.get(type(body), "value")
    return f"json: cannot unmarshal {json_kind} into Go value of type {go_type}"


def think_levels(version: tuple[int, int, int] = (99, 0, 0)) -> tuple[str, ...]:
    """api.ThinkValue's string levels ("max" since v0.22.0)."""
    return ("high", "medium", "low", "max") if version >= (0, 22, 0) else ("high", "medium", "low")


def invalid_think_message(value: Any, version: tuple[int, int, int] = (99, 0, 0)) -> str:
    """api.ThinkValue.UnmarshalJSON's error (Go %q of the string)."""
    levels = "".join(f'"{level}", ' for level in think_levels(version))
    if isinstance(value, str):
        return f"invalid think value: {go_quote(value)} (must be {levels}true, or false)"
    return f"think must be a boolean or string ({levels}true, or false)"


def think_from_reasoning_effort(effort: str, version: tuple[int, int, int] = (99, 0, 0)) -> Any:
    """openai.FromChatRequest / thinkFromReasoningEffort: the /v1 effort -> native think value.

    v0.12.4-v0.21.x: high, medium, low, none; v0.22.0+: also max; v0.33.0+ (thinkFromReasoningEffort):
    also minimal (-> low), xhigh and ultra (-> max), and the error quotes with %q.
    """
    if effort == "":
        return None
    if effort == "none":
        return False
    if version < (0, 33, 0):
        allowed = ("high", "medium", "low", "max") if version >= (0, 22, 0) else ("high", "medium", "low")
        if effort in allowed:
            return effort
        listed = "".join(f'"{level}", ' for level in allowed)
        raise ValueError(f"invalid reasoning value: '{effort}' (must be {listed}or \"none\")")
    if effort == "minimal":
        return "low"
    if effort in ("low", "medium", "high", "max"):
        return effort
    if effort in ("xhigh", "ultra"):
        return "max"
    raise ValueError(
        f"invalid reasoning value: {go_quote(effort)} "
        '(must be "minimal", "low", "medium", "high", "xhigh", "ultra", "max", or "none")'
    )


# --------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------


class FakeOllama:
    """A fake Ollama server.  ``with FakeOllama(latency_s=0.1) as fake: ... fake.url``.

    The socket is bound in the constructor (so ``port``/``url`` are known at
    once); ``start()`` begins serving on a daemon thread; ``stop()`` closes it.
    Config knobs are listed in :func:`default_config`; see the module docstring.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **config: Any) -> None:
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._gathered = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._env = {
            name: os.environ.get(name)
            for name in ("OLLAMA_HOST", "OLLAMA_NUM_PARALLEL", "OLLAMA_MAX_QUEUE", "OLLAMA_KEEP_ALIVE")
        }
        self._config: dict[str, Any] = default_config()
        self._defaults = copy.deepcopy(self._config)
        self._running = 0
        self._queue: deque[_Watch] = deque()
        self._watches: set[_Watch] = set()
        self._monitor: threading.Thread | None = None
        self._inflight = 0
        self._max_waiting = 0
        self._clear_state()
        self.configure(**config)
        self._server = _Server((host, port), self)

    # ----------------------------------------------------------- lifecycle

    def start(self) -> FakeOllama:
        if self._monitor is None:
            self._monitor = threading.Thread(target=self._watch_clients, name="fake-ollama-monitor", daemon=True)
            self._monitor.start()
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="fake-ollama",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop promptly: wake waiting/hanging requests and close open connections."""
        self._stopping.set()
        with self._lock:
            for watch in self._watches:
                watch.event.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # idle keep-alive readers see EOF and exit
        self._server.server_close()

    def end_hangs(self) -> int:
        """End every call held in a "hang" now, as if its hang_s had passed: the call is closed unanswered
        (the client sees the connection end). Returns how many were woken.

        A hang waits on its call's watch event; waking it while the client is still there ends the hang the
        way stop() does, without stopping the server. A latency wait watches its client the same way and
        would be cut too, hence only with latency_s 0 (a call waiting for a slot ignores the wake)."""
        with self._lock:
            latency_s = self._config["latency_s"]
        if latency_s:
            raise RuntimeError("end_hangs would also cut the latency waits: configure latency_s=0 first")
        with self._lock:
            watches = list(self._watches)
        for watch in watches:
            watch.event.set()
        return len(watches)

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Connectable base URL (a wildcard bind address is reached via loopback)."""
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    # ----------------------------------------------------------- config & stats

    def configure(self, **kw: Any) -> None:
        """Shallow-merge knobs into the config (unknown keys are an error: typos)."""
        unknown = sorted(set(kw) - set(self._defaults))
        if unknown:
            raise ValueError(f"unknown fake ollama config key(s): {', '.join(unknown)}")
        for key in ("style",):
            if key in kw and kw[key] not in STYLES:
                raise ValueError(f"unknown style {kw[key]!r} (one of {', '.join(STYLES)})")
        for style in (kw.get("styles_by_source") or {}).values():
            if style not in STYLES:
                raise ValueError(f"unknown style {style!r}")
        if kw.get("not_found_style", "modern") not in ("modern", "legacy"):
            raise ValueError("not_found_style must be 'modern' or 'legacy'")
        if "version" in kw:
            version_tuple(kw["version"])  # raises ValueError on junk
        for key in ("raw_by_source", "raw_thinking_by_source"):
            table = kw.get(key, {})
            if not isinstance(table, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in table.items()
            ):
                raise ValueError(f"{key} must map source substrings to strings")
        for key in ("pad_response_bytes", "gzip_bomb_bytes"):
            pad = kw.get(key, 0)
            if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
                raise ValueError(f"{key} must be an int >= 0")
        for key in ("reject_format", "reject_response_format", "durations", "v1_timings"):
            if not isinstance(kw.get(key, False), bool):
                raise ValueError(f"{key} must be a bool")
        failures = kw.get("failures")
        if failures is not None:
            kw["failures"] = [self._normalize_failure(rule) for rule in failures]
        with self._lock:
            for key, value in kw.items():
                self._config[key] = copy.deepcopy(value)
            self._grant()  # "parallel" may have grown

    @staticmethod
    def _normalize_failure(rule: Any) -> dict[str, Any]:
        if not isinstance(rule, dict) or rule.get("mode") not in FAILURE_MODES:
            raise ValueError(f"failure rule needs a mode in {FAILURE_MODES}: {rule!r}")
        out = dict(rule)
        out["count"] = int(rule.get("count", 1))
        return out

    def reset(self, config: bool = False) -> None:
        """Clear stats, ask counts, failure rules and loaded models (and config if asked)."""
        with self._lock:
            self._clear_state()
            self._config["failures"] = []
            if config:
                self._config = copy.deepcopy(self._defaults)
            self._grant()

    def _clear_state(self) -> None:
        with self._lock:
            self._requests: list[dict[str, Any]] = []
            self._paths: dict[str, int] = {}
            self._counters: dict[str, int] = {"abandoned": 0, "busy": 0}
            self._asks: dict[tuple[str, str], int] = {}
            self._loaded: dict[str, dict[str, Any]] = {}
            self._unloads: list[str] = []
            self._loads: list[str] = []
            self._pulls: list[str] = []
            self._gather_arrivals = 0
            # live gauges survive a reset; their peaks restart from now
            self._max_inflight = self._inflight
            self._max_running = self._running
            self._max_waiting = len(self._queue)

    def stats(self) -> dict[str, Any]:
        """A deep copy of everything recorded (safe to keep and compare)."""
        with self._lock:
            return copy.deepcopy(
                {
                    "in_flight": self._inflight,
                    "max_in_flight": self._max_inflight,
                    "running": self._running,
                    "max_running": self._max_running,
                    "waiting": len(self._queue),
                    "max_waiting": self._max_waiting,
                    "paths": self._paths,
                    "abandoned": self._counters["abandoned"],
                    "busy": self._counters["busy"],
                    "requests": self._requests,
                    "asks": [{"source": s, "lang": lang, "count": n} for (s, lang), n in self._asks.items()],
                    "loaded": sorted(self._live_loaded()),
                    "loads": self._loads,
                    "unloads": self._unloads,
                    "pulls": self._pulls,
                    "env": self._env,
                    "config": self._jsonable_config(),
                }
            )

    def _jsonable_config(self) -> dict[str, Any]:
        out = dict(self._config)
        out["keep_alive_s"] = -1 if math.isinf(out["keep_alive_s"]) else out["keep_alive_s"]
        return out

    def _config_copy(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._jsonable_config())

    def _config_value(self, key: str) -> Any:
        with self._lock:
            return self._config.get(key)

    def _version(self) -> tuple[int, int, int]:
        return version_tuple(self._config_value("version"))

    def _at_least(self, major: int, minor: int, patch: int) -> bool:
        """Whether the configured Ollama "version" is at least major.minor.patch."""
        return self._version() >= (major, minor, patch)

    def _modern_errors(self) -> bool:
        return bool(self._config_value("not_found_style") != "legacy")

    def _not_found_message(self, model: str, kind: str) -> str:
        # /api/generate always said model 'X' not found.  /api/chat (and /v1 on
        # top of it) said model "X" not found, try pulling it first up to
        # v0.11.x (handleScheduleError) and model 'X' not found since v0.12.0.
        if kind != "generate" and not self._modern_errors():
            return f'model "{model}" not found, try pulling it first'
        return f"model '{model}' not found"

    # ----------------------------------------------------------- recording

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _record_start(self, method: str, path: str, body: Any) -> dict[str, Any]:
        rec = {
            "method": method,
            "path": path,
            "body": body.raw if isinstance(body, _BadBody) else body,
            "status": None,
            "abandoned": False,
            "failure": None,
            "t_start": time.monotonic(),
            "t_end": None,
        }
        with self._lock:
            self._paths[path] = self._paths.get(path, 0) + 1
            self._requests.append(rec)
        return rec

    def _record_update(self, rec: dict[str, Any], **fields: Any) -> None:
        with self._lock:
            rec.update(fields)

    def _record_end(self, rec: dict[str, Any]) -> None:
        with self._lock:
            rec["t_end"] = time.monotonic()

    def _abandon(self, rec: dict[str, Any]) -> None:
        with self._lock:
            if not rec["abandoned"]:
                rec["abandoned"] = True
                self._counters["abandoned"] += 1

    def _count(self, name: str) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + 1

    def _in_flight(self, delta: int) -> None:
        with self._lock:
            self._inflight += delta
            self._max_inflight = max(self._max_inflight, self._inflight)

    def _gather(self, timeout_s: float) -> bool:
        """Wait until `gather_reasks` re-asks have arrived since the last reset, all held here until then
        (True), or `timeout_s` passes (False): a service that sends them one after another never gets there."""
        with self._gathered:
            self._gather_arrivals += 1
            self._gathered.notify_all()
            return self._gathered.wait_for(
                lambda: self._gather_arrivals >= int(self._config["gather_reasks"]) or self._stopping.is_set(),
                timeout_s,
            )

    # ----------------------------------------------------------- slots

    def _parallel(self) -> int:
        return max(1, int(self._config["parallel"]))

    def _take_slot(self) -> None:
        self._running += 1
        self._max_running = max(self._max_running, self._running)

    def _release_slot(self) -> None:
        with self._lock:
            self._running -= 1
            self._grant()

    def _grant(self) -> None:
        """Hand free slots to the head of the queue (FIFO, like Ollama's pending queue)."""
        with self._lock:
            while self._queue and self._running < self._parallel():
                watch = self._queue.popleft()
                self._take_slot()
                watch.granted = True
                watch.event.set()

    # ----------------------------------------------------------- client watching

    def _watch(self, sock: socket.socket) -> _Watch:
        watch = _Watch(sock)
        with self._lock:
            self._watches.add(watch)
            if self._stopping.is_set():
                watch.event.set()
        return watch

    def _unwatch(self, watch: _Watch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def _watch_clients(self) -> None:
        """Monitor thread: every ~10 ms, wake the waiters whose client disconnected."""
        while not self._stopping.wait(0.01):
            with self._lock:
                watches = [w for w in self._watches if not w.gone]
            if not watches:
                continue
            for watch in _closed_clients(watches):
                with self._lock:
                    watch.gone = True
                    watch.event.set()

    # ----------------------------------------------------------- models

    def _lookup(self, name: str) -> tuple[str, dict[str, Any]] | None:
        key = canonical_model_name(name)
        with self._lock:
            for installed, spec in self._config["models"].items():
                if canonical_model_name(installed) == key:
                    return display_model_name(installed), self._full_spec(installed, spec)
        return None

    def _full_spec(self, name: str, spec: dict[str, Any] | None) -> dict[str, Any]:
        spec = dict(spec or {})
        family = re.sub(r"[^a-z0-9]+$", "", name.split(":")[0].rsplit("/", 1)[-1].lower()) or "llama"
        size_match = re.search(r"(\d+(?:\.\d+)?)b", name.split(":")[-1].lower())
        param = f"{float(size_match.group(1)):.1f}B" if size_match else "7.6B"
        details = {"parent_model": "", "format": "gguf", "family": family, "families": [family],
                   "parameter_size": param, "quantization_level": "Q4_K_M"}  # fmt: skip
        details.update(spec.get("details") or {})
        spec["details"] = details
        spec.setdefault("capabilities", ["completion"])
        billions = float(re.sub(r"[^0-9.]", "", str(details["parameter_size"])) or 7.6)
        spec.setdefault("size", int(billions * 0.6e9))
        spec.setdefault("digest", _digest(name))
        spec.setdefault("modified_at", _STARTED_WALL - 86400)
        return spec

    def _tags(self, with_created: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self._config["models"].items())
        out = []
        for name, raw in items:
            spec = self._full_spec(name, raw)
            shown = display_model_name(name)
            entry: dict[str, Any] = {
                "name": shown,
                "model": shown,
                "modified_at": _now_rfc3339(spec["modified_at"]),
                "size": spec["size"],
                "digest": spec["digest"],
                "details": spec["details"],
            }
            if self._at_least(0, 30, 0):  # ListModelResponse.Capabilities (omitempty) since v0.30.0
                entry["capabilities"] = spec["capabilities"]
            if with_created:
                entry["_created"] = int(spec["modified_at"])
            out.append(entry)
        return out

    def _show(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        details = spec["details"]
        arch = details["family"]
        blob = "/root/.ollama/models/blobs/sha256-" + spec["digest"]
        template = (
            "{{- range $i, $_ := .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
            "{{ end }}<|im_start|>assistant\n"
        )
        parameters = (
            'repeat_penalty                 1\nstop                           "<|im_start|>"\n'
            'stop                           "<|im_end|>"\ntemperature                    0.6\n'
            "top_k                          20\ntop_p                          0.95"
        )
        modelfile = (
            '# Modelfile generated by "ollama show"\n'
            "# To build a new Modelfile based on this one, replace the FROM line with:\n"
            f'# FROM {name}\n\nFROM {blob}\nTEMPLATE """{template}"""\n'
        )
        for line in parameters.splitlines():
            key, value = line.split(None, 1)
            modelfile += f"PARAMETER {key} {value}\n"
        billions = float(re.sub(r"[^0-9.]", "", str(details["parameter_size"])) or 7.6)
        out: dict[str, Any] = {
            "modelfile": modelfile,
            "parameters": parameters,
            "template": template,
            "details": details,
            "model_info": {
                "general.architecture": arch,
                "general.basename": arch.capitalize(),
                "general.file_type": 15,
                "general.parameter_count": int(billions * 1e9),
                "general.quantization_version": 2,
                f"{arch}.block_count": 36,
                f"{arch}.context_length": 40960,
                f"{arch}.embedding_length": 2560,
                "tokenizer.ggml.model": "gpt2",
                "tokenizer.ggml.tokens": [],
            },
        }
        if self._at_least(0, 7, 0):  # GetModelInfo fills resp.Tensors (verbose or not) since v0.7.0
            out["tensors"] = [
                {"name": "token_embd.weight", "type": "Q4_K", "shape": [2560, 151936]},
                {"name": "blk.0.attn_q.weight", "type": "Q4_K", "shape": [2560, 4096]},
                {"name": "output_norm.weight", "type": "F32", "shape": [2560]},
            ]
        if self._at_least(0, 6, 4):  # ShowResponse.Capabilities since v0.6.4
            out["capabilities"] = spec["capabilities"]
        out["modified_at"] = _now_rfc3339(spec["modified_at"])
        return out

    def _pullable(self, name: str) -> dict[str, Any] | None:
        """Spec for a pullable name, or None when the registry has no such model."""
        pullable = self._config_value("pullable")
        if pullable is None:
            return self._full_spec(name, {})
        key = canonical_model_name(name)
        for candidate in pullable:
            if canonical_model_name(candidate) == key:
                raw = pullable[candidate] if isinstance(pullable, dict) else {}
                return self._full_spec(name, raw)
        return None

    def _install(self, name: str, spec: dict[str, Any]) -> None:
        with self._lock:
            for installed in list(self._config["models"]):
                if canonical_model_name(installed) == canonical_model_name(name):
                    del self._config["models"][installed]
            self._config["models"][name] = {
                "capabilities": list(spec["capabilities"]),
                "details": dict(spec["details"]),
                "size": spec["size"],
                "modified_at": time.time(),
            }
            self._pulls.append(display_model_name(name))

    def _live_loaded(self) -> list[str]:
        now = time.time()
        return [name for name, entry in self._loaded.items() if entry["expires_wall"] > now]

    def _load(self, name: str, keep_alive: float | None) -> None:
        """Mark a model loaded; absent keep_alive keeps the runner's current one (sched.go)."""
        with self._lock:
            entry = self._loaded.get(name)
            live = entry is not None and entry["expires_wall"] > time.time()
            if keep_alive is None:
                keep_alive = entry["session_s"] if live and entry else float(self._config["keep_alive_s"])
            if keep_alive < 0:
                keep_alive = math.inf
            if not live:
                self._loads.append(name)
            self._loaded[name] = {"session_s": keep_alive, "expires_wall": time.time() + keep_alive}

    def _unload(self, name: str) -> None:
        with self._lock:
            self._loaded.pop(name, None)
            self._unloads.append(name)

    def _ps(self) -> list[dict[str, Any]]:
        with self._lock:
            live = [(name, dict(self._loaded[name])) for name in self._live_loaded()]
        out = []
        for name, entry in sorted(live, key=lambda item: -item[1]["expires_wall"]):
            found = self._lookup(name)
            spec = found[1] if found else self._full_spec(name, {})
            details = dict(spec["details"])
            item = {
                "name": name,
                "model": name,
                "size": spec["size"] + 400_000_000,
                "digest": spec["digest"],
                "details": details,
                "expires_at": _expiry_rfc3339(entry["expires_wall"]),
                "size_vram": spec["size"] + 400_000_000,
            }
            if self._at_least(0, 10, 0):  # ProcessModelResponse.ContextLength since v0.10.0
                item["context_length"] = 4096
            out.append(item)
        return out

    # ----------------------------------------------------------- answers

    def _take_failure(self, source: str) -> dict[str, Any] | None:
        """Consume the first live failure rule that matches this source."""
        with self._lock:
            for rule in self._config["failures"]:
                if rule["count"] == 0:
                    continue
                match = rule.get("match")
                if match and match not in source:
                    continue
                if rule["count"] > 0:
                    rule["count"] -= 1
                return dict(rule)
        return None

    def _answer(
        self, source: str, lang: str, think: Any, cap: Any, constrained: bool = False, seed: Any = None
    ) -> _Answer:
        """The model's answer; ``constrained``: a ``format`` ("json" or a schema) is in force."""
        with self._lock:
            key = (source, lang)
            self._asks[key] = ask = self._asks.get(key, 0) + 1
            cfg = self._config
            style = cfg["style"]
            for needle, candidate in (cfg["styles_by_source"] or {}).items():
                if needle in source:
                    style = candidate
                    break
            raw = _first_match(cfg["raw_by_source"], source)
            raw_thinking = _first_match(cfg["raw_thinking_by_source"], source)
            translations = cfg["translations"] or {}
            thinking_tokens = int(cfg["thinking_tokens"])
            seed_over_rate = cfg["seed_over_rate"]
        if raw is None and seed_over_rate is not None:
            text = translations[source] if source in translations else translate(source, lang)
            over = seeded_over(source, lang, seed if seed is not None else f"ask{ask}", float(seed_over_rate))
            return _Answer(json.dumps({"tr": " ".join([text] * 4) if over else text}, ensure_ascii=False))
        if raw is not None:
            # verbatim: no style, no format constraint, no output cap
            return _Answer(raw, raw_thinking or "")
        text = translations[source] if source in translations else translate(source, lang)
        answer = render(style, source, lang, text, ask, think is False, thinking_tokens, constrained)
        # a thinking-only model that runs out of budget never reaches its answer
        answer = apply_cap(answer, cap, partial_content=style != "always_thinks")
        if raw_thinking is not None:
            answer.thinking = raw_thinking
        return answer


def render(
    style: str,
    source: str,
    lang: str,
    text: str,
    ask: int,
    no_thinking: bool,
    thinking_tokens: int,
    constrained: bool = False,
) -> _Answer:
    """Shape the translation ``text`` the way a model with ``style`` would answer.

    ``constrained`` (a ``format`` is in force): the grammar only lets JSON out, so the styles whose
    output is not JSON (plain, quoted, fenced, think_tags) answer the bare ``{"tr": ...}`` object;
    the JSON-valid but bad ones (placeholder, empty, echo, chinese, long/hanzi, cutoff) stay as they are.
    """

    def tr(value: str) -> str:
        return json.dumps({"tr": value}, ensure_ascii=False)

    if constrained and style in NOT_JSON_STYLES:
        return _Answer(tr(text))

    reasoning = f"The user wants this subtitle line in language '{lang}'. Keep it short and natural."
    hanzi = next((c for c in source if is_ideograph(c)), "中")
    long_text = " ".join([text] * 4)
    simple = {
        "json": tr(text),
        "fenced": "```json\n" + tr(text) + "\n```",
        "think_tags": "<think>\n" + reasoning + "\n</think>\n\n" + tr(text),
        "plain": text,
        "quoted": '"' + text + '"',
        "placeholder": tr("translation"),
        "empty": "",
        "echo": tr(source),
        "chinese": tr(source),
        "long_then_short": tr(long_text if ask == 1 else text),
        "hanzi_then_clean": tr(text + hanzi if ask == 1 else text),
        "never_comply_long": tr(long_text),
        "never_comply_hanzi": tr(text + hanzi),
    }
    if style in simple:
        return _Answer(simple[style])
    if style == "thinking_field":
        return _Answer(tr(text), "" if no_thinking else reasoning)
    if style == "always_thinks":
        filler = "Okay, let me think about how to translate this subtitle line naturally. "
        thinking = (filler * (thinking_tokens // len(filler) + 1))[:thinking_tokens]
        return _Answer(tr(text), thinking)
    if style == "cutoff":
        full = tr(text)
        return _Answer(full[: max(1, len(full) // 2)], reason="length")
    raise ValueError(f"unknown style {style!r}")


def seeded_over(source: str, lang: str, seed: Any, rate: float) -> bool:
    """Whether the seed-mode model answers over budget for this seed: a stable draw in [0, 1) from the
    line and the seed, under `rate`."""
    digest = hashlib.sha256(f"{source}|{lang}|{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def apply_cap(answer: _Answer, cap: Any, partial_content: bool = True) -> _Answer:
    """Truncate at the output cap (1 token per char; thinking is generated first).

    With ``partial_content`` False an over-budget answer loses all its content
    (the always_thinks model: thinking cut at the cap, content "", "length").
    """
    try:
        limit = int(cap)
    except (TypeError, ValueError):
        return answer
    if limit <= 0 or len(answer.thinking) + len(answer.content) <= limit:
        return answer  # num_predict -1/-2 mean "no limit" in Ollama
    if len(answer.thinking) >= limit or not partial_content:
        return _Answer("", answer.thinking[:limit], "length")
    return _Answer(answer.content[: limit - len(answer.thinking)], answer.thinking, "length")


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def config_from_env() -> dict[str, Any]:
    """Extra config from FAKE_OLLAMA_CONFIG (JSON), for fakes spawned as `ollama serve`."""
    raw = os.environ.get("FAKE_OLLAMA_CONFIG")
    return dict(json.loads(raw)) if raw else {}


def serve(host: str, port: int, config: dict[str, Any]) -> int:
    """Run in the foreground until SIGTERM/SIGINT; return the exit status."""
    try:
        fake = FakeOllama(host, port, **config)
    except OSError as exc:  # what `ollama serve` says when the port is taken
        print(f"Error: listen tcp {host}:{port}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"Error: bad fake ollama config: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        fake.start()
        print(f"fake ollama listening on http://{fake.host}:{fake.port}", file=sys.stderr, flush=True)
        while not stop.wait(0.2):
            pass
    finally:
        fake.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers.fake_ollama", description="Fake Ollama server.")
    parser.add_argument("--host", help="bind address (default: from OLLAMA_HOST, else 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: from OLLAMA_HOST, else 11434; 0 = any)")
    parser.add_argument("--config", help="JSON object merged into the config (after FAKE_OLLAMA_CONFIG)")
    args = parser.parse_args(argv)
    host, port = parse_ollama_host(os.environ.get("OLLAMA_HOST"))
    host = args.host if args.host is not None else host
    port = args.port if args.port is not None else port
    config = config_from_env()
    if args.config:
        config.update(json.loads(args.config))
    return serve(host, port, config)


if __name__ == "__main__":
    sys.exit(main())


class FakeOllamaProcess:
    """The fake as its own process on a fixed port, to be killed (SIGKILL, calls in flight) and started
    again on the same port, like an Ollama that updates or is quit and started from its tray."""

    def __init__(self, port: int, **config: Any) -> None:
        self.port = port
        self.config = config
        self.url = f"http://127.0.0.1:{port}"
        self.proc: Any = None

    def start(self, wait: bool = True) -> FakeOllamaProcess:
        import subprocess

        args = [sys.executable, "-m", "tests.servers.fake_ollama", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--config", json.dumps(self.config)]
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "PYTHONPATH": root}
        self.proc = subprocess.Popen(args, cwd=root, env=env, stderr=subprocess.DEVNULL)
        if wait:
            self.wait_up()
        return self

    def wait_up(self, timeout_s: float = 30.0) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/api/version", timeout=2) as reply:
                if reply.status == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the fake did not come up on {self.url}")

    def stats(self) -> dict[str, Any]:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/_fake/stats", timeout=5) as reply:
            return dict(json.loads(reply.read()))

    def kill(self) -> None:
        """SIGKILL: the calls in flight break off, no goodbye."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        """Killed and started again at once, on the same port."""
        self.kill()
        self.start(wait=False)

    def __enter__(self) -> FakeOllamaProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()
