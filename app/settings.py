"""Every setting of the service, in one place.

Defaults live here and nowhere else: `.env.example` and the settings table of docs/settings.md are generated from
this class (`python -m app.settings --env-example` / `--markdown`) and a test keeps them in sync.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# `.env` and relative paths resolve against the project directory, never the caller's working
# directory: LocalClip-Editor runs our CLI from its own folder.
PROJECT_DIR = Path(__file__).resolve().parent.parent
# Most answers a line may ask at once (setting and request field alike): each is a backend call.
MAX_CANDIDATES = 8

BackendName = Literal["auto", "ollama", "openai", "embedded"]

OLLAMA_DEFAULT_PORT = 11434
# Addresses a server binds to mean "every interface"; a client reaches this machine through loopback.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}


def ollama_url(value: str) -> str:
    """A base URL for Ollama from what a user may have: a URL (`http://host:port`), or Ollama's own
    `OLLAMA_HOST` forms (`host:port`, `:port`, `host`, `0.0.0.0`), read as Ollama's client reads them (http,
    port 11434). A bind-all address becomes loopback. Anything else: ValueError saying what is accepted."""
    text = value.strip()
    if not text:
        return f"http://127.0.0.1:{OLLAMA_DEFAULT_PORT}"
    given_scheme = "://" in text
    if not given_scheme and text.count(":") > 1 and not text.startswith("["):
        ipaddress.IPv6Address(text)  # a bare IPv6 address (OLLAMA_HOST=::); a ValueError names a bad one
        text = f"[{text}]"
    parts = urlsplit(text if given_scheme else f"http://{text}")
    accepted = (
        "use Ollama's URL (http://127.0.0.1:11434) or its OLLAMA_HOST form (127.0.0.1:11434, :11434, a host name)"
    )
    if parts.scheme not in ("http", "https") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"not an Ollama address: {accepted}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the port is not a number from 0 to 65535: {accepted}") from None
    host = parts.hostname or ""
    if any(c.isspace() for c in text) or (not host and parts.netloc not in ("", f":{port}")):
        raise ValueError(f"not an Ollama address: {accepted}")
    host = _ANY_ADDRESS.get(host, host)
    if ":" in host and not host.startswith("["):
        ipaddress.IPv6Address(host)  # a ValueError names the bad address
        host = f"[{host}]"
    if port is None and not given_scheme:
        port = OLLAMA_DEFAULT_PORT
    netloc = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")


class Settings(BaseSettings):
    """Service settings, read from `RETRANSLATE_*` environment variables or `.env`."""

    model_config = SettingsConfigDict(
        env_prefix="RETRANSLATE_",
        env_file=PROJECT_DIR / ".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- backend -------------------------------------------------------------------------------
    backend: BackendName = Field(
        "auto",
        description="Which engine answers: auto (Ollama if reachable or startable, else embedded only "
        "with RETRANSLATE_EMBEDDED_MODEL_PATH), ollama, openai (any /v1 server) or embedded "
        "(a llama-server the service spawns).",
    )
    ollama_url: str = Field(
        "http://127.0.0.1:11434",
        description="Ollama base URL (its native API: /api/chat, /api/tags, ...).",
    )
    model: str | None = Field(
        None,
        description="The model, used strictly (a request may name another). Unset: the first installed of the "
        "preference list (qwen3:4b-instruct-2507-q4_K_M first; README, Models).",
    )
    autostart_ollama: bool = Field(
        True,
        description="Start `ollama serve` when Ollama does not answer and the binary is on PATH.",
    )
    ollama_binary: str = Field("ollama", description="Name or path of the Ollama executable.")
    ollama_start_timeout_s: float = Field(
        30.0, gt=0, description="How long a spawned `ollama serve` may take to answer."
    )
    pull_missing_model: bool = Field(
        False,
        description="Pull the default model at startup when Ollama does not have it: RETRANSLATE_MODEL, or "
        "with no model named the recommended qwen3:4b-instruct-2507-q4_K_M when no model of the preference "
        "list is installed.",
    )
    keep_alive: str | None = Field(
        None,
        description="How long Ollama keeps the model loaded after a call (e.g. 5m, 0, -1). "
        "Unset: Ollama's own default.",
    )
    openai_base_url: str | None = Field(
        None, description="The /v1 URL of an OpenAI-compatible server (backend=openai)."
    )
    openai_api_key: str | None = Field(None, description="API key for the OpenAI-compatible server, if it needs one.")
    embedded_model_path: Path | None = Field(
        None,
        description="A GGUF file for the embedded llama-server. Unset: the packaged demo model "
        "(only with backend=embedded; its translations are poor).",
    )
    embedded_ctx_per_slot: int = Field(
        2048, ge=256, description="Context tokens per llama-server slot (prompt + answer)."
    )
    embedded_start_timeout_s: float = Field(
        120.0, gt=0, description="How long the embedded llama-server may take to load its model."
    )
    embedded_max_restarts: int = Field(
        5, ge=0, description="How often in a row a crashed embedded llama-server is restarted (with backoff)."
    )
    ollama_max_restarts: int = Field(
        3, ge=0, description="How often in a row an `ollama serve` this service started is restarted after a crash."
    )

    # --- fan-out and time bounds --------------------------------------------------------------
    max_concurrency: int = Field(
        4,
        ge=1,
        le=512,
        description="Backend requests in flight for the whole service (one shared bound).",
    )
    adapt_concurrency: bool = Field(
        True,
        description=(
            "Let the bound follow what the engine serves, measured from the timings it reports: at most measured + 1 "
            "calls wait at the engine, the rest wait in the service's queue; it probes upward by itself. Slots the "
            "engine states count as known. false: the fixed bound (RETRANSLATE_MAX_CONCURRENCY, or the stated slots)."
        ),
    )
    request_timeout_s: float = Field(60.0, gt=0, description="Bound on one backend call.")
    item_timeout_s: float = Field(
        180.0,
        gt=0,
        description="Bound on one item from its first backend call to its end, retries included.",
    )
    max_retries: int = Field(2, ge=0, le=10, description="Retries per item on transient failures.")
    retry_backoff_s: float = Field(0.5, ge=0, description="First retry backoff; doubles per retry, with jitter.")
    retry_backoff_max_s: float = Field(8.0, ge=0, description="Upper bound on one backoff.")
    breaker_failures: int = Field(
        3,
        ge=1,
        description="Consecutive backend timeouts/connection failures (from any request) after which every call "
        "fails at once for RETRANSLATE_BREAKER_COOLDOWN_S.",
    )
    breaker_cooldown_s: float = Field(
        15.0,
        gt=0,
        description="How long calls fail at once after the breaker opened; then one probe call decides whether the "
        "backend is back.",
    )
    breaker_restart_window_s: float = Field(
        30.0,
        ge=0,
        description="How long an engine that refuses connections counts as restarting: meanwhile lines wait "
        "(each until its own deadline) for a probe to find it back instead of failing breaker_open; after it, "
        "calls fail at once for RETRANSLATE_BREAKER_COOLDOWN_S (0: never wait).",
    )
    max_response_bytes: int = Field(
        1024 * 1024,
        ge=4096,
        description="Largest backend answer read, in bytes; a bigger one fails that call (a subtitle line needs a "
        "few hundred bytes).",
    )
    readiness_ttl_s: float = Field(2.0, ge=0, description="How long a backend readiness check is reused.")

    # --- generation ------------------------------------------------------------------------------
    max_output_tokens: int = Field(
        128, ge=8, description="Cap on generated tokens per call (one subtitle line, as JSON)."
    )
    thinking_tokens: int = Field(
        1024,
        ge=0,
        description="Extra token allowance, only for a model whose capabilities include thinking.",
    )
    temperature: float = Field(0.3, ge=0, le=2, description="Sampling temperature.")
    max_answer_chars: int = Field(
        1000,
        ge=50,
        description="Longest translation accepted from a model, in characters; a longer answer is unusable (a "
        "subtitle line is short; a model that ignores the output cap is not).",
    )
    max_reasks: int = Field(
        2,
        ge=0,
        le=5,
        description="Follow-up asks when an answer misses its length budget or target script.",
    )
    candidates: int = Field(
        3,
        ge=1,
        le=MAX_CANDIDATES,
        description="Answers asked at once (each with its own seed) at every follow-up ask of a line that "
        "missed its budget or a rule; the best is kept. 1: one follow-up at a time. Lines that fit at once "
        "cost nothing more.",
    )

    # --- cache ------------------------------------------------------------------------------------------
    cache_size: int = Field(10_000, ge=0, description="Good results kept in memory (LRU); 0 turns the cache off.")
    cache_max_rows: int = Field(
        100_000,
        ge=1,
        description="Most results the SQLite file (RETRANSLATE_CACHE_PATH) keeps: beyond it the oldest are "
        "deleted as new ones are written.",
    )
    cache_path: Path | None = Field(
        None,
        description="SQLite file that keeps cached results across restarts (relative paths resolve "
        "against the project directory). Unset: memory only.",
    )

    # --- the CLI drop-in (LocalClip-Editor kills the old script's run after 600 s) -------------------
    cli_deadline_s: float = Field(
        480.0,
        gt=0,
        description="Overall deadline of one CLI run (python -m app.cli); unfinished items then count as "
        "failed and the list is still printed, well before the editor's 600 s kill.",
    )

    # --- security and limits -------------------------------------------------------------------------
    api_key: SecretStr | None = Field(
        None,
        description="When set, translation routes require `Authorization: Bearer <key>` or `X-API-Key: <key>` "
        "(/health, /ready, /docs stay open).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        ["http://localhost:5173", "http://127.0.0.1:5173", "http://localhost:3000", "http://127.0.0.1:3000"],
        description="Browser origins allowed to call the API (comma-separated); the defaults are the editor "
        "frontend's dev/production ports on this machine.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        ["localhost", "127.0.0.1", "[::1]"],
        description="Host names the service answers to (comma-separated; the bind address is always added; `*` "
        "turns the check off). Any other Host header gets a 400: a web page rebound to 127.0.0.1 (DNS rebinding) "
        "cannot drive the service.",
    )
    max_tasks: int = Field(10_000, ge=1, description="Most tasks one request may carry (413 beyond).")
    max_source_chars: int = Field(5_000, ge=1, description="Longest source line accepted (422 beyond).")
    max_context_lines: int = Field(10, ge=0, description="Most context lines one task may carry (422 beyond).")
    max_context_chars: int = Field(
        2_000, ge=0, description="Most characters in all the context lines of one task (422 beyond)."
    )
    max_glossary_terms: int = Field(
        1_000, ge=0, description="Most glossary entries one request may carry (413 beyond)."
    )
    max_glossary_term_chars: int = Field(
        100, ge=1, description="Longest glossary source term accepted, in characters (422 beyond)."
    )
    max_glossary_rendering_chars: int = Field(
        200, ge=1, description="Longest glossary rendering (target term) accepted, in characters (422 beyond)."
    )
    max_glossary_chars: int = Field(
        20_000,
        ge=0,
        description="Most characters in a request's whole glossary, terms and renderings together (413 beyond).",
    )
    max_prompt_glossary_chars: int = Field(
        1_000,
        ge=0,
        description="Most glossary characters put into one line's prompt: the longest matching terms first, the "
        "rest left out, so a line's prompt stays about the size of its source whatever the glossary.",
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest request body accepted, in bytes (413 beyond)."
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long a client may take to send its whole request body (408 beyond): a slow sender "
        "cannot hold a connection and its buffers open.",
    )
    shutdown_grace_s: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM: how long requests in progress may take to finish; lines not yet sent to "
        "the backend fail at once with a shutdown error.",
    )

    # --- HTTP server ---------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the service binds.")
    port: int = Field(8642, ge=1, le=65535, description="Port the service binds.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Log level: DEBUG, INFO, WARNING, ERROR or CRITICAL (any case)."
    )

    @field_validator("ollama_url", "openai_base_url")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("ollama_url")
    @classmethod
    def _ollama_host_forms(cls, value: str) -> str:
        return ollama_url(value)

    @field_validator("openai_base_url")
    @classmethod
    def _openai_needs_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Checked at start, in one line: a service that starts without it could never translate.
        if value is None and info.data.get("backend") == "openai":
            raise ValueError(
                "RETRANSLATE_BACKEND=openai needs the server's /v1 URL, e.g. http://127.0.0.1:8080/v1 (or set "
                "RETRANSLATE_BACKEND=auto for Ollama)"
            )
        return value

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator(
        "embedded_model_path", "cache_path", "keep_alive", "openai_base_url", "openai_api_key", "model", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `RETRANSLATE_CACHE_PATH=` in a .env means "not set", not "the current directory".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("embedded_model_path", "cache_path")
    @classmethod
    def _resolve_path(cls, value: Path | None) -> Path | None:
        if value is None or str(value) == "":
            return None
        return value if value.is_absolute() else (PROJECT_DIR / value)


@lru_cache
def get_settings() -> Settings:
    return Settings()


def _allowed(name: str) -> str:
    """What a setting accepts, in words, from its type and constraints."""
    field = Settings.model_fields[name]
    annotation = str(field.annotation)
    bounds = {type(m).__name__: m for m in field.metadata}
    low = next((getattr(m, attr) for m in bounds.values() for attr in ("ge", "gt") if hasattr(m, attr)), None)
    high = next((m.le for m in bounds.values() if hasattr(m, "le")), None)
    if "Literal" in annotation:
        return "one of " + ", ".join(repr(v).strip("'") for v in getattr(field.annotation, "__args__", ()))
    if field.annotation is bool:
        return "true or false"
    kind = "a whole number" if "int" in annotation else "a number" if "float" in annotation else "text"
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} of at least {low}" if "ge" in str(bounds) else f"{kind} above {low}"
    return kind


def settings_errors(exc: ValidationError) -> list[str]:
    """One line per bad value: the environment variable, what it got, what is allowed."""
    lines = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        env = f"RETRANSLATE_{name.upper()}"
        got = error.get("input")
        allowed = _allowed(name) if name in Settings.model_fields else "see .env.example"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if got is None:
            lines.append(f"{env} is not set: {message}")
            continue
        lines.append(f"{env}={got!r} is not valid: {message}; allowed: {allowed} (see .env.example)")
    return lines


def load_settings() -> Settings:
    """The settings, or exit status 2 with one line per bad value (no traceback): for every entry point."""
    try:
        return get_settings()
    except ValidationError as exc:
        for line in settings_errors(exc):
            sys.stderr.write(f"retranslate: {line}\n")
        raise SystemExit(2) from None
    except UnicodeDecodeError as exc:
        # A .env saved as GBK/ANSI (old Notepad's default on Chinese Windows) cannot be read as UTF-8.
        sys.stderr.write(
            f"retranslate: {PROJECT_DIR / '.env'} is not UTF-8 (byte {exc.object[exc.start : exc.start + 1]!r} at "
            f"position {exc.start}): save it as UTF-8 (Notepad: File, Save as, Encoding: UTF-8)\n"
        )
        raise SystemExit(2) from None


def _fields() -> list[tuple[str, str, str]]:
    """(ENV NAME, default as text, description) for every setting."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default
        if default is None:
            text = ""
        elif isinstance(default, bool):
            text = str(default).lower()
        elif isinstance(default, list):
            text = ",".join(str(item) for item in default)
        else:
            text = str(default)
        rows.append((f"RETRANSLATE_{name.upper()}", text, field.description or ""))
    return rows


def env_example() -> str:
    lines = [
        "# Settings of the retranslate service (generated by `python -m app.settings --env-example`).",
        "# Every line shows the default; uncomment and change what you need, in .env or the environment.",
        "",
    ]
    for env, default, description in _fields():
        lines.append(f"# {description}")
        lines.append(f"# {env}={default}")
        lines.append("")
    return "\n".join(lines)


def markdown_table() -> str:
    lines = ["| setting | default | meaning |", "|---|---|---|"]
    for env, default, description in _fields():
        shown = f"`{default}`" if default else "unset"
        lines.append(f"| `{env}` | {shown} | {description.replace('|', '/')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--env-example", action="store_true", help="print .env.example")
    group.add_argument("--markdown", action="store_true", help="print the settings table (docs/settings.md)")
    args = parser.parse_args(argv)
    sys.stdout.write(env_example() if args.env_example else markdown_table() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
