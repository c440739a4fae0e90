"""The editor's length counters and our script checks, on real strings."""

import pytest

from app.dubbing import assess, better, count_length, length_budget, script_failures, source_ideographs
from app.languages import resolve_language as lang


def test_source_ideographs_counts_only_cjk_unified_ideographs() -> None:
    assert source_ideographs("是个小包工头") == 6
    assert source_ideographs("大哥，OK！") == 2
    assert source_ideographs("OK") == 0


@pytest.mark.parametrize(
    ("text", "code", "expected"),
    [
        ("작은 현장 소장이지", "ko", 8),  # Hangul only: spaces don't count
        ("안녕, 2024년!", "ko", 3),  # digits and punctuation don't count
        ("ㅋㅋㅋ", "ko", 3),  # compatibility jamo count
        ("小さな親方だよ", "ja", 7),  # kana + kanji
        ("カタカナ、ひらがな。ABC", "ja", 8),  # punctuation and Latin letters don't count
        ("He's just a small contractor.", "en", 5),  # "He's" is one word after deleting the apostrophe
        ("C'est un petit entrepreneur", "fr", 4),  # "C'est" -> "Cest"
        ("Ça va très bien", "fr", 4),  # accented letters vanish inside words: "a va trs bien"
        ("É", "fr", 0),  # a word made only of a non-ASCII letter vanishes
        ("Er ist nur ein kleiner Bauunternehmer", "de", 6),
        ("¡Es solo un pequeño contratista!", "es", 5),
        ("Dia cuma mandor kecil", "id", 4),  # the editor would say 0; we count words
    ],
)
def test_count_length_follows_the_editor(text: str, code: str, expected: int) -> None:
    assert count_length(text, lang(code)) == expected


def test_budget_from_max_length_wins_and_is_at_least_one() -> None:
    assert length_budget("是个小包工头", lang("ko"), 5) == 5
    assert length_budget("好", lang("ko"), 0) == 1
    assert length_budget("好", lang("en"), -3) == 1


@pytest.mark.parametrize(
    ("source", "code", "expected"),
    [
        ("是个小包工头", "ko", 18),  # 3.0 x 6
        ("是个小包工头", "ja", 18),
        ("是个小包工头", "en", 7),  # floor(1.2 x 6 = 7.2)
        ("大哥哥们", "en", 4),  # floor(4.8)
        ("是个小包工头", "fr", 9),  # 1.5 x 6
        ("一二三四五", "en", 6),  # 1.2 x 5 = 6.000000000000001 must stay 6
        ("是个小包工头", "id", 9),
    ],
)
def test_budget_from_the_editors_ratio_rule(source: str, code: str, expected: int) -> None:
    assert length_budget(source, lang(code), None) == expected


def test_a_source_without_ideographs_has_no_budget() -> None:
    assert length_budget("OK!", lang("ko"), None) is None
    fitness = assess("좋아!", "OK!", lang("ko"), None)
    assert fitness.length_budget is None
    assert fitness.within_budget is None


@pytest.mark.parametrize(
    ("answer", "code", "failures"),
    [
        ("작은 현장 소장이지", "ko", []),
        ("작은 包工头", "ko", ["hanzi_in_korean"]),
        ("small boss", "ko", ["no_hangul"]),
        ("He's a small contractor", "en", []),
        ("He's a 小包工头", "en", ["cjk_in_latin"]),
        ("C'est un chef。", "fr", ["cjk_in_latin"]),  # CJK punctuation counts as CJK
        ("Er ist 小さい", "de", ["cjk_in_latin"]),
        ("Es un jefe", "es", []),
        ("Dia mandor", "id", []),
        ("小さな親方だよ", "ja", []),
        ("小包工头", "ja", ["not_japanese", "untranslated"]),  # no kana: Chinese, and the source itself
        ("是个工头", "ja", ["not_japanese"]),
    ],
)
def test_script_rules(answer: str, code: str, failures: list[str]) -> None:
    assert script_failures(answer, "小包工头", lang(code)) == failures


def test_echoed_source_is_untranslated_even_with_punctuation() -> None:
    assert "untranslated" in script_failures("是个小包工头！", "是个小包工头", lang("ja"))


def test_kanji_in_japanese_is_only_a_warning() -> None:
    fitness = assess("小さな親方だよ", "是个小包工头", lang("ja"), None)
    assert fitness.script_ok
    assert fitness.acceptable
    assert fitness.warnings == ["kanji_in_japanese"]


def test_over_budget_is_flagged_but_script_ok() -> None:
    fitness = assess("아주아주아주 작은 현장 소장님이십니다", "包工头", lang("ko"), 9)
    assert fitness.script_ok
    assert fitness.within_budget is False
    assert "over_budget" in fitness.warnings
    assert not fitness.acceptable


def test_best_answer_prefers_script_then_budget_then_shorter() -> None:
    ko = lang("ko")
    hanzi = assess("소장 包", "包工头", ko, 9)
    long_ok = assess("아주아주아주아주 작은 소장", "包工头", ko, 9)
    short_ok = assess("소장", "包工头", ko, 9)
    assert better(long_ok, hanzi)
    assert not better(hanzi, long_ok)
    assert better(short_ok, long_ok)
    assert better(hanzi, None)
