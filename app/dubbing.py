"""Dubbing fitness: the editor's own length counters, length budgets, and the rules an answer must keep.

Pure functions. Lengths are counted exactly as LocalClip-Editor counts them (quirks included), because the
editor's count decides whether it picks a line for re-translation again.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field

import regex

from app import langid
from app.languages import Language, resolve_language

# The editor's ideograph range for a source line (CJK Unified Ideographs only).
_SOURCE_IDEOGRAPH = re.compile(r"[\u4e00-\u9fff]")
# The editor's counters (their ranges, quirks included), not script checks: see the rules below.
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_JA_COUNTED = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff\u3400-\u4dbf]")
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


# --- the rules an answer must keep -----------------------------------------------------------------------

# Scripts by Unicode property (the `regex` module): every Han block (extensions, compatibility forms) is
# Han, whatever its code point. Characters of the Common and Inherited scripts (digits, punctuation,
# symbols, combining marks, the prolonged sound mark) are allowed in every language.
_SCRIPT_HAN = regex.compile(r"\p{Script=Han}")
_SCRIPT_HANGUL = regex.compile(r"\p{Script=Hangul}")
_SCRIPT_KANA = regex.compile(r"[\p{Script=Hiragana}\p{Script=Katakana}]")
_SCRIPT_LATIN_WORD = regex.compile(r"\p{Script=Latin}+")
_SCRIPT_LATIN = regex.compile(r"\p{Script=Latin}")
_SCRIPT_OTHER = regex.compile(
    r"[^\p{Script=Common}\p{Script=Inherited}\p{Script=Latin}\p{Script=Han}\p{Script=Hangul}"
    r"\p{Script=Hiragana}\p{Script=Katakana}]"
)
# Chinese in a Japanese answer, told by its forms rather than its length (東京大学, 一石二鳥, 本日休業 are
# Japanese; 东京大学, 今天休息 are not):
# - a simplified form Japanese never writes: a CJK Unified ideograph outside JIS X 0213, the full
#   Japanese character set (东 们 这 爱 鸟 见 ...; the Japanese forms 東 愛 鳥 見 are in it);
# - a character that only Chinese writes, although JIS has it (sentence particles, 你, 她, 么);
# - a word only Chinese uses (今天, 没有, 什么 ...), all of whose characters Japanese also has;
# - an all-kanji answer equal to the Chinese source that holds a Chinese pronoun or adverb (我不想去学校);
#   one without them is written the same in both languages (北京大学, 学生, 了解).
_CHINESE_ONLY_CHARS = frozenset("吧呢吗嘛啦呀你她么")
_CHINESE_ONLY_WORDS = regex.compile(
    "今天|明天|昨天|什么|怎么|为什么|没有|我们|你们|他们|这个|那个|这里|那里|哪里|知道|喜欢|可以|现在|已经|因为|"
    "所以|但是|如果|一起|一下|觉得|东西|不是|是的"
)
_CHINESE_GRAMMAR = frozenset("我他这那没很也就")
_UNIFIED = regex.compile(r"[\u4e00-\u9fff]")
# An answer with no letters at all (punctuation, a number) is a translation only of a line with nothing
# more to say: at most this many ideographs that are not numerals (四十二号 → "42" is right, "42" for
# 我们明天早上见 is not).
MAX_WORDLESS_IDEOGRAPHS = 1
_NUMERALS = frozenset("零〇一二三四五六七八九十百千万亿两")
_LETTER = regex.compile(r"\p{L}")
# Markup a subtitle line may carry (HTML-like tags, ASS override blocks) and JSON: an answer may hold one
# only when its source does (the editor would dub the tag or the JSON).
_MARKUP = {
    "a tag": regex.compile(r"<\s*/?\s*[A-Za-z!][^<>]*>"),
    "an ASS override block": regex.compile(r"\{\\[^{}]*\}"),
    "JSON": regex.compile(r"[{\[]\s*\"|\"\s*:\s*[\"{\[\d]"),
}
# Latin tokens in a Korean or Japanese line (names, OK, TV): at most this many words, or fewer Latin
# letters than Korean/Japanese ones.
MAX_LATIN_WORDS = 2


@dataclass(frozen=True)
class Rule:
    code: str
    languages: str
    counts: str
    hard: bool
    # Why an item failed (its error), and what a re-ask tells the model; {language}, {detected} and
    # {scripts} are filled in.
    message: str
    hint: str


RULES: dict[str, Rule] = {
    rule.code: rule
    for rule in (
        Rule("no_hangul", "ko", "no Hangul letter at all", True,
             "the Korean answer contains no Hangul", "It is not Korean. Write it in Korean, in Hangul."),
        Rule("hanzi_in_korean", "ko", "any Han ideograph, of any block (extensions and compatibility forms included)",
             True, "the Korean answer contains Hanzi (Chinese characters)",
             "It contains Chinese characters (Hanzi). Write it in Hangul only."),
        Rule("kana_in_korean", "ko", "any hiragana or katakana", True,
             "the Korean answer contains Japanese kana", "It contains Japanese kana. Write it in Hangul only."),
        Rule("no_japanese", "ja", "neither kana nor kanji (Latin letters or symbols only)", True,
             "the Japanese answer is not written in Japanese", "It is not Japanese. Write it in Japanese, with kana."),
        Rule("not_japanese", "ja", "Chinese forms: a simplified character Japanese never writes (outside JIS X 0213, "
             "e.g. 东 们 这), a Chinese-only particle or word (吧 呢 你 今天 没有 ...), or the source repeated in "
             "kanji with a Chinese pronoun or adverb; kanji-only Japanese (東京大学, 本日休業) is fine", True,
             "the answer is Chinese, not Japanese",
             "It is Chinese, not Japanese. Write natural Japanese with kana."),
        Rule("hangul_in_japanese", "ja", "any Hangul", True,
             "the Japanese answer contains Korean Hangul", "It contains Korean Hangul. Write it in Japanese."),
        Rule("mostly_latin", "ko, ja", f"more than {MAX_LATIN_WORDS} Latin words and more Latin letters than "
             "Korean/Japanese ones (names, OK, TV stay allowed)", True,
             "the answer is mostly in the Latin alphabet, not in {language}",
             "It is mostly in the Latin alphabet. Write it in {language}; keep only names in Latin letters."),
        Rule("cjk_in_latin", "en, fr, de, es, id", "any Han, kana or Hangul", True,
             "the answer contains CJK characters, which the target language does not use",
             "It contains Chinese/Japanese/Korean characters. Use only the Latin alphabet."),
        Rule("other_script", "all", "letters of a script the language does not use (Cyrillic, Arabic, Bopomofo, "
             "Thai, ...)", True, "the answer contains letters of another script ({scripts})",
             "It contains letters of another script ({scripts}). Write it in {language} only."),
        Rule("wrong_language", "en, fr, de, es, id", f"{langid.MIN_WORDS}+ words that the language identifier, "
             f"restricted to these five, gives to another of them with probability ≥ {langid.MIN_PROBABILITY}",
             True, "the answer is in {detected}, not {language}",
             "It is written in {detected}, not {language}. Write it in {language}."),
        Rule("untranslated", "ko, en, fr, de, es, id", "a source with Chinese ideographs repeated (letters and "
             "digits compared); a source without them (a name, a number, OK) may rightly come back as it is",
             True, "the answer repeats the Chinese source untranslated",
             "It repeats the Chinese line instead of translating it. Translate it."),
        Rule("no_content", "all", f"no letter at all (punctuation, a number) for a source with more than "
             f"{MAX_WORDLESS_IDEOGRAPHS} ideograph that is not a numeral", True,
             "the answer has no words, but the line does", "It has no words. Translate the whole line."),
        Rule("markup", "all", "an HTML-like tag, an ASS override block or JSON that the source does not have",
             True, "the answer holds {markup}, which the source line does not have",
             "It contains {markup}. Answer with the translated line only, as plain text."),
        Rule("over_budget", "all", "longer than the line's budget in the editor's own unit", False,
             "the answer is longer than its budget", "Make it shorter."),
        Rule("kanji_in_japanese", "ja", "any kanji (the prompt asks for kana)", False,
             "the Japanese answer uses kanji", "Prefer kana."),
    )
}  # fmt: skip
HARD_RULES = {code: rule.message for code, rule in RULES.items() if rule.hard}
REASK_HINTS = {code: rule.hint for code, rule in RULES.items() if rule.hard}


def rules_table() -> str:
    """The README's rule table, generated from RULES (`python -m app.dubbing`)."""
    lines = ["| rule | languages | what counts | kind |", "|---|---|---|---|"]
    for rule in RULES.values():
        kind = "hard: re-asked, then the item fails" if rule.hard else "soft: a warning"
        lines.append(f"| `{rule.code}` | {rule.languages} | {rule.counts} | {kind} |")
    return "\n".join(lines)


