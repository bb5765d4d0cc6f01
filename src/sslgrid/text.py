"""Dutch text normalisation: the one rule set used by corpus preparation, LM training and scoring.

``normalise`` maps written Dutch to the form that transcripts, language-model text and
recognised hypotheses are compared in. The rules, applied in this order:

1. **Unicode**: NFC composition. Whitespace of any kind (tab, newline, no-break space) is a
   word break; control and format characters (NUL, zero-width space, soft hyphen) are deleted.
2. **Case**: lower case. Diacritics are *kept* (``é``, ``ë``, ``ï``, ...), because in Dutch they
   separate words (``een`` / ``één``, ``zee-egel``) and mark syllables; the ligature ``ĳ`` is
   written as the two letters ``ij``.
3. **Quotes and dashes**: typographic apostrophes (``’ ‘ ʼ ´ ` ′``) become ``'``; every dash
   and hyphen variant becomes ``-``.
4. **Numbers**, spelled out with ``num2words(n, lang="nl")``:

   - ``1.000.000`` (dotted thousands) is one number; ``3,5`` is ``drie komma vijf``.
   - ``1e``, ``2de``, ``8ste`` are ordinals: ``eerste``, ``tweede``, ``achtste``.
   - Digits glued to letters are split from them: ``3Dfx`` → ``drie dfx``, ``F2`` → ``f twee``.
   - A digit run is read digit by digit when it looks like an identifier rather than a
     quantity: it has a leading zero (``01`` → ``nul één``), or it is hyphen-joined to other
     digit runs and one of them has a leading zero or more than four digits (phone and serial
     numbers: ``4202-21913271`` → ``vier twee nul twee twee één negen ...``). ``10-12`` stays
     ``tien twaalf``.
   - Every other run is a cardinal: ``737`` → ``zevenhonderdzevenendertig``. num2words writes
     the numeral one as ``één``; inside a compound it is written ``een`` as Dutch spelling
     does (``honderdeen``, not num2words' ``honderdéén``).
5. **Symbols** are spoken: ``#5`` → ``nummer vijf`` (a lone ``#`` is ``hekje``), ``%`` →
   ``procent``, ``&`` → ``en``, ``+`` → ``plus``, ``=`` → ``is gelijk aan``, ``@`` →
   ``apenstaartje``, ``°`` → ``graden``; currencies follow their amount as in speech:
   ``€5`` → ``vijf euro`` (also ``$`` dollar, ``£`` pond).
6. **Punctuation** and any other non-letter is removed (it becomes a word break); this
   includes numeric characters that are not digits (``½``, ``²``). Hyphens always separate
   words, also between letters: ``LC-10`` → ``lc tien``, ``e-mail`` → ``e mail``; one rule
   for all hyphens keeps reference and hypothesis tokenised alike whatever the writer chose.
7. **Apostrophes** are kept where they are part of a word: between two letters (``zo'n``,
   ``auto's``) and at the start of the clitics ``'t 's 'n 'k 'm 'r 'ns``. All others (quote
   marks, ``'80``, a trailing possessive ``'``) are removed.
8. **Whitespace** is collapsed to single spaces and trimmed.

The function is pure and deterministic: the same input always gives the same output, and
applying it twice changes nothing.
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

__all__ = ["VOCABULARY_NOTE", "normalise"]

VOCABULARY_NOTE = (
    "Normalised text contains only lower-case letters (diacritics kept, any script), the "
    "apostrophe inside words and before the clitics 't 's 'n 'k 'm 'r 'ns, and single spaces "
    "between words. It has no digits, no punctuation, no hyphens and no leading or trailing "
    "space."
)

_APOSTROPHES = str.maketrans({c: "'" for c in "’‘‛ʼ´`′"})
_DASHES = str.maketrans({c: "-" for c in "‐‑‒–—―−"})

_CURRENCIES = {"€": "euro", "$": "dollar", "£": "pond"}
_SYMBOLS = {
    "%": "procent",
    "‰": "promille",
    "&": "en",
    "+": "plus",
    "=": "is gelijk aan",
    "@": "apenstaartje",
    "°": "graden",
    "#": "hekje",
    "×": "keer",
    "§": "paragraaf",
    **_CURRENCIES,
}
_CLITICS = frozenset({"'t", "'s", "'n", "'k", "'m", "'r", "'ns"})
_DIGIT_WORDS = ("nul", "één", "twee", "drie", "vier", "vijf", "zes", "zeven", "acht", "negen")

_CURRENCY_FIRST = re.compile(r"([€$£])\s?(\d+(?:[.,]\d+)*)")
_NUMBER_SIGN = re.compile(r"#\s?(?=\d)")
_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:\.\d{3})+(?!\d|[.,]\d)")
_DECIMAL_COMMA = re.compile(r"(?<=\d),(?=\d)")
_ORDINAL = re.compile(r"(?<!\w)(\d+)(?:e|de|ste)(?!\w)")
_DIGIT_GROUP = re.compile(r"(?<!\d)\d+(?:-\d+)+(?!\d)")
_LETTER_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")
_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Normalise Dutch ``text`` for transcripts, LM text and scoring (rules: module docstring)."""
    text = _clean_characters(text)
    text = _NUMBER_SIGN.sub(" nummer ", text)
    text = _CURRENCY_FIRST.sub(r"\2 \1", text)
    text = _spell_numbers(text)
    text = "".join(f" {_SYMBOLS[c]} " if c in _SYMBOLS else c for c in text)
    text = "".join(c if _is_word_char(c) else " " for c in text)
    words = (_clean_apostrophes(token) for token in text.split())
    return " ".join(word for word in words if word)


