"""Dutch text normalisation: numbers, symbols, apostrophes, diacritics, punctuation, spacing."""

from __future__ import annotations

import pytest

from sslgrid.text import VOCABULARY_NOTE, normalise


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Poseidon 737", "poseidon zevenhonderdzevenendertig"),
        ("een XT met een 12 inch schermpje.", "een xt met een twaalf inch schermpje"),
        ("LC-10 Lemura", "lc tien lemura"),
        ("3Dfx videokaart", "drie dfx videokaart"),
        ("druk op F2", "druk op f twee"),
        ("rybky01.ogg", "rybky nul één ogg"),
        ("bel 4202-21913271", "bel vier twee nul twee twee één negen één drie twee zeven één"),
        ("10-12 jaar", "tien twaalf jaar"),
        ("1.000.000 vissen", "een miljoen vissen"),
        ("3,5 meter", "drie komma vijf meter"),
        ("de 1e en de 8ste", "de eerste en de achtste"),
        ("101 en 1001", "honderdeen en duizendeen"),
        ("steiger 5", "steiger vijf"),
    ],
)
def test_numbers_are_spelled_out(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("#5", "nummer vijf"),
        ("# 5", "nummer vijf"),
        ("50%", "vijftig procent"),
        ("vis & chips", "vis en chips"),
        ("2+2=4", "twee plus twee is gelijk aan vier"),
        ("€5", "vijf euro"),
        ("5 €", "vijf euro"),
        ("$3", "drie dollar"),
        ("a@b", "a apenstaartje b"),
        ("een # alleen", "een hekje alleen"),
    ],
)
def test_symbols_are_spoken(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("zo'n beetje", "zo'n beetje"),
        ("zo’n beetje", "zo'n beetje"),
        ("met z'n allen", "met z'n allen"),
        ("’t is de auto’s", "'t is de auto's"),
        ("'s avonds", "'s avonds"),
        ("'s-Hertogenbosch", "'s hertogenbosch"),
        ("'hallo' zei hij", "hallo zei hij"),
        ("de jaren '80", "de jaren tachtig"),
        ("Mr. B.'s tuin", "mr b 's tuin"),
    ],
)
def test_apostrophes_inside_words_and_clitics_are_kept(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


def test_diacritics_are_kept_and_composed() -> None:
    decomposed = "e\u0301e\u0301n rui\u0308ne"
    assert normalise(decomposed) == "één ruïne"
    assert normalise("ÉÉN Ëxtra Ïs café") == "één ëxtra ïs café"


def test_ij_ligature_becomes_two_letters() -> None:
    assert normalise("Ĳs ĳzer") == "ijs ijzer"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Wat is dit voor raar schip?", "wat is dit voor raar schip"),
        ("Aan wat? “Waar ga jij?” zei hij.", "aan wat waar ga jij zei hij"),
        ("Oh, go...!", "oh go"),
        ("ons -- de auto's", "ons de auto's"),
        ("e-mail — nu", "e mail nu"),
        ("C:\\WINDOWS\\CONFIG en \\/etc", "c windows config en etc"),
        ("(haakjes) [blok] {krul}; ja: nee", "haakjes blok krul ja nee"),
    ],
)
def test_punctuation_is_removed(raw: str, expected: str) -> None:
    assert normalise(raw) == expected


def test_whitespace_collapsed_and_control_characters_removed() -> None:
    raw = "  een\ttwee\r\ndrie\u00a0vier  vi\u200bjf zes\x00\x07zeven\u00adacht \n"
    assert normalise(raw) == "een twee drie vier vijf zeszevenacht"


def test_text_without_words_normalises_to_empty() -> None:
    assert normalise(" ... !? -- ") == ""
    assert normalise("") == ""


@pytest.mark.parametrize(
    "raw",
    [
        "Dat is het wrak van het passagiersvliegtuig LC-10 Lemura.",
        "Hallo, dit is het nummer van de familie Rondvis, 4202-21913271.",
        "’t Is zo'n 12 inch #5 ‘scherm’ — €5 & 50%!",
    ],
)
def test_normalise_is_idempotent_and_stays_in_the_vocabulary(raw: str) -> None:
    once = normalise(raw)
    assert normalise(once) == once
    assert once == once.strip() and "  " not in once
    assert all(c.isalpha() or c in " '" for c in once), once
    assert not any(c.isdigit() or c.isupper() for c in once)


def test_vocabulary_note_documents_the_output_alphabet() -> None:
    assert "apostrophe" in VOCABULARY_NOTE and "lower-case" in VOCABULARY_NOTE
