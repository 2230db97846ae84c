from __future__ import annotations

import pytest

from cases.identities import (
    IdentityRef,
    InvalidIdentity,
    candidates,
    equivalents,
    is_withheld_caller,
    normalise,
    whatsapp_candidates,
)


@pytest.mark.parametrize("raw,expected", [
    ("0612345678", "+31612345678"),
    ("06-12 34 56 78", "+31612345678"),
    ("+31 6 12345678", "+31612345678"),
    ("0031612345678", "+31612345678"),
    ("tel:+31612345678", "+31612345678"),
    ("sip:0612345678@trunk.example;user=phone", "+31612345678"),
    ("020 123 4567", "+31201234567"),
])
def test_phone_numbers_normalise_to_e164_in_the_default_region(raw: str, expected: str) -> None:
    assert normalise(IdentityRef("phone", raw), "NL") == expected


def test_the_same_national_number_reads_differently_in_another_region() -> None:
    assert normalise(IdentityRef("phone", "0612345678"), "BE") == "+32612345678"


@pytest.mark.parametrize("raw", ["", "abc", "12", "+999999999999999999"])
def test_impossible_numbers_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidIdentity):
        normalise(IdentityRef("phone", raw), "NL")


def test_wa_id_and_phone_are_exact_equivalents() -> None:
    assert equivalents("whatsapp", "31612345678") == [("phone", "+31612345678")]
    assert equivalents("phone", "+31612345678") == [("whatsapp", "31612345678")]


@pytest.mark.parametrize("digits,alt", [
    ("5511987654321", "551187654321"),  # Brazil: ninth digit present -> absent
    ("551187654321", "5511987654321"),  # and back
    ("5215512345678", "525512345678"),  # Mexico: 521 -> 52
    ("525512345678", "5215512345678"),
    ("5491123456789", "541123456789"),  # Argentina: 549 -> 54
])
def test_country_quirks_give_candidates(digits: str, alt: str) -> None:
    assert whatsapp_candidates(digits) == [alt]


def test_no_candidates_elsewhere_and_for_brazilian_landlines() -> None:
    assert whatsapp_candidates("31612345678") == []
    assert whatsapp_candidates("551132654321") == []  # São Paulo landline, starts with 3
    assert candidates("email", "a@b.nl") == []


@pytest.mark.parametrize("raw,privacy,withheld", [
    ("anonymous", False, True), ("Anonymous", False, True),
    ("sip:anonymous@anonymous.invalid", False, True), ("", False, True), (None, False, True),
    ("+31612345678", True, True), ("+31612345678", False, False), ("unknown", False, True),
    ("restricted", False, True),
])
def test_withheld_callers(raw: str | None, privacy: bool, withheld: bool) -> None:
    assert is_withheld_caller(raw, privacy_id=privacy) is withheld


def test_email_and_sip_normalisation() -> None:
    assert normalise(IdentityRef("email", " Jan.Jansen@Example.NL "), "NL") == \
        "jan.jansen@example.nl"
    assert normalise(IdentityRef("sip", "sips:1001@PBX.example.com:5061;transport=tls"), "NL") \
        == "sip:1001@pbx.example.com"
    with pytest.raises(InvalidIdentity):
        normalise(IdentityRef("email", "not-an-address"), "NL")
    with pytest.raises(InvalidIdentity):
        IdentityRef("fax", "123")
