"""The Spoken Dutch Corpus (Corpus Gesproken Nederlands, CGN), read from its distributed layout.

The recipe reads a local copy of the corpus (it is licensed, never downloaded) below ``root``::

    data/audio/wav/comp-<c>/<region>/<stem>.wav            16 kHz (telephone: 8 kHz) PCM
    data/annot/text/ort/comp-<c>/<region>/<stem>.ort[.gz]  orthographic transcript
    data/meta/text/speakers.txt                            speaker metadata

``<c>`` is a component letter ``a``–``o`` (``COMPONENTS``) and ``<region>`` is ``vl``
(Flanders) or ``nl`` (the Netherlands). A transcript is a Praat TextGrid in the long or the
short text format, encoded in Latin-1, with one interval tier per speaker (named by the
speaker's ID, e.g. ``V40059``) and the non-speech tiers ``BACKGROUND`` and ``COMMENT``.
``speakers.txt`` is tab-separated with a header row; the recipe reads its ``ID``, ``sex``
(``sex1`` male, ``sex2`` female) and ``birthYear`` columns.

Each non-empty interval of a speaker tier is one utterance. Its text keeps what was said and
loses the corpus' annotation (``strip_cgn_markers``), then goes through ``sslgrid.text``:

- ``ggg`` (speaker noise: laughing, coughing) and ``xxx`` (unintelligible; also ``Xxx``) are
  removed, as is a broken-off word (``*a``: ``gesch*a``), since none is a word one can score;
- every other code suffix (``*v`` foreign, ``*d`` dialect, ``*z`` regional pronunciation,
  ``*u`` slip of the tongue, ``*n`` new word, ...) is stripped and the word kept, because the
  word was said as written;
- an utterance left without words is dropped and counted in the report.

Audio is not copied: cuts point at the corpus' WAV files and carry Lhotse's resampling
transform where a file is not at 16 kHz. Splits are speaker-disjoint, by duration, seeded.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lhotse import Recording, SupervisionSegment
from tqdm import tqdm

from sslgrid.audio import AudioError
from sslgrid.corpora.fillets import split_levels
from sslgrid.corpora.manifests import (
    SPLITS,
    Tally,
    check_fractions,
    check_unique_ids,
    cut_for_supervision,
    split_summary,
    write_report,
    write_split_cuts,
)
from sslgrid.text import normalise

__all__ = [
    "COMPONENTS",
    "TELEPHONE_COMPONENTS",
    "CgnMetadataError",
    "CgnOptions",
    "CgnSpeaker",
    "Interval",
    "TextGridError",
    "Tier",
    "parse_textgrid",
    "prepare_cgn",
    "read_speakers",
    "read_textgrid",
    "strip_cgn_markers",
]

log = logging.getLogger(__name__)

# Component letter -> the kind of speech it holds, used as ``custom.domain``.
COMPONENTS = {
    "a": "conversation",  # spontaneous face-to-face conversations
    "b": "interview",  # interviews with teachers of Dutch
    "c": "telephone-switchboard",  # spontaneous telephone dialogues, via a switchboard
    "d": "telephone-local",  # spontaneous telephone dialogues, recorded locally
    "e": "business-negotiation",  # simulated business negotiations
    "f": "broadcast-interview",  # interviews, discussions, debates (broadcast)
    "g": "discussion",  # political discussions, debates, meetings (not broadcast)
    "h": "lesson",  # lessons recorded in the classroom
    "i": "live-commentary",  # spontaneous commentaries, e.g. sports (broadcast)
    "j": "news-report",  # news reports and reportages (broadcast)
    "k": "news",  # news bulletins (broadcast)
    "l": "commentary",  # commentaries, columns, reviews (broadcast)
    "m": "ceremonial-speech",  # ceremonious speeches and sermons
    "n": "lecture",  # lectures and seminars
    "o": "read-speech",  # read-aloud text
}
TELEPHONE_COMPONENTS = frozenset("cd")
REGIONS = ("vl", "nl")
NON_SPEAKER_TIERS = frozenset({"BACKGROUND", "COMMENT"})


# --------------------------------------------------------------------------------------------
# Praat TextGrids


class TextGridError(ValueError):
    """A TextGrid that cannot be read; the message starts with ``file:line``."""


@dataclass(frozen=True)
class Interval:
    start: float
    end: float
    text: str
    line: int  # line of the interval's text, for messages


@dataclass(frozen=True)
class Tier:
    name: str
    kind: str  # "IntervalTier" or "TextTier" (points; kept without intervals)
    intervals: tuple[Interval, ...]
    line: int


# The long format labels every value (``xmin = 0``, ``intervals [3]:``); the short format
# writes values only. Both reduce to the same stream of strings, numbers and flags once the
# known labels are skipped, which is how Praat itself reads them. Anything else on a line is
# an error at that line, so a damaged file is reported where it is damaged.
_TEXTGRID_TOKEN = re.compile(
    r"(?P<newline>\n)"
    r"|(?P<space>[ \t\r\f\v\ufeff]+)"
    r'|(?P<string>"(?:[^"\n]|"")*")'
    r"|(?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(?=\s|$)"
    r"|(?P<flag><[A-Za-z]+>)"
    r"|(?P<index>\[[ \t]*\d*[ \t]*\])"
    r"|(?P<label>[A-Za-z]+)"
    r"|(?P<separator>[=:?])"
    r"|(?P<other>[^\n]+?(?=\s|$))"
)
_TEXTGRID_LABELS = frozenset(
    "File type Object class xmin xmax tiers size item intervals points text name number mark "
    "time".split()
)


@dataclass(frozen=True)
class _Value:
    kind: str  # "string", "number" or "flag"
    text: str
    line: int


def parse_textgrid(text: str, source: str) -> list[Tier]:
    """The tiers of a Praat TextGrid in the long or short text format.

    Strings are in double quotes with ``""`` for a quote and may not span lines. Interval
    tiers keep their intervals; point tiers (``TextTier``) are returned without them. Raises
    ``TextGridError`` naming ``source:line`` for anything that is not a TextGrid.
    """
    values = _ValueReader(_textgrid_values(text, source), source)
    file_type = values.string("the file type")
    if not file_type.startswith("ooTextFile"):
        values.fail(f"not a Praat text file (file type {file_type!r})")
    object_class = values.string("the object class")
    if object_class != "TextGrid":
        values.fail(f"object class is {object_class!r}, expected 'TextGrid'")
    values.number("the TextGrid's xmin")
    values.number("the TextGrid's xmax")
    exists = values.flag("<exists> or <absent>")
    if exists not in ("<exists>", "<absent>"):
        values.fail(f"expected <exists> or <absent>, found {exists}")
    num_tiers = values.count("the number of tiers") if exists == "<exists>" else 0
    tiers = [_read_tier(values) for _ in range(num_tiers)]
    values.expect_end()
    return tiers


def _read_tier(values: _ValueReader) -> Tier:
    kind = values.string("a tier class")
    line = values.line
    name = values.string("the tier name")
    values.number(f"xmin of tier {name!r}")
    values.number(f"xmax of tier {name!r}")
    size = values.count(f"the size of tier {name!r}")
    if kind == "IntervalTier":
        intervals = []
        for number in range(1, size + 1):
            what = f"interval {number} of tier {name!r}"
            start = values.number(f"xmin of {what}")
            end = values.number(f"xmax of {what}")
            if end < start:
                values.fail(f"{what} ends ({end}) before it starts ({start})")
            text = values.string(f"the text of {what}")
            intervals.append(Interval(start, end, text, values.line))
        return Tier(name, kind, tuple(intervals), line)
    if kind == "TextTier":
        for number in range(1, size + 1):
            values.number(f"the time of point {number} of tier {name!r}")
            values.string(f"the mark of point {number} of tier {name!r}")
        return Tier(name, kind, (), line)
    values.fail(f"unknown tier class {kind!r}, expected 'IntervalTier' or 'TextTier'")
    raise AssertionError("unreachable")


def _textgrid_values(text: str, source: str) -> list[_Value]:
    if text.startswith("ooBinaryFile"):
        raise TextGridError(f"{source}:1: binary TextGrids are not supported; save it as text")
    values: list[_Value] = []
    line = 1
    for match in _TEXTGRID_TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "newline":
            line += 1
        elif kind in ("string", "number", "flag"):
            values.append(_Value(kind, match.group(), line))
        elif kind == "label" and match.group() not in _TEXTGRID_LABELS:
            raise TextGridError(f"{source}:{line}: unexpected word {match.group()!r}")
        elif kind == "other":
            found = match.group()
            why = "unterminated string" if found.startswith('"') else f"unreadable {found!r}"
            raise TextGridError(f"{source}:{line}: {why}")
    return values


class _ValueReader:
    """Reads the value stream in order; every error names the line of the offending value."""

    def __init__(self, values: list[_Value], source: str) -> None:
        self._values = values
        self._pos = 0
        self.source = source
        self.line = values[0].line if values else 1

    def fail(self, message: str) -> None:
        raise TextGridError(f"{self.source}:{self.line}: {message}")

    def _next(self, kind: str, what: str) -> str:
        if self._pos >= len(self._values):
            self.fail(f"file ends where {what} was expected")
        value = self._values[self._pos]
        self._pos += 1
        self.line = value.line
        if value.kind != kind:
            self.fail(f"expected {what} ({kind}), found {value.kind} {value.text}")
        return value.text

    def string(self, what: str) -> str:
        return self._next("string", what)[1:-1].replace('""', '"')

    def number(self, what: str) -> float:
        return float(self._next("number", what))

    def count(self, what: str) -> int:
        number = self.number(what)
        if number < 0 or number != int(number):
            self.fail(f"{what} must be a whole number, found {number}")
        return int(number)

    def flag(self, what: str) -> str:
        return self._next("flag", what)

    def expect_end(self) -> None:
        if self._pos < len(self._values):
            value = self._values[self._pos]
            self.line = value.line
            self.fail(f"unexpected {value.kind} {value.text} after the last tier")


def read_textgrid(path: str | Path, encoding: str = "latin-1") -> list[Tier]:
    """``parse_textgrid`` of a file, gzip-compressed if its name ends in ``.gz``.

    A byte-order mark (UTF-8 or UTF-16, as Praat writes for non-Latin text) overrides
    ``encoding``, which is Latin-1 for the CGN transcripts.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as exc:
        raise TextGridError(f"{path}:1: cannot read the file ({exc})") from exc
    return parse_textgrid(_decode(data, encoding, path), str(path))


