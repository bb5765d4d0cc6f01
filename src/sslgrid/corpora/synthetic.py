"""A synthetic Dutch speech corpus: real Dutch sentences from Debian, spoken by espeak-ng.

**Text.** Debian ships the Dutch translations of its programs as gettext catalogues,
``usr/share/locale/nl/LC_MESSAGES/*.mo``. Each entry pairs an English message (``msgid``) with
its Dutch translation (``msgstr``), so every sentence comes with its English original. The
packages are fetched from Debian's pool and checked against a pinned SHA256, exactly as the
embedded corpus is (``sslgrid.corpora.debian``), and the catalogues are read with a small
``.mo`` parser (``read_mo_catalogue``). Messages are cut into sentences
(``message_sentences``) and a sentence is kept only if a speaker could say it as written: no
format directives (``%s``, ``{name}``), urls, paths, command-line options or code, and between
``min_words`` and ``max_words`` words once normalised by ``sslgrid.text.normalise``
(``unspeakable_reason``). Plural messages are skipped (their forms stand around a number that is
not there), and so are untranslated ones. Sentences are deduplicated on their normalised text,
and a caller-given set of texts (the embedded corpus' dev and test transcripts) is left out.

**Speech.** Every clip is ``espeak-ng`` reading the *normalised* text (plus the original's
closing ``?`` or ``!`` for intonation), so the audio says exactly the transcript's words: left
to itself espeak-ng reads numbers and abbreviations its own way (``1.`` as *eerste*). Each clip
gets, from a generator seeded by the corpus seed and the sentence, a voice from ``voices`` (an
espeak-ng voice with an optional variant, ``nl+m3``), a speaking rate (``-s``, words per
minute) and a pitch (``-p``, 0-99) drawn uniformly from their ranges, and with probability
``reverb`` the reverberation of a random room (``sox ... reverb``, which also resamples the
22.05 kHz voice to 16 kHz). Noise is added in numpy rather than by sox, so that it comes from
the same seeded generator: white, pink or brown noise at an SNR drawn from ``noise_snr_db``
(speech power measured over the whole clip, pauses included). Finally the clip is scaled to a
random peak level and written as 16 kHz mono 16-bit FLAC.

**Speakers** are the voices: ``<corpus>-<voice>`` with ``+`` written ``-`` (``nl+m3`` speaks as
``synthetic-nl-nl-m3``). A variant changes formants, pitch range and breathiness, so two
variants are as different as two speakers get with this engine; the random rate and pitch vary
the speaker from clip to clip.

**Splits** are by sentence (``split_sentences``): no text is in two splits, and about
``dev_fraction`` and ``test_fraction`` of the sentences are in dev and test. ``hours`` caps the
audio: each split gets its share, and takes sentences in a seeded order until the next clip
would pass its share. When a split has spoken every sentence once, it starts again with every
sentence in the next voice, up to one rendition per voice.

**Determinism and resuming.** Everything drawn comes from SHA256 of the seed and the sentence,
never from the order of work, so the same seed, config and packages give the same clips and
byte-identical manifests; audio is identical given the same espeak-ng, sox and numpy. A clip's
file name is a digest of everything that makes it (text, voice, rate, pitch, noise, room,
level), so a run killed halfway resumes by keeping every FLAC already written, and a config
change never reuses a stale file.

``prepare_synthetic`` is the recipe; it writes ``{recordings,supervisions,cuts}_{split}.jsonl.gz``
and a ``report.json`` of what was found, kept and dropped.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.audio import AudioSource
from tqdm import tqdm

from sslgrid.audio import write_flac
from sslgrid.corpora.debian import ChecksumError, fetch_package, iter_members
from sslgrid.text import normalise

__all__ = [
    "SPLITS",
    "CatalogueMessage",
    "ClipPlan",
    "MoFormatError",
    "Sentence",
    "SentencePool",
    "SynthesisError",
    "SyntheticSettings",
    "check_voices",
    "collect_sentences",
    "message_sentences",
    "plan_clips",
    "prepare_synthetic",
    "read_mo_catalogue",
    "split_sentences",
    "synthesise_clip",
    "unspeakable_reason",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
SAMPLE_RATE = 16000
DEFAULT_VOICES = (
    "nl",
    "nl+m1",
    "nl+m3",
    "nl+m5",
    "nl+m7",
    "nl+f1",
    "nl+f2",
    "nl+f3",
    "nl+f4",
    "nl+klatt4",
)
NOISE_COLOURS = ("white", "pink", "brown")


# --------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class SyntheticSettings:
    """The ``corpora.<name>`` entry of a synthetic corpus, checked, with defaults filled in.

    ``packages``: ``{"name", "url", "sha256"}`` entries whose catalogues give the text.
    ``hours``: audio to generate, all splits together. ``voices``: espeak-ng voices
    (``nl``, ``nl+m3``). ``rate``: words per minute, ``[min, max]``. ``pitch``: espeak-ng
    pitch 0-99, ``[min, max]``. ``noise_snr_db``: ``[min, max]``, or ``None`` for no noise.
    ``reverb``: probability that a clip gets a room. ``min_words``/``max_words``: sentence
    length after normalisation.
    """

    packages: tuple[Mapping[str, str], ...]
    hours: float
    language: str = "nl"
    region: str = "nl"
    domain: str = "synthetic-tts"
    voices: tuple[str, ...] = DEFAULT_VOICES
    rate: tuple[int, int] = (140, 200)
    pitch: tuple[int, int] = (30, 70)
    noise_snr_db: tuple[float, float] | None = (10.0, 40.0)
    reverb: float = 0.3
    dev_fraction: float = 0.1
    test_fraction: float = 0.1
    min_words: int = 4
    max_words: int = 30

    @classmethod
    def from_config(cls, config: Mapping[str, Any], corpus: str) -> SyntheticSettings:
        """Check ``config`` (the corpus entry); errors name ``corpora.<corpus>.<key>``.

        The config schema checks the same when the workflow runs; this repeats it for
        callers that build the dict themselves, with the same key names in the errors.
        """
        where = f"corpora.{corpus}"
        allowed = set(cls.__dataclass_fields__) | {"recipe"}
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        if config.get("recipe", "synthetic") != "synthetic":
            raise ValueError(f"{where}.recipe: expected 'synthetic', got {config['recipe']!r}")
        missing = [key for key in ("packages", "hours") if key not in config]
        if missing:
            raise ValueError(f"{where}: missing key(s) {missing}")
        values = {
            key: _CHECKS[key](value, f"{where}.{key}")
            for key, value in config.items()
            if key != "recipe"
        }
        settings = cls(**values)
        if settings.dev_fraction + settings.test_fraction >= 1:
            raise ValueError(f"{where}: dev_fraction + test_fraction must be below 1")
        if settings.min_words > settings.max_words:
            raise ValueError(f"{where}: min_words is larger than max_words")
        return settings


def _checked_packages(packages: Any, where: str) -> tuple[Mapping[str, str], ...]:
    if not isinstance(packages, list | tuple) or not packages:
        raise ValueError(f"{where}: expected a non-empty list of {{name, url, sha256}}")
    for i, package in enumerate(packages):
        if not isinstance(package, Mapping) or set(package) != {"name", "url", "sha256"}:
            raise ValueError(f"{where}[{i}]: expected exactly the keys name, url, sha256")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", str(package["sha256"])):
            raise ValueError(f"{where}[{i}].sha256: expected 64 hex digits ({package['name']})")
    return tuple(dict(p) for p in packages)


def _checked_voices(voices: Any, where: str) -> tuple[str, ...]:
    if (
        not isinstance(voices, list | tuple)
        or not voices
        or not all(isinstance(v, str) and v for v in voices)
        or len(set(voices)) != len(voices)
    ):
        raise ValueError(
            f"{where}: expected distinct espeak-ng voices like 'nl+m3', got {voices!r}"
        )
    return tuple(voices)


def _checked_text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9_-]+", value, re.IGNORECASE):
        raise ValueError(f"{where}: expected a word such as 'nl', got {value!r}")
    return value


def _number_check(test: Callable[[float], bool], expected: str) -> Callable[[Any, str], float]:
    def check(value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not test(value):
            raise ValueError(f"{where}: expected a number {expected}, got {value!r}")
        return float(value)

    return check


def _count_check(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _int_range(value: Any, where: str, low: int, high: int) -> tuple[int, int]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not low <= value[0] <= value[1] <= high
    ):
        raise ValueError(
            f"{where}: expected [min, max] integers within [{low}, {high}], got {value!r}"
        )
    return int(value[0]), int(value[1])


def _float_range(value: Any, where: str) -> tuple[float, float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or value[0] > value[1]
    ):
        raise ValueError(f"{where}: expected [min, max] numbers, got {value!r}")
    return float(value[0]), float(value[1])


_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "packages": _checked_packages,
    "hours": _number_check(lambda v: v > 0, "> 0"),
    "language": _checked_text,
    "region": _checked_text,
    "domain": _checked_text,
    "voices": _checked_voices,
    "rate": lambda v, where: _int_range(v, where, 80, 450),
    "pitch": lambda v, where: _int_range(v, where, 0, 99),
    "noise_snr_db": lambda v, where: None if v is None else _float_range(v, where),
    "reverb": _number_check(lambda v: 0 <= v <= 1, "in [0, 1]"),
    "dev_fraction": _number_check(lambda v: 0 <= v < 1, "in [0, 1)"),
    "test_fraction": _number_check(lambda v: 0 <= v < 1, "in [0, 1)"),
    "min_words": _count_check,
    "max_words": _count_check,
}


# --------------------------------------------------------------------------------------------
# Gettext catalogues


class MoFormatError(ValueError):
    """A ``.mo`` file that cannot be read; the message starts with its source."""


@dataclass(frozen=True)
class CatalogueMessage:
    """One entry of a ``.mo`` catalogue.

    ``msgstr`` has one string, or one per plural form when ``msgid_plural`` is set; an
    untranslated entry has ``("",)``. ``context`` is the ``msgctxt``, if any.
    """

    msgid: str
    msgstr: tuple[str, ...]
    msgid_plural: str | None = None
    context: str | None = None


_MO_MAGIC = 0x950412DE
_CHARSET = re.compile(r"charset=([^\s;]+)", re.IGNORECASE)


def read_mo_catalogue(data: bytes, source: str) -> list[CatalogueMessage]:
    """Every entry of the compiled gettext catalogue ``data``, in file order, header excluded.

    The layout is GNU gettext's: a magic number giving the byte order, a revision, the entry
    count, and two tables of (length, offset) pairs for the originals and the translations.
    Strings are decoded with the charset of the header entry (UTF-8 when there is none). A
    plural entry holds ``msgid\\0msgid_plural`` and ``form0\\0form1...``; a context is
    ``msgctxt\\x04msgid``. Anything malformed raises ``MoFormatError`` naming ``source``.
    """
    if len(data) < 20:
        raise MoFormatError(f"{source}: {len(data)} bytes is too short for a .mo file")
    order = _byte_order(data, source)
    revision, count, originals_at, translations_at = struct.unpack(order + "4I", data[4:20])
    if revision >> 16 > 1:
        raise MoFormatError(
            f"{source}: unsupported .mo revision {revision >> 16}.{revision & 0xFFFF}"
        )
    originals = _string_table(data, order, originals_at, count, source, "original")
    translations = _string_table(data, order, translations_at, count, source, "translation")
    charset = _header_charset(originals, translations)
    messages: list[CatalogueMessage] = []
    for index, (original, translation) in enumerate(zip(originals, translations, strict=True)):
        if original == b"":
            continue  # the header entry: metadata, not a message
        try:
            msgid_raw, msgstr_raw = original.decode(charset), translation.decode(charset)
        except (UnicodeDecodeError, LookupError) as exc:
            raise MoFormatError(f"{source}: entry {index} is not valid {charset} ({exc})") from exc
        context, has_context, msgid_raw = msgid_raw.rpartition("\x04")
        msgid, is_plural, plural = msgid_raw.partition("\x00")
        messages.append(
            CatalogueMessage(
                msgid=msgid,
                msgstr=tuple(msgstr_raw.split("\x00")),
                msgid_plural=plural if is_plural else None,
                context=context if has_context else None,
            )
        )
    return messages


def _byte_order(data: bytes, source: str) -> str:
    if struct.unpack("<I", data[:4])[0] == _MO_MAGIC:
        return "<"
    if struct.unpack(">I", data[:4])[0] == _MO_MAGIC:
        return ">"
    raise MoFormatError(f"{source}: not a .mo file (magic number {data[:4].hex()})")


def _string_table(
    data: bytes, order: str, table_at: int, count: int, source: str, what: str
) -> list[bytes]:
    """The ``count`` strings of the table at ``table_at``; bounds checked, NUL excluded."""
    if table_at + 8 * count > len(data):
        raise MoFormatError(f"{source}: the {what} table runs past the end of the file")
    strings = []
    for index in range(count):
        length, offset = struct.unpack_from(order + "2I", data, table_at + 8 * index)
        if offset + length > len(data):
            raise MoFormatError(f"{source}: {what} {index} points past the end of the file")
        strings.append(data[offset : offset + length])
    return strings


def _header_charset(originals: Sequence[bytes], translations: Sequence[bytes]) -> str:
    for original, translation in zip(originals, translations, strict=True):
        if original == b"":
            match = _CHARSET.search(translation.decode("ascii", errors="replace"))
            if match and match.group(1).upper() != "CHARSET":
                return match.group(1)
    return "utf-8"


# --------------------------------------------------------------------------------------------
# Sentences


# A line of an option table ("  -a, --all   do not ignore ...") or of a table aligned with
# tabs or runs of spaces; such lines are not wrapped prose.
_TABLE_ROW = re.compile(r"^\s*--?\w|\t|\S {3,}\S")
_SENTENCE_BREAK = re.compile(
    r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’»)]))\s+(?=[\"'“‘„«(]?[A-ZÀ-ÖØ-Þ0-9])"
)


def message_sentences(text: str) -> list[list[str]]:
    """The sentences of a catalogue message, per paragraph, as written, whitespace collapsed.

    Paragraphs (separated by blank lines) are never joined. Inside a paragraph, wrapped lines
    are joined before splitting into sentences. The rows of an option or aligned table
    (``  -a, --all   list all``, ``  K/N     output Kth of N``), with the lines indented
    deeper below them, are left out: a term and its description are not a sentence. A
    sentence ends at ``.``, ``!``, ``?`` or ``…`` followed by space and a capital or digit,
    so ``bijv. de`` does not end one.
    """
    paragraphs: list[list[str]] = []
    for paragraph in re.split(r"\n[ \t]*\n", text):
        sentences: list[str] = []
        prose: list[str] = []
        in_row, row_indent = False, 0
        for line in paragraph.expandtabs(8).split("\n"):
            indent = len(line) - len(line.lstrip())
            if _TABLE_ROW.search(line):
                sentences += _split_prose(prose)  # a table ends the prose before it
                prose, in_row, row_indent = [], True, indent
            elif not (in_row and line.strip() and indent > row_indent):
                in_row = False
                prose.append(line)
        sentences += _split_prose(prose)
        if sentences:
            paragraphs.append(sentences)
    return paragraphs


def _split_prose(lines: Sequence[str]) -> list[str]:
    joined = " ".join(line.strip() for line in lines if line.strip())
    return [s for s in _SENTENCE_BREAK.split(joined) if s] if joined else []


# printf conversions (%s, %2$d, %-10.*lu, %%) and the like (date's %Y, stat's %y), Python and
# shell placeholders. A percent sign is speech only right after a number, before a space,
# punctuation or the end ("50% klaar").
_FORMAT = re.compile(r"(?<![\d ])%|%(?![\s.,;:!?)]|$)|\{\w*\}|\$\{?\w")
_URL_OR_PATH = re.compile(
    r"\w+://|www\.|[\w.+-]+@[\w-]+\.\w|(?:^|[\s('\"‘“])[~.]{0,2}/\w|\w/\w+/|\w\.(?:txt|conf|so)\b"
)
_OPTION = re.compile(r"(?:^|[\s('\"‘“/])--?[A-Za-z0-9]")
_CODE = re.compile(r"[\[\]{}<>|\\=_#`^~*$@]|\w\(\)|::")
# A quoted symbol ('.', ":") is written but gone after normalisation, so it cannot be heard.
_QUOTED_SYMBOL = re.compile(r"(?:^|\s)['\"‘“][^\w\s]+['\"’”](?=\s|[,.;:!?]|$)")
_WORD_CHARACTERS = re.compile(r"[a-zà-öø-ÿ' ]+")


def unspeakable_reason(sentence: str) -> str | None:
    """Why a catalogue sentence cannot be read aloud as written, or ``None`` if it can.

    Rejects format directives (their values are missing), urls, e-mail addresses and paths,
    command-line options, and code or markup characters; a reader would say these differently
    from what normalisation writes, so audio and transcript would disagree.
    """
    for reason, pattern in (
        ("format directive", _FORMAT),
        ("url, e-mail or path", _URL_OR_PATH),
        ("command-line option", _OPTION),
        ("code or markup", _CODE),
        ("quoted symbol", _QUOTED_SYMBOL),
    ):
        if pattern.search(sentence):
            return reason
    return None


@dataclass(frozen=True)
class Sentence:
    """A kept sentence: normalised ``text``, ``orig_text`` as in the catalogue, English."""

    text: str
    orig_text: str
    translation: str | None
    source: str  # "<package>:<catalogue path>"


@dataclass
class SentencePool:
    """Kept sentences in discovery order, and the counts behind them for the report."""

    sentences: list[Sentence] = field(default_factory=list)
    per_package: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def report(self) -> dict[str, Any]:
        return {
            "packages": self.per_package,
            "kept": len(self.sentences),
            "kept_without_translation": sum(s.translation is None for s in self.sentences),
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_examples": {k: v for k, v in sorted(self.examples.items())},
        }


_EXAMPLES_PER_REASON = 5


def collect_sentences(
    catalogues: Iterable[tuple[str, str, Sequence[CatalogueMessage]]],
    exclude_texts: Iterable[str] = (),
    min_words: int = 4,
    max_words: int = 30,
) -> SentencePool:
    """Speakable, distinct Dutch sentences of ``(package, path, messages)`` catalogues.

    Catalogues are read in the order given, messages in file order; of two sentences with
    the same normalised text the first is kept. A message is skipped whole when it is a
    plural (``plural message``) or untranslated (``untranslated message``). A sentence is
    dropped when ``unspeakable_reason`` says so, when it normalises to fewer than
    ``min_words`` or more than ``max_words`` words, when it holds letters outside the Latin
    alphabet, when it is the English sentence itself (``identical to English``), when its
    normalised text is in ``exclude_texts`` (``excluded``, compared after normalising those
    too) or seen before (``duplicate``).

    The English of a sentence is the whole ``msgid`` when the Dutch message is one sentence;
    the English sentence at the same place when both messages have as many paragraphs with
    as many sentences each; else ``None``: translators join, split and reorder sentences, so
    no looser pairing can be trusted.
    """
    excluded = {normalise(t) for t in exclude_texts}
    pool = SentencePool()
    seen: set[str] = set()
    for package, path, messages in catalogues:
        counts = pool.per_package.setdefault(
            package,
            {"catalogues": [], "messages": 0, "sentences": 0, "kept": 0, "dropped": Counter()},
        )
        counts["catalogues"].append(path)
        for message in messages:
            counts["messages"] += 1
            reason = _unusable_message_reason(message)
            if reason:
                _drop(pool, counts, reason, message.msgid)
                continue
            for dutch, english in _sentence_pairs(message):
                counts["sentences"] += 1
                text = normalise(dutch)
                reason = _sentence_reason(dutch, text, english, min_words, max_words)
                if reason is None and text in excluded:
                    reason = "excluded"
                elif reason is None and text in seen:
                    reason = "duplicate"
                if reason:
                    _drop(pool, counts, reason, dutch)
                    continue
                seen.add(text)
                counts["kept"] += 1
                pool.sentences.append(Sentence(text, dutch, english, f"{package}:{path}"))
    for counts in pool.per_package.values():
        counts["dropped"] = dict(sorted(counts["dropped"].items()))
    return pool


def _unusable_message_reason(message: CatalogueMessage) -> str | None:
    if message.msgid_plural is not None:
        return "plural message"
    if not message.msgstr[0].strip():
        return "untranslated message"
    return None


def _sentence_pairs(message: CatalogueMessage) -> list[tuple[str, str | None]]:
    dutch_paragraphs = message_sentences(message.msgstr[0])
    english_paragraphs = message_sentences(message.msgid)
    dutch = [s for paragraph in dutch_paragraphs for s in paragraph]
    english = [s for paragraph in english_paragraphs for s in paragraph]
    if len(dutch) == 1:
        return [(dutch[0], " ".join(english) or None)]
    if [len(p) for p in dutch_paragraphs] == [len(p) for p in english_paragraphs]:
        return list(zip(dutch, english, strict=True))
    return [(sentence, None) for sentence in dutch]


def _sentence_reason(
    dutch: str, text: str, english: str | None, min_words: int, max_words: int
) -> str | None:
    reason = unspeakable_reason(dutch)
    if reason:
        return reason
    words = len(text.split())
    if words < min_words:
        return "too short"
    if words > max_words:
        return "too long"
    if not _WORD_CHARACTERS.fullmatch(text):
        return "letters outside the Latin alphabet"
    if english is not None and normalise(english) == text:
        return "identical to English"
    return None


def _drop(pool: SentencePool, counts: dict[str, Any], reason: str, example: str) -> None:
    pool.dropped[reason] += 1
    counts["dropped"][reason] += 1
    if len(pool.examples[reason]) < _EXAMPLES_PER_REASON:
        pool.examples[reason].append(example)


def _catalogues_of(
    package: str, deb: Path, language: str
) -> Iterator[tuple[str, str, list[CatalogueMessage]]]:
    pattern = re.compile(rf"usr/share/locale/{re.escape(language)}/LC_MESSAGES/[^/]+\.mo")
    found = sorted(iter_members(deb, pattern))
    if not found:
        raise ValueError(
            f"package {package} ({deb.name}) has no catalogue "
            f"usr/share/locale/{language}/LC_MESSAGES/*.mo"
        )
    for path, data in found:
        yield package, path, read_mo_catalogue(data, f"{deb.name}:{path}")


# --------------------------------------------------------------------------------------------
# Splits and clip plans


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


def split_sentences(
    texts: Iterable[str], dev_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    """Assign each distinct text to ``train``/``dev``/``test``, in the given fractions by count.

    Texts are ordered by SHA256 of ``"<seed>:<text>"`` (so one text's place never depends on
    the others); the first share goes to test, the next to dev, the rest to train. From three
    texts on, a split with a positive fraction (and train) always gets at least one.
    """
    if not 0 <= dev_fraction < 1 or not 0 <= test_fraction < 1:
        raise ValueError(f"dev/test fractions must be in [0, 1): {dev_fraction}, {test_fraction}")
    if dev_fraction + test_fraction >= 1:
        raise ValueError(f"dev + test fractions must be below 1: {dev_fraction + test_fraction}")
    order = sorted(set(texts), key=lambda text: _digest(seed, text))
    n = len(order)
    n_test, n_dev = (_share(n, f) for f in (test_fraction, dev_fraction))
    while n >= 3 and n_test + n_dev >= n:  # train keeps at least one
        n_dev, n_test = (n_dev - 1, n_test) if n_dev >= n_test else (n_dev, n_test - 1)
    assignment = {text: "test" for text in order[:n_test]}
    assignment.update({text: "dev" for text in order[n_test : n_test + n_dev]})
    assignment.update({text: "train" for text in order[n_test + n_dev :]})
    return assignment


def _share(n: int, fraction: float) -> int:
    if fraction == 0:
        return 0
    return max(1, round(n * fraction)) if n >= 3 else round(n * fraction)


@dataclass(frozen=True)
class ClipPlan:
    """Everything that makes one clip; the same plan always gives the same audio."""

    sentence: Sentence
    rendition: int  # 0 for a sentence's first clip, 1 for its second (in another voice), ...
    voice: str
    rate: int
    pitch: int
    snr_db: float | None
    noise: str | None  # colour
    room: tuple[int, int, int] | None  # sox reverb: reverberance %, HF damping %, room scale %
    peak: float
    noise_seed: int

    @property
    def spoken_text(self) -> str:
        """The normalised text with the original's closing mark, so questions sound like them."""
        mark = self.sentence.orig_text.rstrip("\"'”’») ")[-1:]
        return self.sentence.text + (mark if mark in "?!" and mark else ".")

    @property
    def key(self) -> str:
        """Digest of everything that shapes the audio: names the file, so no stale reuse."""
        params = (
            self.spoken_text,
            self.voice,
            self.rate,
            self.pitch,
            self.snr_db,
            self.noise,
            self.room,
            self.peak,
            self.noise_seed,
        )
        return hashlib.sha256(json.dumps(params).encode()).hexdigest()[:10]

    @property
    def sentence_key(self) -> str:
        return hashlib.sha256(self.sentence.text.encode()).hexdigest()[:10]

    def tts_settings(self) -> dict[str, Any]:
        return {
            "engine": "espeak-ng",
            "voice": self.voice,
            "rate": self.rate,
            "pitch": self.pitch,
            "snr_db": self.snr_db,
            "noise": self.noise,
            "reverb": list(self.room) if self.room else None,
            "peak": self.peak,
            "rendition": self.rendition,
        }


