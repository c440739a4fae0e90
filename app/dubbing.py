"""Dubbing fitness: the editor's own length counters, length budgets and target-script checks.

Pure functions. Lengths are counted exactly as LocalClip-Editor counts them (quirks included), because the
editor's count decides whether it picks a line for re-translation again.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field

from app.languages import Language

# The editor's ideograph range for a source line (CJK Unified Ideographs only).
_SOURCE_IDEOGRAPH = re.compile(r"[\u4e00-\u9fff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_JA_COUNTED = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\u3400-\u4dbf]")
# Hanzi/kanji as a script check (wider than the editor's counter: extension A and compatibility forms too).
_HAN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff]")
# Anything CJK: Han, kana, Hangul, CJK punctuation and full-width forms.
_ANY_CJK = re.compile(
    r"[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af\u1100-\u11ff"
    r"\u3130-\u318f\u3000-\u303f\uff00-\uffef]"
)
_NOT_ASCII_WORD = re.compile(r"[^A-Za-z0-9 ]")


def source_ideographs(source: str) -> int:
    """CJK ideographs in a Chinese source line, as the editor counts them."""
    return len(_SOURCE_IDEOGRAPH.findall(source))


def count_length(text: str, lang: Language) -> int:
    """A translation's length in the editor's unit for `lang`.

    ko: Hangul letters only. ja: kana plus kanji. en/fr/de/es: words after deleting every character
    outside ASCII letters, digits and spaces (so "café" loses its é and "don't" is one word). id: the editor
    counts only ideographs (0 for any Latin line, which makes every budget meaningless), so we count
    words like the other Latin-script languages.
    """
    if lang.code == "ko":
        return len(_HANGUL.findall(text))
    if lang.code == "ja":
        return len(_JA_COUNTED.findall(text))
    return len(_NOT_ASCII_WORD.sub("", text).split())


def length_budget(source: str, lang: Language, max_length: int | None) -> int | None:
    """The most a translation may measure, or None when the line has no budget.

    A caller's `max_length` wins (below 1 counts as 1: the translation stage computes
    int(len × ratio × 0.8), which is 0 for a one-ideograph line). Otherwise the editor's own trigger:
    a line is picked again when length / ideographs is strictly above the ratio, so the budget is the
    largest length at or under it. A source without ideographs is never picked: no budget.
    """
    if max_length is not None:
        return max(1, max_length)
    ideographs = source_ideographs(source)
    if ideographs == 0:
        return None
    # The small epsilon keeps 1.2 × 5 = 6.000000000000001 from losing a word to float error.
    return math.floor(lang.editor_ratio * ideographs + 1e-9)


HARD_RULES = {
    "hanzi_in_korean": "the Korean answer contains Hanzi (Chinese characters)",
    "no_hangul": "the Korean answer contains no Hangul",
    "cjk_in_latin": "the answer contains CJK characters, which the target language does not use",
    "not_japanese": "the answer has Chinese characters but no kana: it is Chinese, not Japanese",
    "untranslated": "the answer repeats the Chinese source untranslated",
}

# What a re-ask tells the model about each broken rule.
REASK_HINTS = {
    "hanzi_in_korean": "It contains Chinese characters (Hanzi). Write it in Hangul only.",
    "no_hangul": "It is not Korean. Write it in Korean, in Hangul.",
    "cjk_in_latin": "It contains Chinese/Japanese/Korean characters. Use only the Latin alphabet.",
    "not_japanese": "It is Chinese, not Japanese. Write natural Japanese with kana.",
    "untranslated": "It repeats the Chinese line instead of translating it. Translate it.",
}


@dataclass
class Fitness:
    """How one answer measures up."""

    length: int
    length_unit: str
    length_budget: int | None
    within_budget: bool | None
    hard_failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def script_ok(self) -> bool:
        return not self.hard_failures

    @property
    def acceptable(self) -> bool:
        """Good enough to stop asking: script rules hold and the budget (if any) is met."""
        return self.script_ok and self.within_budget is not False


def _normalise(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if ch.isalnum()).casefold()


def script_failures(answer: str, source: str, lang: Language) -> list[str]:
    """Hard script rules the answer breaks (codes from HARD_RULES)."""
    failures: list[str] = []
    if lang.code == "ko":
        if _HAN.search(answer):
            failures.append("hanzi_in_korean")
        elif not _HANGUL.search(answer):
            failures.append("no_hangul")
    elif lang.code == "ja":
        if _HAN.search(answer) and not _KANA.search(answer):
            failures.append("not_japanese")
    elif _ANY_CJK.search(answer):
        failures.append("cjk_in_latin")
    normalised = _normalise(answer)
    if normalised and normalised == _normalise(source):
        failures.append("untranslated")
    return failures


def assess(answer: str, source: str, lang: Language, budget: int | None) -> Fitness:
    """Measure an answer against its budget and its language's script rules."""
    length = count_length(answer, lang)
    within = None if budget is None else length <= budget
    hard = script_failures(answer, source, lang)
    warnings = list(hard)
    if within is False:
        warnings.append("over_budget")
    if lang.code == "ja" and "not_japanese" not in hard and _HAN.search(answer):
        # Soft rule: the prompt asks for kana, but re-asking for kanji would triple the calls for
        # almost every Japanese line.
        warnings.append("kanji_in_japanese")
    return Fitness(length, lang.length_unit, budget, within, hard, warnings)


def better(candidate: Fitness, best: Fitness | None) -> bool:
    """Whether `candidate` beats `best`: script rules first, then within budget, then shorter."""
    if best is None:
        return True

    def rank(f: Fitness) -> tuple[int, int, int]:
        return (len(f.hard_failures), 0 if f.within_budget is not False else 1, f.length)

    return rank(candidate) < rank(best)