@dataclass
class Fitness:
    """How one answer measures up."""

    length: int
    length_unit: str
    length_budget: int | None
    within_budget: bool | None
    hard_failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # Filled into the rules' messages and hints: detected language, scripts found.
    details: dict[str, str] = field(default_factory=dict)

    @property
    def script_ok(self) -> bool:
        return not self.hard_failures

    @property
    def acceptable(self) -> bool:
        """Good enough to stop asking: the hard rules hold and the budget (if any) is met."""
        return self.script_ok and self.within_budget is not False

    def reasons(self, lang: Language) -> str:
        return "; ".join(
            RULES[code].message.format(language=lang.english, **self.details) for code in self.hard_failures
        )

    def hints(self, lang: Language) -> list[str]:
        return [RULES[code].hint.format(language=lang.english, **self.details) for code in self.hard_failures]


def _normalise(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if ch.isalnum()).casefold()


def _script_names(chars: list[str]) -> str:
    names = []
    for ch in chars:
        name = unicodedata.name(ch, "UNKNOWN").split()[0].capitalize()
        if name not in names:
            names.append(name)
    return ", ".join(names[:4])


def rule_failures(answer: str, source: str, lang: Language) -> tuple[list[str], dict[str, str]]:
    """The hard rules `answer` breaks for `lang` (codes of RULES), and the details their messages name."""
    failures: list[str] = []
    details: dict[str, str] = {}
    han = len(_SCRIPT_HAN.findall(answer))
    hangul = len(_SCRIPT_HANGUL.findall(answer))
    kana = len(_SCRIPT_KANA.findall(answer))
    latin_words = _SCRIPT_LATIN_WORD.findall(answer)
    latin = sum(len(word) for word in latin_words)
    other = _SCRIPT_OTHER.findall(answer)
    source_han = bool(_SCRIPT_HAN.search(source))
    normalised = _normalise(answer)
    # A line without Chinese (a name, a number, OK) kept as it is: no script is required of it.
    kept = not source_han and normalised == _normalise(source)
    lettered = bool(_LETTER.search(answer))
    if lang.code == "ko":
        if han:
            failures.append("hanzi_in_korean")
        if kana:
            failures.append("kana_in_korean")
        if not hangul:
            if lettered and not kept:
                failures.append("no_hangul")
        elif len(latin_words) > MAX_LATIN_WORDS and latin > hangul:
            failures.append("mostly_latin")
    elif lang.code == "ja":
        if hangul:
            failures.append("hangul_in_japanese")
        if not kana and not han:
            if lettered and not kept:
                failures.append("no_japanese")
        elif chinese_in_japanese(answer, source):
            failures.append("not_japanese")
        elif len(latin_words) > MAX_LATIN_WORDS and latin > kana + han:
            failures.append("mostly_latin")
    elif han or kana or hangul:
        failures.append("cjk_in_latin")
    if other:
        failures.append("other_script")
        details["scripts"] = _script_names(other)
    if lang.latin and not failures:
        # English writes loanwords with their accents (déjà vu, café), which the identifier reads as French.
        judged = _strip_marks(answer) if lang.code == "en" else answer
        wrong = langid.wrong_language(judged, lang.code)
        if wrong is not None:
            failures.append("wrong_language")
            details["detected"] = _language_name(wrong[0])
    if source_han and lang.code != "ja" and normalised and normalised == _normalise(source):
        failures.append("untranslated")
    if not lettered and _content_ideographs(source) > MAX_WORDLESS_IDEOGRAPHS:
        failures.append("no_content")
    for name, pattern in _MARKUP.items():
        if pattern.search(answer) and not pattern.search(source):
            failures.append("markup")
            details["markup"] = name
            break
    return failures, details