def speaker_of(voice: str, corpus: str) -> str:
    """The speaker a voice stands for: ``<corpus>-<voice>``, ``+`` written as ``-``."""
    return f"{corpus}-{voice.replace('+', '-')}"


def plan_clips(
    sentences: Sequence[Sentence], settings: SyntheticSettings, seed: int
) -> Iterator[ClipPlan]:
    """Clips for ``sentences`` in order: each once, then each again in the next voice, ...

    Stops after one rendition per voice. A sentence's first voice and every random draw
    come from SHA256 of the seed, the text and the rendition, never from a position.
    """
    for rendition in range(len(settings.voices)):
        for sentence in sentences:
            yield _plan(sentence, rendition, settings, seed)


def _plan(sentence: Sentence, rendition: int, settings: SyntheticSettings, seed: int) -> ClipPlan:
    first_voice = int.from_bytes(_digest(seed, sentence.text)[:4], "big")
    voice = settings.voices[(first_voice + rendition) % len(settings.voices)]
    rng = np.random.default_rng(int.from_bytes(_digest(seed, sentence.text, rendition)[:8], "big"))
    # Draw every value in a fixed order, used or not, so that one setting (say, no noise)
    # never shifts the values drawn for another.
    rate = int(rng.integers(settings.rate[0], settings.rate[1] + 1))
    pitch = int(rng.integers(settings.pitch[0], settings.pitch[1] + 1))
    snr_low, snr_high = settings.noise_snr_db or (0.0, 0.0)
    snr_db = round(float(rng.uniform(snr_low, snr_high)), 1)
    noise = NOISE_COLOURS[int(rng.integers(len(NOISE_COLOURS)))]
    with_room = bool(rng.random() < settings.reverb)
    room = (int(rng.integers(20, 81)), int(rng.integers(20, 81)), int(rng.integers(20, 101)))
    peak = round(float(rng.uniform(0.3, 0.9)), 2)
    noise_seed = int(rng.integers(2**32))
    return ClipPlan(
        sentence=sentence,
        rendition=rendition,
        voice=voice,
        rate=rate,
        pitch=pitch,
        snr_db=snr_db if settings.noise_snr_db else None,
        noise=noise if settings.noise_snr_db else None,
        room=room if with_room else None,
        peak=peak,
        noise_seed=noise_seed,
    )


