import pytest

from app.languages import SUPPORTED_CODES, UnknownLanguage, language_aliases, resolve_language


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("韩语", "ko"), ("韩文", "ko"), ("日语", "ja"), ("日文", "ja"), ("英语", "en"), ("英文", "en"),
        ("法语", "fr"), ("法文", "fr"), ("德语", "de"), ("德文", "de"), ("西班牙语", "es"), ("西班牙文", "es"),
        ("印尼语", "id"), ("印尼文", "id"), ("KO", "ko"), ("ja", "ja"), ("Korean", "ko"), ("JAPANESE", "ja"),
        ("english", "en"), (" fr ", "fr"), ("German", "de"), ("spanish", "es"), ("Indonesian", "id"),
    ],
)  # fmt: skip
def test_names_codes_and_english_names_resolve(value: str, code: str) -> None:
    assert resolve_language(value).code == code


def test_unknown_language_names_the_value_and_lists_the_supported() -> None:
    with pytest.raises(UnknownLanguage) as info:
        resolve_language("克林贡语")
    message = str(info.value)
    assert "克林贡语" in message
    for code in SUPPORTED_CODES:
        assert code in message


def test_every_language_lists_its_aliases() -> None:
    aliases = language_aliases(resolve_language("ko"))
    assert {"ko", "korean", "韩语", "韩文"} <= set(aliases)