def _decode(data: bytes, encoding: str, path: Path) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif data.startswith(b"\xef\xbb\xbf"):
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TextGridError(f"{path}:{line}: not valid {encoding} ({exc.reason})") from exc


# --------------------------------------------------------------------------------------------
# Transcript conventions

_CODED_WORD = re.compile(r"(?P<word>.*?)\*(?P<code>[A-Za-z])(?P<tail>[^\w*]*)")
_EDGE_PUNCTUATION = ".,!?;:\"'()[]…"
_REMOVED_WORDS = frozenset({"ggg", "xxx"})


def strip_cgn_markers(text: str) -> tuple[str, Counter[str]]:
    """The transcript with CGN annotation resolved (rules: module docstring), and what it had.

    The counter has ``ggg``, ``xxx`` and ``*a`` for removed tokens and ``*<code>`` for each
    code suffix stripped from a kept word. Punctuation is left for ``normalise`` to remove.
    """
    kept: list[str] = []
    found: Counter[str] = Counter()
    for token in text.split():
        coded = _CODED_WORD.fullmatch(token)
        if coded:
            code = coded["code"].lower()
            found[f"*{code}"] += 1
            if code != "a" and (word := coded["word"] + coded["tail"]):
                kept.append(word)
            continue
        if token.strip(_EDGE_PUNCTUATION).lower() in _REMOVED_WORDS:
            found[token.strip(_EDGE_PUNCTUATION).lower()] += 1
            continue
        kept.append(token)
    return " ".join(kept), found


