"""The two helpers every entry point uses on untrusted text (issue 18, defects 2 and 6)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from core.compare import same_secret
from core.numbers import ascii_int, is_ascii_digits


def test_unicode_digits_are_not_numbers() -> None:
    for text in ("²", "1²", "١٢", "１２", "①", "\u00b2\u00b3", " 12", "12 ", "+1", "-1", ""):
        assert not is_ascii_digits(text) and ascii_int(text) is None, text
    assert ascii_int("0042") == 42 and ascii_int("65535", max_digits=5) == 65535
    assert ascii_int("123456", max_digits=5) is None  # a 60 kB "number" is not converted
    assert ascii_int(None) is None
    # Latin-1 byte 0xB2 as the SIP parser decodes a non-UTF-8 head
    assert ascii_int(b"5\xb2".decode("latin-1")) is None


@given(st.text(max_size=30))
def test_ascii_int_never_raises_and_agrees_with_int(text: str) -> None:
    value = ascii_int(text)
    if value is not None:
        assert text.isascii() and int(text) == value


def test_secrets_compare_unequal_instead_of_raising() -> None:
    assert same_secret("sha256=abc", "sha256=abc")
    for sent in ("sha256=\xe9", "sha256=\udce9", "é", "", None, "sha256=ab"):
        assert not same_secret("sha256=abc", sent)


def test_json_with_a_lone_surrogate_is_refused_and_pairs_are_kept() -> None:
    import pytest

    from core.json_input import loads_untrusted

    assert loads_untrusted('{"t": "\\ud83d\\ude00"}') == {"t": "\U0001f600"}  # an emoji pair
    for raw in ('{"t": "\\ud800"}', '["\\udfff"]', b'{"a": {"b": ["\\udc00x"]}}'):
        with pytest.raises(ValueError, match="surrogate"):
            loads_untrusted(raw)


def test_ascii_digit_check_agrees_with_the_regex_on_every_character() -> None:
    """`is_ascii_digits` is str methods, not the regex `[0-9]+` it replaced: the same
    answer for every character of the BMP alone, after a digit and before one."""
    import re

    regex = re.compile(r"[0-9]+")
    for code in range(0x10000):
        char = chr(code)
        for text in (char, "1" + char, char + "1", char * 3):
            assert is_ascii_digits(text) == (regex.fullmatch(text) is not None), hex(code)
