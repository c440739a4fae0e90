"""What a model's reply means: a translation to check, or a classified failure. Pure functions.

A reply is untrusted input: anything can arrive (a lone surrogate, control characters, 50,000 characters,
our own prompt echoed). This is the one place that turns it into text the rest of the service may look
at, and it checks that text before anything else does: valid Unicode without control characters, in NFC,
at most RETRANSLATE_MAX_ANSWER_CHARS long, not a placeholder, not our own instructions or examples.
`app.dubbing` then judges the text against the line's budget and its language's rules.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import regex

from app.backends.base import ChatReply
from app.dubbing import Fitness, assess
from app.errors import BackendCallError, ErrorKind
from app.languages import Language
from app.prompt import UnusableAnswer, copies_example, echoes_prompt, is_placeholder, parse_answer, strip_thinking
from app.vocabulary import RECOMMENDED_MODEL

# Lone surrogates, control characters, private-use characters, unassigned code points, and the invisible
# direction controls that can reorder what a subtitle shows.
_UNSAFE = regex.compile(r"[\p{Cs}\p{Cc}\p{Co}\p{Cn}\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069\U000E0000-\U000E007F]")
# Other invisible format characters (zero-width space, byte-order mark, soft hyphen, word joiner, ...)
# carry nothing a voice says: they are removed. A zero-width joiner stays only between two emoji (👨‍👩‍👧);
# none of our seven languages needs it, or the non-joiner, inside words.
_FORMAT = regex.compile(
    r"(?<!\p{Extended_Pictographic}[\uFE0F\p{Emoji_Modifier}]?)\u200d|\u200d(?!\p{Extended_Pictographic})|[\p{Cf}--\u200d]",
    regex.V1,
)


@dataclass(frozen=True)
class Answer:
    text: str
    fitness: Fitness


def unusable(message: str) -> BackendCallError:
    return BackendCallError(ErrorKind.UNUSABLE_OUTPUT, message)


def unsafe_text(text: str) -> str | None:
    """Why `text` cannot be handed on (to a response, a log line, the cache), or None."""
    found = _UNSAFE.search(text)
    if found is None:
        return None
    char = found.group(0)
    if "\ud800" <= char <= "\udfff":
        return f"it holds a lone surrogate (U+{ord(char):04X}), which is not valid Unicode"
    if "\U000e0000" <= char <= "\U000e007f":
        return f"it holds an invisible tag character (U+{ord(char):04X}), which can smuggle hidden text"
    category = unicodedata.category(char)
    kind = {"Cc": "a control character", "Co": "a private-use character", "Cn": "an unassigned code point"}
    return f"it holds {kind.get(category, 'an invisible direction control')} (U+{ord(char):04X})"


def check_text(text: str, *, max_chars: int) -> str:
    """The answer's text, normalised (NFC, invisible format characters removed), or UNUSABLE_OUTPUT
    saying what is wrong with it."""
    problem = unsafe_text(text)
    if problem is not None:
        raise unusable(f"the answer is not usable text: {problem}")
    text = _FORMAT.sub("", unicodedata.normalize("NFC", text))
    if len(text) > max_chars:
        raise unusable(
            f"the answer is {len(text)} characters long; a subtitle line is at most {max_chars} "
            "(RETRANSLATE_MAX_ANSWER_CHARS)"
        )
    return text


def has_thinking(reply: ChatReply) -> bool:
    """The reply carries thinking (a field, or tags in the text) although we asked for none."""
    return bool(reply.thinking.strip()) or strip_thinking(reply.content)[1]


def interpret(
    reply: ChatReply, *, model: str, max_tokens: int, max_chars: int, source: str, lang: Language, budget: int | None
) -> Answer:
    """The translation in `reply` and how it measures up (`judge`), or UNUSABLE_OUTPUT / THINKING_EXHAUSTED.
    A text that breaks a language rule is returned with its fitness: the caller re-asks."""
    rest, tagged = strip_thinking(reply.content)
    thought = bool(reply.thinking.strip()) or tagged
    if reply.finish_reason == "length":
        if thought and not rest:
            raise BackendCallError(
                ErrorKind.THINKING_EXHAUSTED,
                f"model {model} spent its whole allowance of {max_tokens} tokens thinking and gave no answer; it "
                f"thinks whatever the request says. Fix: `ollama pull {RECOMMENDED_MODEL}` and unset "
                f"RETRANSLATE_MODEL (or set it to {RECOMMENDED_MODEL})",
            )
        raise unusable(f"the answer was cut off at the output cap of {max_tokens} tokens")
    try:
        text = parse_answer(reply.content).text
    except UnusableAnswer as exc:
        raise unusable(str(exc)) from None
    verdict = judge(source, lang, text, budget, max_chars=max_chars)
    if verdict.kind is ErrorKind.UNUSABLE_OUTPUT:
        raise unusable(verdict.message)
    assert verdict.fitness is not None
    return Answer(verdict.text, verdict.fitness)


@dataclass(frozen=True)
class Verdict:
    """The one decision on a text offered as a line's translation (a fresh answer or a cached value).

    `check` names the first check that refused it (None: accepted); `kind` is UNUSABLE_OUTPUT for a text
    that is no translation at all, RULE_VIOLATION for one that breaks a language rule (worth a re-ask).
    `text` is the text as it may be handed on (normalised); `fitness` is None when the text never got
    as far as the language rules.
    """

    text: str
    check: str | None
    kind: ErrorKind | None
    message: str
    fitness: Fitness | None

    @property
    def accepted(self) -> bool:
        return self.check is None


def judge(source: str, lang: Language, answer: str, budget: int | None, *, max_chars: int = 1000) -> Verdict:
    """Accept or refuse `answer` as the translation of `source` into `lang` under `budget`. Pure.

    Every text that may become a translation passes here: a model's parsed answer (`interpret`) and a
    value read back from the cache (the translator's cache read).
    """
    try:
        text = check_text(answer, max_chars=max_chars)
    except BackendCallError as exc:
        return Verdict(answer, "unsafe_text", ErrorKind.UNUSABLE_OUTPUT, str(exc), None)
    text = " ".join(text.split())
    if not text:
        return Verdict(text, "empty", ErrorKind.UNUSABLE_OUTPUT, "the model answered with an empty translation", None)
    if is_placeholder(text):
        message = f"the model echoed the placeholder {text!r} instead of translating"
        return Verdict(text, "placeholder", ErrorKind.UNUSABLE_OUTPUT, message, None)
    if copies_example(text, source, lang):
        # Small models sometimes copy a few-shot answer instead of translating the line.
        message = f"the model repeated the prompt's example answer {text!r}"
        return Verdict(text, "few_shot_copy", ErrorKind.UNUSABLE_OUTPUT, message, None)
    if echoes_prompt(text, source, lang, budget):
        message = "the model answered with our own instructions instead of a translation"
        return Verdict(text, "prompt_echo", ErrorKind.UNUSABLE_OUTPUT, message, None)
    fitness = assess(text, source, lang, budget)
    if fitness.hard_failures:
        return Verdict(text, fitness.hard_failures[0], ErrorKind.RULE_VIOLATION, fitness.reasons(lang), fitness)
    return Verdict(text, None, None, "", fitness)