# --------------------------------------------------------------------------------------------
# Synthesis


class SynthesisError(RuntimeError):
    """espeak-ng or sox failed, or is missing; the message names the clip or the voice."""


_TOOL_PACKAGES = {"espeak-ng": "espeak-ng", "sox": "sox"}
_TOOL_TIMEOUT_S = 120


def _run_tool(args: Sequence[str], stdin: bytes, what: str) -> bytes:
    try:
        done = subprocess.run(
            list(args), input=stdin, capture_output=True, timeout=_TOOL_TIMEOUT_S, check=False
        )
    except FileNotFoundError as exc:
        package = _TOOL_PACKAGES.get(args[0], args[0])
        raise SynthesisError(
            f"{args[0]} is not on PATH; it is needed for {what} (Debian package {package})"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise SynthesisError(f"{what}: {args[0]} took over {_TOOL_TIMEOUT_S} s") from exc
    stderr = done.stderr.decode(errors="replace").strip()
    if done.returncode != 0:
        raise SynthesisError(f"{what}: {args[0]} failed with exit code {done.returncode}: {stderr}")
    if not done.stdout:
        raise SynthesisError(f"{what}: {args[0]} produced no output {stderr}".rstrip())
    return done.stdout


def check_voices(voices: Sequence[str]) -> dict[str, str]:
    """Fail early, naming the voice, unless espeak-ng and sox can make every voice.

    espeak-ng falls back to its default variant, silently, for a variant it does not know,
    so variants are checked against ``espeak-ng --voices=variant``. Returns the versions of
    the two tools, for the report.
    """
    versions = {
        "espeak-ng": _run_tool(["espeak-ng", "--version"], b"", "checking voices").decode(),
        "sox": _run_tool(["sox", "--version"], b"", "checking voices").decode(),
    }
    listing = _run_tool(["espeak-ng", "--voices=variant"], b"", "listing voice variants")
    variants = set(re.findall(r"!v/(.+?)(?: {2,}|\s*$)", listing.decode(), re.MULTILINE))
    for voice in voices:
        base, _, variant = voice.partition("+")
        if variant and variant not in variants:
            raise SynthesisError(
                f"voice {voice!r}: espeak-ng has no variant {variant!r}; "
                f"known: {', '.join(sorted(variants, key=str.lower))}"
            )
        done = subprocess.run(
            ["espeak-ng", "-q", "-v", base, "a"], capture_output=True, check=False
        )
        if done.returncode != 0:
            raise SynthesisError(
                f"voice {voice!r}: espeak-ng has no voice {base!r} "
                f"({done.stderr.decode(errors='replace').strip()})"
            )
    return {tool: text.strip().splitlines()[0] for tool, text in versions.items()}


def synthesise_clip(plan: ClipPlan, path: Path) -> int:
    """Speak ``plan`` into the FLAC ``path`` (16 kHz mono, 16-bit); return its sample count."""
    what = f"clip {path.name} ({plan.voice}: {plan.spoken_text!r})"
    wav = _run_tool(
        ["espeak-ng", "-b", "1", "-v", plan.voice, "-s", str(plan.rate), "-p", str(plan.pitch)]
        + ["--stdin", "--stdout"],
        plan.spoken_text.encode(),
        what,
    )
    speech = _through_room(wav, plan.room, what)
    if not np.any(speech):
        raise SynthesisError(f"{what}: espeak-ng produced silence")
    samples = _with_noise(speech, plan)
    write_flac(path, samples, SAMPLE_RATE)
    return len(samples)


def _through_room(wav: bytes, room: tuple[int, int, int] | None, what: str) -> np.ndarray:
    """espeak-ng's WAV at 16 kHz mono float32, after sox's reverberation when ``room``.

    sox writes raw little-endian floats: no header to fix on a pipe, and no dither (which
    sox adds, randomly, when it reduces to 16 bits).
    """
    reverb = ["reverb", *map(str, room)] if room else []
    raw = _run_tool(
        ["sox", "-V1", "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32", "-L"]
        + ["-"]
        + reverb
        + ["channels", "1", "rate", "-v", str(SAMPLE_RATE)],
        wav,
        what,
    )
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def _with_noise(speech: np.ndarray, plan: ClipPlan) -> np.ndarray:
    """Noise at the plan's SNR (over the whole clip), then the clip scaled to its peak level."""
    mixed = speech.astype(np.float64)
    if plan.snr_db is not None and plan.noise is not None:
        noise = _coloured_noise(np.random.default_rng(plan.noise_seed), len(speech), plan.noise)
        gain = np.sqrt(np.mean(mixed**2) / (np.mean(noise**2) * 10 ** (plan.snr_db / 10)))
        mixed = mixed + gain * noise
    return (mixed * (plan.peak / np.max(np.abs(mixed)))).astype(np.float32)


def _coloured_noise(rng: np.random.Generator, n: int, colour: str) -> np.ndarray:
    """White noise, or pink (power ~ 1/f) or brown (~ 1/f²) by shaping its spectrum."""
    white = rng.standard_normal(n)
    if colour == "white":
        return white
    exponent = {"pink": 0.5, "brown": 1.0}[colour]  # on the amplitude
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 2 else 1.0  # no infinite DC
    shaped = np.fft.irfft(spectrum / freqs**exponent, n=n)
    return shaped - shaped.mean()


# --------------------------------------------------------------------------------------------
# Manifests


@dataclass(frozen=True)
class _Utterance:
    recording: Recording
    supervision: SupervisionSegment


def _utterance(plan: ClipPlan, path: Path, num_samples: int, meta: Mapping[str, str]) -> _Utterance:
    speaker = speaker_of(plan.voice, meta["corpus"])
    utt_id = f"{speaker}-{plan.sentence_key}-{plan.key}"
    duration = num_samples / SAMPLE_RATE
    recording = Recording(
        id=utt_id,
        sources=[AudioSource(type="file", channels=[0], source=str(path))],
        sampling_rate=SAMPLE_RATE,
        num_samples=num_samples,
        duration=duration,
    )
    supervision = SupervisionSegment(
        id=utt_id,
        recording_id=utt_id,
        start=0.0,
        duration=duration,
        channel=0,
        text=plan.sentence.text,
        language=meta["language"],
        speaker=speaker,
        custom={
            "translation": plan.sentence.translation,
            "orig_text": plan.sentence.orig_text,
            "domain": meta["domain"],
            "region": meta["region"],
            "corpus": meta["corpus"],
            "source": plan.sentence.source,
            "tts": plan.tts_settings(),
        },
    )
    return _Utterance(recording, supervision)


def _clip_path(plan: ClipPlan, audio_dir: Path, corpus: str) -> Path:
    return audio_dir / speaker_of(plan.voice, corpus) / f"{plan.sentence_key}-{plan.key}.flac"


def _write_split(utterances: Sequence[_Utterance], split: str, manifest_dir: Path) -> None:
    recordings = RecordingSet.from_recordings(u.recording for u in utterances)
    supervisions = SupervisionSet.from_segments(u.supervision for u in utterances)
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    for name, manifest in (
        ("recordings", recordings),
        ("supervisions", supervisions),
        ("cuts", cuts),
    ):
        _write_jsonl_gz(manifest, manifest_dir / f"{name}_{split}.jsonl.gz")


def _write_jsonl_gz(manifest: Any, path: Path) -> None:
    """Lhotse's jsonl, gzipped with no time stamp (Lhotse's own gzip writes one), atomically.

    Equal manifests thus give byte-identical files, which is what makes runs comparable.
    """
    plain = path.with_name(f".{path.name}.tmp.jsonl")
    packed = path.with_name(f".{path.name}.tmp")
    try:
        manifest.to_file(plain)
        with open(plain, "rb") as source, open(packed, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
                shutil.copyfileobj(source, out)
        os.replace(packed, path)
    finally:
        plain.unlink(missing_ok=True)
        packed.unlink(missing_ok=True)


def _write_report(report: Mapping[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _split_summary(utterances: Sequence[_Utterance], budget_s: float) -> dict[str, Any]:
    speakers = sorted({u.supervision.speaker for u in utterances if u.supervision.speaker})
    return {
        "hours": round(sum(u.recording.duration for u in utterances) / 3600, 4),
        "hours_asked": round(budget_s / 3600, 4),
        "utterances": len(utterances),
        "sentences": len({u.supervision.text for u in utterances}),
        "num_speakers": len(speakers),
        "speakers": speakers,
    }


# --------------------------------------------------------------------------------------------
# The recipe


@dataclass
class _SynthesisTally:
    synthesised: int = 0
    reused: int = 0
    synthesised_seconds: float = 0.0
    wall_seconds: float = 0.0


def _take_clips(
    plans: Iterator[ClipPlan],
    budget_s: float,
    make: Callable[[ClipPlan], tuple[Path, int, bool]],
    pool: ThreadPoolExecutor,
    chunk: int,
    on_clip: Callable[[float], None],
) -> list[tuple[ClipPlan, Path, int]]:
    """Clips in plan order until the next would pass ``budget_s`` (the first one always fits).

    Clips are made ``chunk`` at a time in parallel; the few made past the budget stay on disk
    for a later run that asks for more, and are not in the result, which depends only on
    the plans and the durations, never on timing.
    """
    taken: list[tuple[ClipPlan, Path, int]] = []
    total = 0.0
    if budget_s <= 0:
        return taken
    while batch := list(islice(plans, chunk)):
        for plan, (path, num_samples, _) in zip(batch, pool.map(make, batch), strict=True):
            duration = num_samples / SAMPLE_RATE
            if taken and total + duration > budget_s:
                return taken
            taken.append((plan, path, num_samples))
            total += duration
            on_clip(duration)
    return taken


def prepare_synthetic(
    config: Mapping[str, Any],
    download_dir: str | os.PathLike[str],
    audio_dir: str | os.PathLike[str],
    manifest_dir: str | os.PathLike[str],
    seed: int,
    exclude_texts: Iterable[str] = (),
    progress: bool = True,
    *,
    corpus: str = "synthetic-nl",
    workers: int | None = None,
) -> dict[str, Any]:
    """Build the synthetic corpus described by ``config``; return the report written as JSON.

    ``config`` is the ``corpora.<corpus>`` entry (``SyntheticSettings``). Packages are
    fetched into ``download_dir`` and verified; clips become
    ``<audio_dir>/<speaker>/<sentence>-<clip>.flac`` (kept when present, so a killed run
    resumes); ``manifest_dir`` receives ``{recordings,supervisions,cuts}_{train,dev,test}
    .jsonl.gz`` and ``report.json``. ``exclude_texts`` (any form; normalised here) never
    appear. ``workers`` espeak-ng/sox pipelines run at once (default: one per CPU).

    A supervision carries the normalised ``text``, the voice as ``speaker``, the
    ``language``, and in ``custom``: the English ``translation`` (``None`` when the catalogue
    does not say which English sentence it is), ``orig_text``, ``domain``, ``region``,
    ``corpus``, ``source`` (package and catalogue) and ``tts`` (voice, rate, pitch, noise,
    reverberation, level). The report's ``run`` part (timing, clips reused) is the only part
    that differs between equal runs.
    """
    settings = SyntheticSettings.from_config(config, corpus)
    audio_dir, manifest_dir = Path(audio_dir), Path(manifest_dir)
    meta = {
        "corpus": corpus,
        "language": settings.language,
        "region": settings.region,
        "domain": settings.domain,
    }
    tools = check_voices(settings.voices)  # before any download: a missing voice fails fast

    catalogues = [
        catalogue
        for package in settings.packages
        for catalogue in _catalogues_of(
            package["name"], _fetch(package, download_dir, progress), settings.language
        )
    ]
    exclude = list(exclude_texts)
    pool = collect_sentences(catalogues, exclude, settings.min_words, settings.max_words)
    if not pool.sentences:
        names = [p["name"] for p in settings.packages]
        raise ValueError(f"{corpus}: no usable Dutch sentence in the catalogues of {names}")
    assignment = split_sentences(
        (s.text for s in pool.sentences), settings.dev_fraction, settings.test_fraction, seed
    )
    budgets = _split_budgets(settings)
    workers = workers or os.cpu_count() or 1
    by_split = {
        split: sorted(
            (s for s in pool.sentences if assignment[s.text] == split),
            key=lambda s: _digest(seed, s.text),
        )
        for split in SPLITS
    }
    utterances, tally = _synthesise_splits(
        by_split, budgets, settings, seed, audio_dir, meta, workers, progress
    )

    manifest_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        **meta,
        "recipe": "synthetic",
        "seed": seed,
        "settings": _settings_for_report(settings),
        "excluded_texts": len({normalise(t) for t in exclude}),
        "text": pool.report(),
        "splits": {},
    }
    for split in SPLITS:
        _write_split(utterances[split], split, manifest_dir)
        report["splits"][split] = _split_summary(utterances[split], budgets[split])
    report["run"] = _run_summary(tally, tools, workers)
    _write_report(report, manifest_dir / "report.json")
    return report


def _synthesise_splits(
    by_split: Mapping[str, Sequence[Sentence]],
    budgets: Mapping[str, float],
    settings: SyntheticSettings,
    seed: int,
    audio_dir: Path,
    meta: Mapping[str, str],
    workers: int,
    progress: bool,
) -> tuple[dict[str, list[_Utterance]], _SynthesisTally]:
    """Each split's clips, up to its budget, made ``workers`` at a time; files are reused."""
    tally, lock = _SynthesisTally(), threading.Lock()
    started = time.monotonic()

    def make(plan: ClipPlan) -> tuple[Path, int, bool]:
        path = _clip_path(plan, audio_dir, meta["corpus"])
        if path.is_file():
            with lock:
                tally.reused += 1
            return path, sf.info(str(path)).frames, True
        num_samples = synthesise_clip(plan, path)
        with lock:
            tally.synthesised += 1
            tally.synthesised_seconds += num_samples / SAMPLE_RATE
        return path, num_samples, False

    utterances: dict[str, list[_Utterance]] = {}
    bar = tqdm(
        total=round(sum(budgets.values())),
        desc=f"{meta['corpus']} speech",
        unit="s",
        disable=not progress,
    )
    with bar, ThreadPoolExecutor(max_workers=workers) as executor:
        for split in SPLITS:
            sentences = by_split[split]
            taken = _take_clips(
                plan_clips(sentences, settings, seed),
                budgets[split],
                make,
                executor,
                chunk=2 * workers,
                on_clip=bar.update,
            )
            utterances[split] = [_utterance(p, path, n, meta) for p, path, n in taken]
            _warn_if_short(split, taken, budgets[split], len(sentences), len(settings.voices))
    tally.wall_seconds = time.monotonic() - started
    log.info(
        "%s: synthesised %d clips (%.3f h) and reused %d in %.1f s with %d workers",
        meta["corpus"],
        tally.synthesised,
        tally.synthesised_seconds / 3600,
        tally.reused,
        tally.wall_seconds,
        workers,
    )
    return utterances, tally


def _fetch(
    package: Mapping[str, str], download_dir: str | os.PathLike[str], progress: bool
) -> Path:
    try:
        return fetch_package(package["url"], package["sha256"], download_dir, progress)
    except ChecksumError as exc:
        raise ChecksumError(f"package {package['name']}: {exc}") from exc


def _split_budgets(settings: SyntheticSettings) -> dict[str, float]:
    total = settings.hours * 3600
    dev, test = settings.dev_fraction * total, settings.test_fraction * total
    return {"train": total - dev - test, "dev": dev, "test": test}


def _warn_if_short(
    split: str, taken: Sequence[tuple[ClipPlan, Path, int]], budget_s: float, n: int, voices: int
) -> None:
    """A split that ran out of sentences × voices before its share of the hours."""
    made = sum(num_samples for _, _, num_samples in taken) / SAMPLE_RATE
    if budget_s > 0 and len(taken) == n * voices and made < budget_s:
        log.warning(
            "%s: every one of its %d sentences was spoken in all %d voices, giving %.3f h "
            "of the %.3f h asked; add packages or voices for more",
            split,
            n,
            voices,
            made / 3600,
            budget_s / 3600,
        )


def _settings_for_report(settings: SyntheticSettings) -> dict[str, Any]:
    values = {name: getattr(settings, name) for name in settings.__dataclass_fields__}
    values["packages"] = [dict(p) for p in settings.packages]
    return json.loads(json.dumps(values))


def _run_summary(tally: _SynthesisTally, tools: Mapping[str, str], workers: int) -> dict[str, Any]:
    audio_hours = tally.synthesised_seconds / 3600
    minutes = tally.wall_seconds / 60
    return {
        "tools": dict(tools),
        "workers": workers,
        "clips_synthesised": tally.synthesised,
        "clips_reused": tally.reused,
        "hours_synthesised": round(audio_hours, 4),
        "wall_seconds": round(tally.wall_seconds, 1),
        "audio_hours_per_wall_minute": round(audio_hours / minutes, 4) if minutes else None,
    }