# --------------------------------------------------------------------------------------------
# Speaker metadata


class CgnMetadataError(ValueError):
    """``speakers.txt`` that cannot be read; the message starts with ``file:line``."""


@dataclass(frozen=True)
class CgnSpeaker:
    id: str
    gender: str | None  # "m", "f" or None (sexX or missing)
    birth_year: int | None


_SEXES = {"sex1": "m", "sex2": "f"}


def read_speakers(path: str | Path, encoding: str = "latin-1") -> dict[str, CgnSpeaker]:
    """Speakers of ``speakers.txt`` by ID, from its ``ID``, ``sex`` and ``birthYear`` columns.

    Columns are found by their header names, so their order and any other columns do not
    matter; ``sex`` and ``birthYear`` may be absent.
    """
    path = Path(path)
    try:
        lines = path.read_bytes().decode(encoding).splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CgnMetadataError(f"{path}:1: cannot read the speaker table ({exc})") from exc
    if not lines:
        raise CgnMetadataError(f"{path}:1: empty file, expected a header row with an ID column")
    header = [name.strip().lstrip("\ufeff") for name in lines[0].split("\t")]
    if "ID" not in header:
        raise CgnMetadataError(f"{path}:1: no 'ID' column in the header; columns: {header}")
    column = {name: i for i, name in enumerate(header)}
    speakers: dict[str, CgnSpeaker] = {}
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) <= column["ID"]:
            raise CgnMetadataError(
                f"{path}:{line_no}: {len(fields)} tab-separated fields, "
                f"but the ID is column {column['ID'] + 1} of {len(header)}"
            )

        def get(name: str, fields: list[str] = fields) -> str:
            index = column.get(name)
            return fields[index] if index is not None and index < len(fields) else ""

        year = get("birthYear")
        speakers[get("ID")] = CgnSpeaker(
            get("ID"), _SEXES.get(get("sex")), int(year) if year.isdigit() else None
        )
    return speakers