def chinese_in_japanese(answer: str, source: str) -> bool:
    """Whether a Japanese answer is (partly) Chinese: see _CHINESE_ONLY_CHARS and its neighbours."""
    for ch in _UNIFIED.findall(answer):
        if ch in _CHINESE_ONLY_CHARS:
            return True
        try:
            ch.encode("euc_jis_2004")
        except UnicodeEncodeError:
            return True
    if _CHINESE_ONLY_WORDS.search(answer):
        return True
    kanji_only = not _SCRIPT_KANA.search(answer)
    return kanji_only and _normalise(answer) == _normalise(source) and bool(_CHINESE_GRAMMAR & set(answer))


def _content_ideographs(source: str) -> int:
    return sum(1 for ch in _SCRIPT_HAN.findall(source) if ch not in _NUMERALS)


def _strip_marks(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if not unicodedata.combining(ch))


def _language_name(code: str) -> str:
    return resolve_language(code).english


def assess(answer: str, source: str, lang: Language, budget: int | None) -> Fitness:
    """Measure an answer against its budget and its language's rules."""
    length = count_length(answer, lang)
    within = None if budget is None else length <= budget
    hard, details = rule_failures(answer, source, lang)
    warnings = list(hard)
    if within is False:
        warnings.append("over_budget")
    if lang.code == "ja" and not hard and _SCRIPT_HAN.search(answer):
        # Soft rule: the prompt asks for kana, but re-asking for kanji would triple the calls for almost
        # every Japanese line.
        warnings.append("kanji_in_japanese")
    return Fitness(length, lang.length_unit, budget, within, hard, warnings, details)


def better(candidate: Fitness, best: Fitness | None) -> bool:
    """Whether `candidate` beats `best`: script rules first, then within budget, then shorter."""
    if best is None:
        return True

    def rank(f: Fitness) -> tuple[int, int, int]:
        return (len(f.hard_failures), 0 if f.within_budget is not False else 1, f.length)

    return rank(candidate) < rank(best)


if __name__ == "__main__":
    print(rules_table())
