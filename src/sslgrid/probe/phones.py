"""The phone set of the probe and the Dutch phonemiser that maps text onto it.

Text is phonemised by espeak-ng's Dutch voice (``espeak-ng -v nl -q -x --sep=+``: espeak's
ASCII phoneme mnemonics, one ``+`` between phonemes, a space between words). The same
mnemonics are what libespeak-ng reports in its phoneme events, so the synthetic corpus' own
timing (``sslgrid.probe.espeak_timing``) speaks the same language as the labels.

The phone set (``PHONES``) is IPA, 40 Dutch phones plus two labels that are not phones:

- ``sil``: frames outside speech at the start and end of an utterance (frame labels only; in
  the CTC recogniser index 0 is the blank instead, so labels and CTC outputs share indices);
- ``spn``: a phoneme of another language (espeak switches to English for words such as
  *computer*, written ``(en)...(nl)``), which has no Dutch phone to go to.

espeak's Dutch variants are folded into one phone each (``ESPEAK_NL``): stress marks are
dropped, vowels lengthened before ``r`` (``I:``, ``O:``, ``E:``) go to their short or plain
vowel, nasal ``A~`` to ``ɑ``, affricates and the ``eU``/``yU`` diphthongs to two phones.
Pauses (``_``, ``_!``, ``_|``, ``_:``) and modifiers (``;`` palatalised, ``!`` unreleased,
``*`` trilled) are not phonemes and are dropped.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SILENCE = "sil"
OTHER = "spn"

# (phone, example) in a fixed order: the index of a phone is its label everywhere.
PHONE_TABLE: tuple[tuple[str, str], ...] = (
    (SILENCE, "no speech (utterance edges)"),
    ("p", "pen"),
    ("b", "bak"),
    ("t", "tak"),
    ("d", "dak"),
    ("k", "kat"),
    ("ɡ", "goal (loans)"),
    ("f", "fiets"),
    ("v", "vis"),
    ("s", "sok"),
    ("z", "zon"),
    ("x", "licht"),
    ("ɣ", "goed"),
    ("h", "hand"),
    ("ʃ", "sjaal"),
    ("ʒ", "genre"),
    ("m", "man"),
    ("n", "nat"),
    ("ŋ", "lang"),
    ("ɲ", "oranje"),
    ("l", "land"),
    ("r", "rood"),
    ("j", "jas"),
    ("w", "nieuw"),
    ("ʋ", "wat"),
    ("ɪ", "pit"),
    ("ɛ", "pet"),
    ("ɑ", "pat"),
    ("ɔ", "pot"),
    ("ʏ", "put"),
    ("ə", "de"),
    ("i", "piet"),
    ("y", "fuut"),
    ("u", "hoed"),
    ("eː", "beet"),
    ("aː", "baat"),
    ("oː", "boot"),
    ("øː", "neus"),
    ("ɛi", "bijt"),
    ("œy", "huis"),
    ("ɑu", "koud"),
    (OTHER, "a phoneme of another language"),
)
PHONES: tuple[str, ...] = tuple(p for p, _ in PHONE_TABLE)
PHONE_INDEX: dict[str, int] = {p: i for i, p in enumerate(PHONES)}

# espeak-ng Dutch mnemonic (stress marks removed) -> phones.
ESPEAK_NL: dict[str, tuple[str, ...]] = {
    "p": ("p",),
    "b": ("b",),
    "t": ("t",),
    "d": ("d",),
    "k": ("k",),
    "g": ("ɡ",),
    "f": ("f",),
    "v": ("v",),
    "s": ("s",),
    "z": ("z",),
    "x": ("x",),
    "Q": ("ɣ",),
    "G": ("ɣ",),
    "h": ("h",),
    "S": ("ʃ",),
    "Z": ("ʒ",),
    "tS": ("t", "ʃ"),
    "dZ": ("d", "ʒ"),
    "m": ("m",),
    "n": ("n",),
    "N": ("ŋ",),
    "n^": ("ɲ",),
    "l": ("l",),
    "r": ("r",),
    "j": ("j",),
    "w": ("w",),
    "v#": ("ʋ",),
    "I": ("ɪ",),
    "E": ("ɛ",),
    "E2": ("ɛ",),
    "E:": ("ɛ",),
    "A": ("ɑ",),
    "A~": ("ɑ",),
    "O": ("ɔ",),
    "O:": ("ɔ",),
    "8": ("ʏ",),
    "@": ("ə",),
    "i": ("i",),
    "I:": ("i",),
    "y": ("y",),
    "u": ("u",),
    "u:": ("u",),
    "e:": ("eː",),
    "a:": ("aː",),
    "a": ("aː",),
    "o:": ("oː",),
    "Y:": ("øː",),
    "EI": ("ɛi",),
    "eI": ("ɛi",),
    "Wy": ("œy",),
    "VU": ("ɑu",),
    "eU": ("eː", "w"),
    "yU": ("y", "w"),
}

_STRESS = re.compile(r"^[',]+")
_PAUSE = re.compile(r"^_[!|:]?")
_MODIFIERS = frozenset({";", "!", "*", "#", ""})
_LANGUAGE_SWITCH = re.compile(r"\(([a-z-]+)\)")


class PhonemiserError(RuntimeError):
    """espeak-ng could not phonemise a text."""


def split_espeak_mnemonics(output: str) -> list[str]:
    """espeak-ng ``-x --sep=+`` output -> its phoneme mnemonics, stress and pauses removed.

    A language switch ``(en)`` prefixes the next mnemonic in espeak's output; mnemonics spoken
    in another language than Dutch are returned as ``"(en)p"``, so that they map to ``spn``.
    """
    mnemonics: list[str] = []
    language = "nl"
    for token in output.replace("\n", " ").replace(" ", "+").split("+"):
        while True:
            switch = _LANGUAGE_SWITCH.match(token)
            if not switch:
                break
            language = switch.group(1)
            token = token[switch.end() :]
        token = _PAUSE.sub("", _STRESS.sub("", token))
        token = _STRESS.sub("", token)
        if token in _MODIFIERS or token.startswith("_"):
            continue
        mnemonics.append(token if language == "nl" else f"({language}){token}")
    return mnemonics


def mnemonics_to_phones(mnemonics: Iterable[str], unknown: Counter | None = None) -> list[str]:
    """Map espeak mnemonics onto ``PHONES``; anything unmapped becomes ``spn`` (and is counted
    in ``unknown`` when given)."""
    phones: list[str] = []
    for m in mnemonics:
        mapped = ESPEAK_NL.get(m)
        if mapped is None:
            if unknown is not None:
                unknown[m] += 1
            mapped = (OTHER,)
        phones.extend(mapped)
    return phones


def phone_ids(phones: Sequence[str]) -> list[int]:
    """Indices of ``phones`` in ``PHONES``; a name outside the set is an error naming it."""
    try:
        return [PHONE_INDEX[p] for p in phones]
    except KeyError as err:
        raise KeyError(f"phone {err.args[0]!r} is not in the phone set {list(PHONES)}") from None


@dataclass
class EspeakPhonemiser:
    """Dutch text -> phones with the ``espeak-ng`` command, one process per distinct text.

    One process per text, not one per batch of lines: espeak joins lines that end without
    punctuation into one clause, which would shift phonemes between utterances.
    """

    voice: str = "nl"
    executable: str = "espeak-ng"
    workers: int = 2
    unknown: Counter = field(default_factory=Counter)
    _cache: dict[str, list[str]] = field(default_factory=dict)

    def mnemonics(self, text: str) -> list[str]:
        """espeak's mnemonics for ``text`` (stress and pauses removed)."""
        try:
            done = subprocess.run(
                [self.executable, "-v", self.voice, "-q", "-x", "--sep=+", "-b", "1", "--stdin"],
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=60,
                check=False,
            )
        except FileNotFoundError as err:
            raise PhonemiserError(
                f"{self.executable} not found: install the Debian package espeak-ng"
            ) from err
        if done.returncode != 0:
            raise PhonemiserError(
                f"{self.executable} -v {self.voice} failed on {text!r}: "
                f"{done.stderr.decode(errors='replace').strip()}"
            )
        return split_espeak_mnemonics(done.stdout.decode("utf-8"))

    def phones(self, text: str) -> list[str]:
        if text not in self._cache:
            self._cache[text] = mnemonics_to_phones(self.mnemonics(text), self.unknown)
        return self._cache[text]

    def phonemise(self, texts: Sequence[str]) -> list[list[str]]:
        """Phones of every text, in order (distinct texts run ``workers`` at a time)."""
        todo = sorted({t for t in texts if t not in self._cache})
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            for text, mnemonics in zip(todo, pool.map(self.mnemonics, todo), strict=True):
                self._cache[text] = mnemonics_to_phones(mnemonics, self.unknown)
        if self.unknown:
            log.info("espeak mnemonics mapped to %s: %s", OTHER, dict(self.unknown.most_common(10)))
        return [self._cache[t] for t in texts]
