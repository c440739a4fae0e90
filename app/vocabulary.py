"""The words the service and the editor's side share, in one place: standard library only, Python 3.8
syntax (the drop-in runs with the editor's own Python, which has none of our dependencies).

The language names the editor sends, the model preference and how model names match, the longest text
field, the drop-in's and CLI's deadline default, the demo model's warning. `app.editor_protocol` (the CLI
and the drop-in) and the service (`app.languages`, `app.schemas`, the selector, the routes) import it;
nothing here imports from `app`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# --- the languages the editor names -------------------------------------------------------------------

# Codes (the frontend, the translation stage), Chinese names (the live caller: 韩语; the old script's usage
# text: 韩文), English names and a few spellings people type. Compared case-insensitively.
LANGUAGE_NAMES: dict[str, tuple[str, ...]] = {
    "ko": ("Korean", "韩语", "韩文", "韓語", "韓文", "韩国语", "kr", "한국어"),
    "ja": ("Japanese", "日语", "日文", "日語", "日本语", "jp", "日本語"),
    "en": ("English", "英语", "英文", "英語"),
    "fr": ("French", "法语", "法文", "法語", "français"),
    "de": ("German", "德语", "德文", "德語", "deutsch"),
    "es": ("Spanish", "西班牙语", "西班牙文", "西班牙語", "español"),
    "id": ("Indonesian", "印尼语", "印尼文", "印度尼西亚语", "印尼語", "bahasa indonesia"),
}
_LANGUAGE_BY_NAME = {name.casefold(): code for code, names in LANGUAGE_NAMES.items() for name in (code, *names)}


def language_code(name: str) -> str | None:
    """The code a caller's language name means, or None."""
    return _LANGUAGE_BY_NAME.get(name.strip().casefold())


def unknown_language_message(name: str) -> str:
    return (
        f"unsupported target_language {name!r}: use one of {', '.join(LANGUAGE_NAMES)} (or a Chinese name such as "
        "韩语/日文, or an English name such as Korean); GET /languages lists every accepted name"
    )


# --- the model ----------------------------------------------------------------------------------------

RECOMMENDED_MODEL = "qwen3:4b-instruct-2507-q4_K_M"

# What the service uses when no model is named (RETRANSLATE_MODEL unset, no model in the request): the
# first one installed. Non-thinking instruct builds first (a thinking build spends seconds and tokens on
# every line), the recommended one at the top; then qwen3:4b (thinking) and the common qwen2.5 sizes, which
# is what LocalClip-Editor users already have (the editor's own steps use qwen2.5:32b).
MODEL_PREFERENCE = (
    RECOMMENDED_MODEL,
    "qwen3:4b-instruct",
    "qwen3:4b-instruct-2507-q8_0",
    "qwen3:4b-instruct-2507-fp16",
    "qwen3:30b-a3b-instruct-2507-q4_K_M",
    "qwen3:30b-a3b-instruct-2507",
    "qwen3:4b",
    "qwen2.5:32b",
    "qwen2.5:14b",
    "qwen2.5:7b",
    "qwen2.5:3b",
)


def _model_key(name: str) -> str:
    key = name.strip().lower()
    return key[: -len(":latest")] if key.endswith(":latest") else key


def same_model(a: str, b: str) -> bool:
    """Ollama's names: case-insensitive, and `name` is `name:latest`."""
    return _model_key(a) == _model_key(b)


def first_installed(candidates: Iterable[str], installed: Iterable[str]) -> str | None:
    """The first of `candidates` that is installed, as the backend spells it."""
    have = {_model_key(name): name for name in installed}
    for candidate in candidates:
        if _model_key(candidate) in have:
            return have[_model_key(candidate)]
    return None


def preference_hint(installed: Sequence[str]) -> str:
    listed = ", ".join(sorted(installed)[:20]) or "none"
    return (
        f"no model of the preference list is installed (installed: {listed}). Fix: `ollama pull "
        f"{RECOMMENDED_MODEL}` (recommended), or set RETRANSLATE_MODEL to an installed model"
    )


# A subtitle line is far shorter. JSON escapes a character in at most 6 bytes, so a field this long still
# fits a 64 KiB line with room to spare.
MAX_FIELD_CHARS = 4000

# The drop-in's and the CLI's time bound for a whole run (RETRANSLATE_CLI_DEADLINE_S, --deadline).
DEFAULT_DEADLINE_S = 480.0

# The one wording of the demo model's warning (the docs page, the refusal of /api/translate-text, the CLI's
# and the drop-in's notice, the log): each place adds only what to do there.
DEMO_WARNING = (
    "DEMO MODEL: the packaged demo model (SmolLM2-135M) answers; it shows the pipeline works, but "
    "its translations are poor and must not go into a dub. For real use install Ollama and "
    f"`ollama pull {RECOMMENDED_MODEL}`, or set RETRANSLATE_EMBEDDED_MODEL_PATH to a real GGUF model."
)
