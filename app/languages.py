"""Target languages: the names callers use, and the per-language facts the service needs.

LocalClip-Editor sends Chinese names (韩语, 日文, ...), the translation stage sends codes, people type English
names. All of them resolve to one `Language`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str
    english: str
    chinese: tuple[str, ...]
    # What the editor counts as a line's length in this language (see app.dubbing).
    length_unit: str
    # Above this ratio of answer length to source ideographs the editor picks the line again.
    editor_ratio: float
    # The script rule, as told to the model.
    script_rule: str
    latin: bool
    # Two short, colloquial example answers for the few-shot turns (see app.prompt.FEW_SHOT_SOURCES).
    examples: tuple[str, str] = ("", "")


LANGUAGES: tuple[Language, ...] = (
    Language(
        "ko",
        "Korean",
        ("韩语", "韩文", "韓語", "韓文", "韩国语"),
        "hangul",
        3.0,
        "Write Korean in Hangul only: never use Hanzi (Chinese characters) or romanisation.",
        latin=False,
        examples=("안녕", "배고파"),
    ),
    Language(
        "ja",
        "Japanese",
        ("日语", "日文", "日語", "日本语"),
        "kana+kanji",
        3.0,
        "Write natural spoken Japanese and prefer kana (hiragana/katakana) to kanji.",
        latin=False,
        examples=("こんにちは", "おなかすいた"),
    ),
    Language(
        "en",
        "English",
        ("英语", "英文", "英語"),
        "words",
        1.2,
        "Write English in the Latin alphabet only: no Chinese characters.",
        latin=True,
        examples=("Hi", "I'm hungry"),
    ),
    Language(
        "fr",
        "French",
        ("法语", "法文", "法語"),
        "words",
        1.5,
        "Write French in the Latin alphabet only: no Chinese characters.",
        latin=True,
        examples=("Salut", "J'ai faim"),
    ),
    Language(
        "de",
        "German",
        ("德语", "德文", "德語"),
        "words",
        1.5,
        "Write German in the Latin alphabet only: no Chinese characters.",
        latin=True,
        examples=("Hallo", "Ich hab Hunger"),
    ),
    Language(
        "es",
        "Spanish",
        ("西班牙语", "西班牙文", "西班牙語"),
        "words",
        1.5,
        "Write Spanish in the Latin alphabet only: no Chinese characters.",
        latin=True,
        examples=("Hola", "Tengo hambre"),
    ),
    Language(
        "id",
        "Indonesian",
        ("印尼语", "印尼文", "印度尼西亚语", "印尼語"),
        "words",
        1.5,
        "Write Indonesian in the Latin alphabet only: no Chinese characters.",
        latin=True,
        examples=("Halo", "Aku lapar"),
    ),
)

_ALIASES: dict[str, Language] = {}
for _lang in LANGUAGES:
    for _alias in (_lang.code, _lang.english, *_lang.chinese):
        _ALIASES[_alias.casefold()] = _lang
# Common extra spellings people type.
_ALIASES.update(
    {
        "kr": _ALIASES["ko"],
        "jp": _ALIASES["ja"],
        "bahasa indonesia": _ALIASES["id"],
        "español": _ALIASES["es"],
        "français": _ALIASES["fr"],
        "deutsch": _ALIASES["de"],
        "한국어": _ALIASES["ko"],
        "日本語": _ALIASES["ja"],
    }
)

SUPPORTED_CODES: tuple[str, ...] = tuple(lang.code for lang in LANGUAGES)


class UnknownLanguage(ValueError):
    """A target language no alias resolves."""

    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(
            f"unsupported target_language {value!r}: use one of {', '.join(SUPPORTED_CODES)} "
            "(or a Chinese name such as 韩语/日文, or an English name such as Korean); "
            "GET /languages lists every accepted name"
        )


def resolve_language(value: str) -> Language:
    """The language a caller's code or name means; raises UnknownLanguage."""
    lang = _ALIASES.get(value.strip().casefold())
    if lang is None:
        raise UnknownLanguage(value)
    return lang


def language_aliases(lang: Language) -> list[str]:
    """Every accepted spelling of `lang` (for GET /languages)."""
    return sorted({alias for alias, target in _ALIASES.items() if target is lang})