# --------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class CgnOptions:
    """What ``prepare_cgn`` reads from ``corpus_config`` (keys named like the fields).

    - ``root``: the corpus folder holding ``data/`` (required).
    - ``name``: corpus name, prefixed to ids and speakers (default ``cgn``).
    - ``components``: letters ``a``–``o``, or ``all`` (default).
    - ``region``: ``vl``, ``nl`` or ``both`` (default ``vl``).
    - ``telephone``: ``drop`` (default) leaves components c and d out (8 kHz telephone
      speech; listing them explicitly is then an error), ``resample`` keeps them, upsampled
      to 16 kHz on loading. To keep telephone speech apart, make it a corpus of its own
      with ``components: [c, d]`` and ``telephone: resample``.
    - ``domain``: ``custom.domain`` for every utterance; default: the component's
      (``COMPONENTS``).
    - ``language``: supervision language (default ``nl``).
    - ``dev_fraction``, ``test_fraction``: by duration, speaker-disjoint (default 0.1 each).
    - ``on_error``: ``strict`` (default) raises on a malformed transcript, a missing or an
      unreadable audio file; ``skip`` leaves that recording out and counts it in the report.
    - ``encoding``: of transcripts and ``speakers.txt`` (default ``latin-1``).
    """

    root: Path
    name: str = "cgn"
    components: tuple[str, ...] = tuple(COMPONENTS)
    regions: tuple[str, ...] = ("vl",)
    telephone: str = "drop"
    domain: str | None = None
    language: str = "nl"
    dev_fraction: float = 0.1
    test_fraction: float = 0.1
    on_error: str = "strict"
    encoding: str = "latin-1"
    excluded_components: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CgnOptions:
        if "root" not in config:
            raise ValueError("cgn corpus config needs 'root': the folder that holds data/")
        telephone = config.get("telephone", "drop")
        if telephone not in ("drop", "resample"):
            raise ValueError(f"cgn telephone: {telephone!r}; expected 'drop' or 'resample'")
        on_error = config.get("on_error", "strict")
        if on_error not in ("strict", "skip"):
            raise ValueError(f"cgn on_error: {on_error!r}; expected 'strict' or 'skip'")
        components, excluded = _components(config.get("components", "all"), telephone)
        dev, test = float(config.get("dev_fraction", 0.1)), float(config.get("test_fraction", 0.1))
        check_fractions(dev, test)
        return cls(
            root=Path(config["root"]),
            name=config.get("name", "cgn"),
            components=components,
            regions=_regions(config.get("region", "vl")),
            telephone=telephone,
            domain=config.get("domain"),
            language=config.get("language", "nl"),
            dev_fraction=dev,
            test_fraction=test,
            on_error=on_error,
            encoding=config.get("encoding", "latin-1"),
            excluded_components=excluded,
        )


