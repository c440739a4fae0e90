"""Request and response bodies. Names here are a contract with LocalClip-Editor and other tools."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from app.errors import ErrorKind, InvalidRequest, PayloadTooLarge
from app.languages import LANGUAGES, UnknownLanguage, language_aliases, resolve_language
from app.settings import MAX_CANDIDATES, Settings
from app.vocabulary import MAX_FIELD_CHARS


def _known_language(value: str) -> str:
    try:
        resolve_language(value)
    except UnknownLanguage as exc:
        raise ValueError(str(exc)) from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("the text is blank: send the Chinese line to translate")
    return value


NonBlank = Annotated[str, StringConstraints(min_length=1)]
# The JSON schema states what the validators enforce, so the OpenAPI page (and contract fuzzing) is true.
SourceText = Annotated[
    str,
    StringConstraints(min_length=1),
    AfterValidator(_not_blank),
    WithJsonSchema({"type": "string", "pattern": r"\S"}),
]
LanguageName = Annotated[
    str,
    StringConstraints(min_length=1),
    AfterValidator(_known_language),
    WithJsonSchema(
        {
            "type": "string",
            "enum": sorted({alias for lang in LANGUAGES for alias in language_aliases(lang)}),
            "description": "A code, Chinese name or English name (case-insensitive).",
        }
    ),
]
Glossary = dict[str, str] | dict[str, dict[str, str]]
ErrorCode = Annotated[str, WithJsonSchema({"type": "string", "enum": [kind.value for kind in ErrorKind]})]


def _not_a_bool(value: object) -> object:
    # JSON true/false is not a number, but pydantic's lax mode reads it as 1/0 (a budget of 0, a deadline
    # of 1 s): refuse it here, for every numeric field of a request.
    if isinstance(value, bool):
        raise ValueError("expected a number, got true/false")
    return value


NotBool = BeforeValidator(_not_a_bool)


class Task(BaseModel):
    """One subtitle line to re-translate (the upstream script's task, plus optional help)."""

    # The upstream config carries fields we do not use; they must not break a request.
    model_config = ConfigDict(extra="ignore")

    task_id: NonBlank = Field(
        max_length=MAX_FIELD_CHARS, description="The caller's id, returned unchanged (e.g. retrans-3)."
    )
    source: SourceText = Field(description="The Chinese source line.")
    target_language: LanguageName = Field(
        description="ko ja en fr de es id, a Chinese name (韩语, 日文, ...) or an English name."
    )
    max_length: Annotated[int | None, NotBool] = Field(
        None,
        description="Length budget in the language's unit (Hangul letters, kana+kanji, words). "
        "Below 1 counts as 1. Unset: derived from the editor's own ratio rule.",
    )
    context: list[str] | None = Field(
        None, description="Neighbouring subtitle lines given to the model as context (never translated)."
    )


class RetranslateRequest(BaseModel):
    """The upstream config file's shape, unchanged, plus our own optional fields."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "tasks": [
                        {"task_id": "retrans-3", "source": "是个小包工头", "target_language": "韩语"},
                        {"task_id": "retrans-4", "source": "大哥", "target_language": "ko"},
                    ]
                }
            ]
        },
    )

    tasks: list[Task] = Field(description="The lines to re-translate; results come back in this order.")
    model: str | None = Field(None, description="Model to use; unset: the service's default.")
    deadline_s: Annotated[float | None, NotBool] = Field(
        None, gt=0, description="Bound on the whole request; unfinished items then fail with a reason."
    )
    unload_after: bool = Field(
        False,
        description="Unload the model when the request is done, freeing GPU memory for voice cloning.",
    )
    use_cache: bool = Field(
        True, description="Serve identical earlier results from the cache; false forces fresh answers."
    )
    candidates: StrictInt | None = Field(
        None,
        ge=1,
        le=MAX_CANDIDATES,
        description="Answers asked at once (each with its own seed) when a line's answer misses its budget or "
        f"a rule; the best is kept. An integer from 1 to {MAX_CANDIDATES}; 1: one follow-up at a time. "
        "Unset: RETRANSLATE_CANDIDATES.",
    )
    glossary: Glossary | None = Field(
        None,
        description='{source_term: target_term}, or per language {"ko": {source_term: target_term}}. '
        "Only terms found in a line's source go into its prompt.",
    )

    @model_validator(mode="after")
    def _unique_task_ids(self) -> RetranslateRequest:
        seen: set[str] = set()
        duplicates: list[str] = []
        for task in self.tasks:
            if task.task_id in seen and task.task_id not in duplicates:
                duplicates.append(task.task_id)
            seen.add(task.task_id)
        if duplicates:
            shown = ", ".join(repr(d[:40]) for d in duplicates[:10]) + (" ..." if len(duplicates) > 10 else "")
            raise ValueError(f"duplicate task_id values: {shown}; every task needs its own id")
        return self


class Timings(BaseModel):
    """Where an item's time went: seconds summed over its backend calls that answered; null where nobody
    measured it (the engine does not report it, or no call was made)."""

    service_wait: float | None = Field(None, description="Waiting in the service's own bound before sending.")
    engine_wait: float | None = Field(
        None, description="Waiting inside the engine for a slot (Ollama reports it; llama-server does not)."
    )
    load: float | None = Field(None, description="The engine loading the model.")
    prompt: float | None = Field(None, description="The engine reading the prompt.")
    generate: float | None = Field(None, description="The engine generating the answer.")


class ItemResult(BaseModel):
    task_id: str
    source: str
    translation: str | None = Field(description="Null whenever success is false: never the source.")
    success: bool
    elapsed: float = Field(description="Seconds from the item's start to its end.")
    error: str | None
    error_code: ErrorCode | None = Field(
        None, description="Why the item failed, as a stable code (README, error_code); null on success."
    )
    attempts: int = Field(description="Backend calls made for this item (retries and re-asks included).")
    candidates_considered: int = Field(
        0,
        description="Model answers this translation was chosen from (1: the first answer fitted; 0: served "
        "from the cache or no answer came back).",
    )
    length: int | None = Field(None, description="The translation's length in length_unit.")
    length_unit: str | None = None
    length_budget: int | None = None
    within_budget: bool | None = None
    warnings: list[str] = Field(default_factory=list)
    cached: bool = False
    timings: Timings = Field(
        default_factory=Timings, description="Where the item's time went (docs/why-slow.md); null parts: unknown."
    )

    @model_validator(mode="after")
    def _encodable(self) -> ItemResult:
        """Nothing that cannot be encoded reaches a response (a stream would break off mid-body). The answer
        checks keep such text out of `translation`; if one ever slips through, this item fails, not the
        batch. Other texts are shown escaped."""
        if self.translation is not None and not _encodable(self.translation):
            raise ValueError("the translation is not valid Unicode")
        self.task_id, self.source = _escaped(self.task_id), _escaped(self.source)
        if self.error is not None:
            self.error = _escaped(self.error)
        return self


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escaped(text: str) -> str:
    return text if _encodable(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


class Summary(BaseModel):
    total: int
    succeeded: int
    failed: int
    elapsed: float
    avg_per_task: float
    engine_parallelism: float | None = Field(
        None,
        description="Calls the engine computed at once over this batch (its compute time over the time it had "
        "work), from the timings it reports; null when it reports none.",
    )


class RetranslateResponse(BaseModel):
    model: str = Field(description="The model that answered.")
    backend: str = Field(description="ollama, openai or embedded.")
    demo_model: bool = Field(
        False, description="True when the packaged demo model answered: its translations must not go into a dub."
    )
    model_reason: str = Field("", description="Why this model answered (named in the request, setting, preference).")
    results: list[ItemResult]
    summary: Summary


class LanguageInfo(BaseModel):
    code: str
    name: str
    length_unit: str
    editor_ratio: float
    accepted_names: list[str]


class HealthResponse(BaseModel):
    status: Literal["ready", "degraded"]
    backend: dict[str, Any]
    model: dict[str, Any]
    max_concurrency: int = Field(description="RETRANSLATE_MAX_CONCURRENCY.")
    backend_slots: int | None = Field(None, description="Parallel slots the backend has, when known.")
    effective_concurrency: int = Field(
        description="Calls in flight at most now: the smaller of the two, then following what the engine serves "
        "(RETRANSLATE_ADAPT_CONCURRENCY)."
    )
    measured_parallelism: float | None = Field(
        None,
        description="Calls the engine computed at once over its recent calls, from the timings it reports; null "
        "until measured (or when it reports none).",
    )
    parallelism_advice: str | None = Field(
        None,
        description="Set when the engine stays near one call at a time while the service sends more: what to "
        "change, and how (docs/why-slow.md).",
    )
    problem: str | None = None


class TranslateTextRequest(BaseModel):
    """The editor frontend's single-line call (`/api/translate-text`)."""

    model_config = ConfigDict(
        extra="ignore", json_schema_extra={"examples": [{"text": "是个小包工头", "target_language": "ko"}]}
    )

    text: SourceText = Field(description="The Chinese line.")
    target_language: LanguageName = Field(description="ko ja en fr de es id (or a Chinese/English name).")
    model: str | None = None
    max_length: Annotated[int | None, NotBool] = None
    allow_demo: bool = Field(
        False,
        description="Accept an answer of the packaged demo model (refused by default with a 503: its translations "
        "are poor, and the editor's panel would take this one as it is).",
    )


class TranslateTextResponse(BaseModel):
    translation: str
    success: Literal[True] = True
    elapsed: float
    source: str
    model: str
    backend: str
    demo_model: bool = False
    model_reason: str = ""
    attempts: int
    length: int | None = None
    length_unit: str | None = None
    length_budget: int | None = None
    within_budget: bool | None = None
    warnings: list[str] = Field(default_factory=list)
    cached: bool = False
    timings: Timings = Field(default_factory=Timings, description="Where the line's time went (docs/why-slow.md).")


def _ids(tasks: list[Task]) -> str:
    """Task ids for an error message: a few, each cut short (an error must not echo a large request)."""
    shown = [repr(t.task_id[:40]) for t in tasks[:10]]
    more = f" and {len(tasks) - 10} more" if len(tasks) > 10 else ""
    return ", ".join(shown) + more


def check_limits(body: RetranslateRequest, settings: Settings) -> None:
    """The service's size limits, with messages that name the setting and the tasks, never the input."""
    if len(body.tasks) > settings.max_tasks:
        raise PayloadTooLarge(
            f"{len(body.tasks)} tasks in one request; the limit is {settings.max_tasks} (RETRANSLATE_MAX_TASKS): "
            "split the batch"
        )
    long_sources = [t for t in body.tasks if len(t.source) > settings.max_source_chars]
    if long_sources:
        raise InvalidRequest(
            f"source longer than {settings.max_source_chars} characters (RETRANSLATE_MAX_SOURCE_CHARS) in task(s) "
            f"{_ids(long_sources)}: send one subtitle line per task",
            loc=("body", "tasks"),
        )
    many_lines = [t for t in body.tasks if len(t.context or []) > settings.max_context_lines]
    if many_lines:
        raise InvalidRequest(
            f"more than {settings.max_context_lines} context lines (RETRANSLATE_MAX_CONTEXT_LINES) in task(s) "
            f"{_ids(many_lines)}: send the neighbouring lines only",
            loc=("body", "tasks"),
        )
    long_context = [t for t in body.tasks if sum(len(line) for line in t.context or []) > settings.max_context_chars]
    if long_context:
        raise InvalidRequest(
            f"more than {settings.max_context_chars} characters of context (RETRANSLATE_MAX_CONTEXT_CHARS) in "
            f"task(s) {_ids(long_context)}: send shorter neighbouring lines",
            loc=("body", "tasks"),
        )
    glossary = body.glossary or {}
    terms = sum(len(v) if isinstance(v, dict) else 1 for v in glossary.values())
    if terms > settings.max_glossary_terms:
        raise PayloadTooLarge(
            f"{terms} glossary entries; the limit is {settings.max_glossary_terms} (RETRANSLATE_MAX_GLOSSARY_TERMS): "
            "send the terms that occur in this batch"
        )
    check_glossary_size(glossary, settings)


def _glossary_pairs(glossary: Mapping[str, object]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in glossary.items():
        if isinstance(value, dict):
            pairs.extend((str(k), str(v)) for k, v in value.items())
        else:
            pairs.append((str(key), str(value)))
    return pairs


def check_glossary_size(glossary: Mapping[str, object], settings: Settings) -> None:
    """What a glossary can make us build is bounded: each term and rendering, and the whole (a rendering goes
    into the prompt of every line holding its term)."""
    pairs = _glossary_pairs(glossary)
    long_terms = [t for t, _ in pairs if len(t) > settings.max_glossary_term_chars]
    if long_terms:
        raise InvalidRequest(
            f"glossary term(s) longer than {settings.max_glossary_term_chars} characters "
            f"(RETRANSLATE_MAX_GLOSSARY_TERM_CHARS): {_quoted(long_terms)}; a term is a word or a name",
            loc=("body", "glossary"),
        )
    long_renderings = [t for t, r in pairs if len(r) > settings.max_glossary_rendering_chars]
    if long_renderings:
        raise InvalidRequest(
            f"glossary rendering(s) longer than {settings.max_glossary_rendering_chars} characters "
            f"(RETRANSLATE_MAX_GLOSSARY_RENDERING_CHARS) for term(s) {_quoted(long_renderings)}: a rendering is "
            "the term in the target language",
            loc=("body", "glossary"),
        )
    total = sum(len(t) + len(r) for t, r in pairs)
    if total > settings.max_glossary_chars:
        raise PayloadTooLarge(
            f"the glossary holds {total} characters; the limit is {settings.max_glossary_chars} "
            "(RETRANSLATE_MAX_GLOSSARY_CHARS): send the terms that occur in this batch"
        )


def _quoted(items: list[str], most: int = 5) -> str:
    shown = ", ".join(repr(item[:40]) for item in items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")
