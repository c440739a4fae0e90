"""Target languages: the names callers use, and the per-language facts the service needs.

LocalClip-Editor sends Chinese names (韩语, 日文, ...), the translation stage sends codes, people type English
names. All of them resolve to one `Language`; the names themselves are part of the editor's protocol
(`app.vocabulary.LANGUAGE_NAMES`), shared with the drop-in.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.vocabulary import LANGUAGE_NAMES, unknown_language_message


@dataclass(frozen=True)
class Language:
    code: str
    english: str
    # What the editor counts as a line's length in this language (see app.dubbing).
    length_unit: str
    # Above this ratio of answer length to source ideographs the editor picks the line again.
    editor_ratio: float
    # The script rule, as told to the model.
    script_rule: str
    latin: bool
    # Colloquial example answers for the few-shot turns, one per line of app.prompt.FEW_SHOT_SOURCES.
    examples: tuple[str, ...] = ()


LANGUAGES: tuple[Language, ...] = (
    Language(
        "ko",
        "Korean",
        "hangul",
        3.0,
        "Write Korean in Hangul only: never use Hanzi (Chinese characters) or romanisation.",
        latin=False,
        examples=("차에 열쇠를 두고 왔어", "이 집 국수 너무 짜", "비 그쳤다, 공원 가자"),
    ),
    Language(
        "ja",
        "Japanese",
        "kana+kanji",
        3.0,
        "Write natural spoken Japanese and prefer kana (hiragana/katakana) to kanji.",
        latin=False,
        examples=("鍵を車に忘れちゃった", "この店の麺、しょっぱすぎ", "雨やんだし、公園行こう"),
    ),
    Language(
        "en",
        "English",
        "words",
        1.2,
        "Write English in the Latin alphabet only: no Chinese characters.",
        latin=True,
        examples=("I left my keys in the car", "The noodles here are too salty", "Rain's stopped, let's hit the park"),
    ),
    Language(
        "fr",
        "French",
        "words",
        1.5,
        "Write French in the Latin alphabet only: no Chinese characters.",
        latin=True,
        examples=(
            "J'ai oublié mes clés dans la voiture",
            "Les nouilles ici sont trop salées",
            "Il ne pleut plus, on va au parc",
        ),
    ),
    Language(
        "de",
        "German",
        "words",
        1.5,
        "Write German in the Latin alphabet only: no Chinese characters.",
        latin=True,
        examples=(
            "Ich hab die Schlüssel im Auto vergessen",
            "Die Nudeln hier sind zu salzig",
            "Der Regen ist vorbei, ab in den Park",
        ),
    ),
    Language(
        "es",
        "Spanish",
        "words",
        1.5,
        "Write Spanish in the Latin alphabet only: no Chinese characters.",
        latin=True,
        examples=(
            "Me dejé las llaves en el coche",
            "Los fideos aquí están muy salados",
            "Ya no llueve, vamos al parque",
        ),
    ),
    Language(
        "id",
        "Indonesian",
        "words",
        1.5,
        "Write Indonesian in the Latin alphabet only: no Chinese characters.",
        latin=True,
        examples=("Kunciku ketinggalan di mobil", "Mi di sini keasinan", "Hujan udah berhenti, ke taman yuk"),
    ),
)

# Every name a caller may use: the editor's own (its protocol, app.editor_protocol) and the code.
_ALIASES: dict[str, Language] = {}
for _lang in LANGUAGES:
    for _alias in (_lang.code, *LANGUAGE_NAMES[_lang.code]):
        _ALIASES[_alias.casefold()] = _lang

SUPPORTED_CODES: tuple[str, ...] = tuple(lang.code for lang in LANGUAGES)


class UnknownLanguage(ValueError):
    """A target language no alias resolves."""

    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(unknown_language_message(value))


def resolve_language(value: str) -> Language:
    """The language a caller's code or name means; raises UnknownLanguage."""
    lang = _ALIASES.get(value.strip().casefold())
    if lang is None:
        raise UnknownLanguage(value)
    return lang


def language_aliases(lang: Language) -> list[str]:
    """Every accepted spelling of `lang` (for GET /languages)."""
    return sorted({alias for alias, target in _ALIASES.items() if target is lang})