def _components(
    wanted: str | Sequence[str], telephone: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The components to read and those left out as telephone speech."""
    if wanted == "all":
        letters = list(COMPONENTS)
        excluded = sorted(TELEPHONE_COMPONENTS) if telephone == "drop" else []
        return tuple(c for c in letters if c not in excluded), tuple(excluded)
    letters = [wanted] if isinstance(wanted, str) else list(wanted)
    unknown = [c for c in letters if c not in COMPONENTS]
    if unknown:
        raise ValueError(f"cgn components {unknown} unknown; expected letters a-o or 'all'")
    telephone_listed = sorted(set(letters) & TELEPHONE_COMPONENTS)
    if telephone_listed and telephone == "drop":
        raise ValueError(
            f"cgn components {telephone_listed} are 8 kHz telephone speech; "
            "set telephone: resample to use them, or leave them out"
        )
    return tuple(sorted(set(letters))), ()


def _regions(wanted: str | Sequence[str]) -> tuple[str, ...]:
    if wanted == "both":
        regions = list(REGIONS)
    else:
        regions = [wanted] if isinstance(wanted, str) else list(wanted)
    unknown = [r for r in regions if r not in REGIONS]
    if unknown or not regions:
        raise ValueError(f"cgn region {wanted!r}; expected 'vl', 'nl' or 'both'")
    return tuple(r for r in REGIONS if r in regions)


# --------------------------------------------------------------------------------------------
# The recipe


@dataclass(frozen=True)
class _Annotation:
    component: str
    region: str
    stem: str
    ort: Path
    wav: Path


@dataclass
class _Findings:
    """Everything counted on the way, for the report."""

    files_read: int = 0
    speaker_tiers: int = 0
    non_speech_tiers: int = 0
    empty_intervals: int = 0
    markers: Counter[str] = field(default_factory=Counter)
    empty_text: Tally = field(default_factory=Tally)
    zero_length: Tally = field(default_factory=Tally)
    clipped_to_audio: Tally = field(default_factory=Tally)
    beyond_audio: Tally = field(default_factory=Tally)
    bad_annotation: Tally = field(default_factory=Tally)
    missing_audio: Tally = field(default_factory=Tally)
    bad_audio: Tally = field(default_factory=Tally)
    audio_without_annotation: Tally = field(default_factory=Tally)
    duplicate_annotation: Tally = field(default_factory=Tally)
    speakers_without_metadata: set[str] = field(default_factory=set)
    missing_folders: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _reportable(getattr(self, f.name)) for f in fields(self)}


def _reportable(value: Any) -> Any:
    if isinstance(value, Tally):
        return value.to_dict()
    if isinstance(value, Counter):
        return dict(sorted(value.items()))
    if isinstance(value, set):
        return sorted(value)
    return value


@dataclass(frozen=True)
class _Utterance:
    recording: Recording
    supervision: SupervisionSegment


def prepare_cgn(
    corpus_config: Mapping[str, Any],
    audio_dir: str | Path,
    manifest_dir: str | Path,
    seed: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Build CGN manifests from a local copy; return the report also written as JSON.

    ``corpus_config`` holds the options of ``CgnOptions``. ``audio_dir`` is not written to:
    cuts point at the corpus' own WAV files (resampled on loading where not 16 kHz), so
    hundreds of hours need no second copy. ``manifest_dir`` receives
    ``cuts_{train,dev,test}.jsonl.gz`` and ``report.json``.

    Ids: recording ``<name>-<stem>``; utterance ``<name>-<stem>-<tier>-<interval number>``
    (the interval's number within its tier, counted from 1 as Praat does); speaker
    ``<name>-<tier>``, except that an ``UNKNOWN`` tier is a speaker of its own recording only
    (``<name>-<stem>-UNKNOWN``), since it is not one person across the corpus. Supervisions
    carry ``gender`` from ``speakers.txt`` and in ``custom``: ``translation`` (``None``: CGN
    has none), ``orig_text``, ``domain``, ``region`` (the folder's), ``component``,
    ``corpus`` and ``birth_year``.
    """
    del audio_dir  # cuts reference the corpus audio in place
    options = CgnOptions.from_config(corpus_config)
    manifest_dir = Path(manifest_dir)
    speakers = read_speakers(options.root / "data/meta/text/speakers.txt", options.encoding)
    findings = _Findings()
    annotations = _find_annotations(options, findings)

    utterances: list[_Utterance] = []
    for annotation in tqdm(annotations, desc="cgn transcripts", disable=not progress):
        utterances += _read_recording(annotation, options, speakers, findings)
    if not utterances:
        raise ValueError(f"{options.root}: no usable utterance in {len(annotations)} transcripts")

    durations: dict[str, float] = defaultdict(float)
    for utt in utterances:
        durations[utt.supervision.speaker] += utt.supervision.duration
    # split_levels deals whole groups out by duration; here every speaker is a group.
    assignment = split_levels(durations, options.dev_fraction, options.test_fraction, seed)

    report: dict[str, Any] = {
        "corpus": options.name,
        "recipe": "cgn",
        "root": str(options.root),
        "language": options.language,
        "components": list(options.components),
        "excluded_components": list(options.excluded_components),
        "regions": list(options.regions),
        "telephone": options.telephone,
        "on_error": options.on_error,
        "seed": seed,
        "dev_fraction": options.dev_fraction,
        "test_fraction": options.test_fraction,
        "splits": {},
    }
    cuts = [cut_for_supervision(u.recording, u.supervision) for u in utterances]
    check_unique_ids(cuts, str(options.root))
    for split in SPLITS:
        members = sorted(
            (c for c in cuts if assignment[c.supervisions[0].speaker] == split),
            key=lambda c: c.id,
        )
        write_split_cuts(members, split, manifest_dir)
        report["splits"][split] = split_summary(members)
    report.update(findings.to_dict())
    write_report(report, manifest_dir)
    _warn_about(findings)
    return report


def _find_annotations(options: CgnOptions, findings: _Findings) -> list[_Annotation]:
    """The transcripts of the chosen components and regions, with their audio paths."""
    annotations: list[_Annotation] = []
    for component in options.components:
        for region in options.regions:
            ort_dir = options.root / f"data/annot/text/ort/comp-{component}/{region}"
            wav_dir = options.root / f"data/audio/wav/comp-{component}/{region}"
            if not ort_dir.is_dir():
                # Not every component was recorded in both regions.
                findings.missing_folders.append(str(ort_dir))
                continue
            by_stem: dict[str, Path] = {}
            for ort in sorted([*ort_dir.glob("*.ort"), *ort_dir.glob("*.ort.gz")]):
                stem = ort.name.removesuffix(".gz").removesuffix(".ort")
                if stem in by_stem:
                    findings.duplicate_annotation.add(f"{ort} (using {by_stem[stem]})")
                    continue
                by_stem[stem] = ort
            for stem, ort in sorted(by_stem.items()):
                annotations.append(
                    _Annotation(component, region, stem, ort, wav_dir / f"{stem}.wav")
                )
            if wav_dir.is_dir():
                for wav in sorted(wav_dir.glob("*.wav")):
                    if wav.stem not in by_stem:
                        findings.audio_without_annotation.add(str(wav))
    if not annotations:
        raise ValueError(
            f"{options.root}: no transcripts for components {list(options.components)} and "
            f"regions {list(options.regions)}; expected "
            "data/annot/text/ort/comp-<c>/<region>/*.ort or *.ort.gz"
        )
    return annotations


def _read_recording(
    annotation: _Annotation,
    options: CgnOptions,
    speakers: Mapping[str, CgnSpeaker],
    findings: _Findings,
) -> list[_Utterance]:
    """The utterances of one transcript; problems raise or are counted (``on_error``)."""
    try:
        tiers = read_textgrid(annotation.ort, options.encoding)
        recording = _recording(annotation, f"{options.name}-{annotation.stem}")
    except (TextGridError, AudioError) as exc:
        if options.on_error == "strict":
            raise
        if isinstance(exc, TextGridError):
            findings.bad_annotation.add(str(exc))
        elif isinstance(exc, _MissingAudioError):
            findings.missing_audio.add(str(exc))
        else:
            findings.bad_audio.add(str(exc))
        return []
    findings.files_read += 1
    utterances = []
    for tier in tiers:
        if tier.name.strip() in NON_SPEAKER_TIERS or tier.kind != "IntervalTier":
            findings.non_speech_tiers += 1
            continue
        findings.speaker_tiers += 1
        utterances += _tier_utterances(tier, recording, annotation, options, speakers, findings)
    return utterances


class _MissingAudioError(AudioError):
    pass


def _recording(annotation: _Annotation, recording_id: str) -> Recording:
    if not annotation.wav.is_file():
        raise _MissingAudioError(f"{annotation.ort}: no audio file {annotation.wav}")
    try:
        recording = Recording.from_file(annotation.wav, recording_id=recording_id)
    except Exception as exc:  # Lhotse raises whatever its audio backend raised
        raise AudioError(f"{annotation.wav}: cannot read audio ({exc})") from exc
    if recording.num_samples == 0:
        raise AudioError(f"{annotation.wav}: zero-length audio")
    return recording


def _tier_utterances(
    tier: Tier,
    recording: Recording,
    annotation: _Annotation,
    options: CgnOptions,
    speakers: Mapping[str, CgnSpeaker],
    findings: _Findings,
) -> Iterable[_Utterance]:
    tier_name = re.sub(r"[^\w-]", "_", tier.name.strip())
    if tier_name.upper().startswith("UNKNOWN"):
        speaker_id = f"{options.name}-{annotation.stem}-{tier_name}"
        metadata = None
    else:
        speaker_id = f"{options.name}-{tier_name}"
        metadata = speakers.get(tier.name.strip())
        if metadata is None:
            findings.speakers_without_metadata.add(tier.name.strip())
    for number, interval in enumerate(tier.intervals, start=1):
        where = f"{annotation.ort}:{interval.line}"
        if not interval.text.strip():
            findings.empty_intervals += 1
            continue
        if interval.start >= recording.duration:
            findings.beyond_audio.add(f"{where}: starts at {interval.start} s, audio ends earlier")
            continue
        end = min(interval.end, recording.duration)
        if interval.end > recording.duration + 1e-3:
            findings.clipped_to_audio.add(f"{where}: ends at {interval.end} s")
        if end - interval.start <= 0:
            findings.zero_length.add(where)
            continue
        kept, markers = strip_cgn_markers(interval.text)
        findings.markers.update(markers)
        text = normalise(kept)
        utt_id = f"{recording.id}-{tier_name}-{number:04d}"
        if not text:
            findings.empty_text.add({"id": utt_id, "orig_text": interval.text})
            continue
        supervision = SupervisionSegment(
            id=utt_id,
            recording_id=recording.id,
            start=round(interval.start, 6),
            duration=round(end - interval.start, 6),
            channel=0,
            text=text,
            language=options.language,
            speaker=speaker_id,
            gender=metadata.gender if metadata else None,
            custom={
                "translation": None,
                "orig_text": interval.text,
                "domain": options.domain or COMPONENTS[annotation.component],
                "region": annotation.region,
                "component": annotation.component,
                "corpus": options.name,
                "birth_year": metadata.birth_year if metadata else None,
            },
        )
        yield _Utterance(recording, supervision)


def _warn_about(findings: _Findings) -> None:
    for what, tally in (
        ("utterances whose text is empty once markers are removed", findings.empty_text),
        ("intervals beyond the end of their audio", findings.beyond_audio),
        ("transcripts that could not be read", findings.bad_annotation),
        ("transcripts without audio", findings.missing_audio),
        ("unreadable audio files", findings.bad_audio),
    ):
        if tally.count:
            log.warning("%d %s (listed in report.json)", tally.count, what)