def _clean_characters(text: str) -> str:
    """NFC, control/format characters, unified apostrophes and dashes, lower case."""
    text = unicodedata.normalize("NFC", text)
    chars = []
    for char in text:
        if char.isspace():
            chars.append(" ")
        elif unicodedata.category(char) not in ("Cc", "Cf"):
            chars.append(char)
    text = "".join(chars).translate(_APOSTROPHES).translate(_DASHES).lower()
    return text.replace("ĳ", "ij")


def _is_word_char(char: str) -> bool:
    """Letters, combining marks, the apostrophe and spaces survive; the rest breaks words."""
    return char == "'" or char.isspace() or unicodedata.category(char)[0] in "LM"


def _spell_numbers(text: str) -> str:
    """Replace every digit in ``text`` by Dutch words (rule 4 of the module docstring)."""
    text = _THOUSANDS.sub(lambda m: m.group(0).replace(".", ""), text)
    text = _DECIMAL_COMMA.sub(" komma ", text)
    text = _ORDINAL.sub(lambda m: f" {_ordinal(int(m.group(1)))} ", text)
    text = _DIGIT_GROUP.sub(_spell_digit_group, text)
    text = _LETTER_DIGIT.sub(" ", text)
    return _DIGITS.sub(lambda m: f" {_spell_run(m.group(0))} ", text)


def _spell_digit_group(match: re.Match[str]) -> str:
    """Hyphen-joined digit runs: identifiers digit by digit, otherwise one cardinal per run."""
    runs = match.group(0).split("-")
    if any(_has_leading_zero(run) or len(run) > 4 for run in runs):
        return " " + " ".join(_digit_by_digit(run) for run in runs) + " "
    return " " + " ".join(_spell_run(run) for run in runs) + " "


def _spell_run(run: str) -> str:
    """One run of digits: digit by digit with a leading zero, else a cardinal number."""
    if _has_leading_zero(run):
        return _digit_by_digit(run)
    return _cardinal(int(run))


def _has_leading_zero(run: str) -> bool:
    return len(run) > 1 and run.startswith("0")


def _digit_by_digit(run: str) -> str:
    return " ".join(_DIGIT_WORDS[int(digit)] for digit in run)


def _cardinal(number: int) -> str:
    return _fix_compound_one(num2words(number, lang="nl"))


def _ordinal(number: int) -> str:
    return _fix_compound_one(num2words(number, lang="nl", to="ordinal"))


def _fix_compound_one(words: str) -> str:
    """Write ``één`` only as a word of its own, as Dutch spelling does (``honderdeen``)."""
    return " ".join(w if w == "één" else w.replace("één", "een") for w in words.split())


def _clean_apostrophes(token: str) -> str:
    """Keep apostrophes inside a word or starting a clitic; drop every other one."""
    if "'" not in token:
        return token
    stripped = token.strip("'")
    if "'" + stripped in _CLITICS and token.startswith("'"):
        return "'" + stripped
    kept = [
        char
        for i, char in enumerate(stripped)
        if char != "'" or (stripped[i - 1].isalpha() and stripped[i + 1].isalpha())
    ]
    return "".join(kept)
