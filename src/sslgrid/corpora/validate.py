"""Bad input in a corpus' manifests and audio: repaired where that is safe, otherwise refused.

``validate_cuts`` inspects every cut of a ``CutSet`` (reading its audio once) and returns the
usable cuts with the repairs applied, plus a report of everything it changed or set aside.
The features stage runs the same audio checks through ``CutValidator`` while it reads each
clip, so the data report and the feature caches agree on what is left out.

**Repairs** (applied under either policy, counted under ``repaired`` in the report):

- ``resampled``: audio not at 16 kHz (8 kHz telephone, 44.1/48 kHz) gets Lhotse's resampling
  transform; counted also when the manifest already resamples it.
- ``downmixed``: a cut that reads several channels is averaged to mono by the reader.
- ``trimmed``: a cut (and its supervisions) that runs past the end of its audio file ends at
  the end of the file; an untranscribed cut longer than ``max_seconds`` is cut to that length.
- ``recording_length_fixed``: the manifest's recording length disagrees with the file's.
- ``text_normalised``: a transcript that is not in normalised form (stray whitespace, control
  characters, capitals, punctuation) is passed through ``sslgrid.text.normalise``.
- ``markers_removed``: non-speech markers (``<unk>``, ``[noise]``, ``{laugh}``, CGN's ``ggg``
  and ``xxx``) are taken out of a transcript that has words besides them.
- ``encoding_repaired``: UTF-8 text that was decoded as Latin-1/Windows-1252 (``cafÃ©``) is
  decoded again (``café``).

**Problems** (``strict``: ``ValidationError`` naming the file, cut and what was expected;
``skip``: the cut is dropped and counted under ``skipped``): ``duplicate_id``, ``no_audio``
(a cut without a recording, or a supervision of another recording), ``missing_audio``,
``empty_file`` (0 bytes), ``unreadable_audio`` (undecodable), ``zero_length`` (no samples),
``beyond_audio`` (the cut starts after its file ends), ``too_long`` (a transcribed cut longer
than ``max_seconds``: trimming would cut words off their text), ``non_finite`` (NaN/inf
samples), ``silent`` (RMS below ``silence_dbfs``), ``clipped`` (more than
``max_clipped_fraction`` of the samples in flat tops: 3 or more consecutive samples at full
scale), ``empty_text``, ``only_markers``, ``bad_encoding`` (U+FFFD replacement characters: the
original bytes are lost) and ``oov_characters`` (characters outside ``vocabulary``, when one
is given).

**Noted** (kept, counted under ``noted``): ``some_clipping``, clipping below the limit; it
cannot be undone and a little of it does not hurt recognition.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.serialization import deserialize_item
from lhotse.utils import compute_num_samples, fastcopy

from sslgrid.corpora.manifests import Tally
from sslgrid.text import normalise

__all__ = [
    "POLICIES",
    "AudioLimits",
    "CutValidator",
    "ValidationError",
    "check_config_paths",
    "check_pretrain_amounts",
    "read_cuts",
    "summary_line",
    "validate_cuts",
    "validation_settings",
]

POLICIES = ("strict", "skip")
SAMPLE_RATE = 16000


class ValidationError(ValueError):
    """Bad input under the ``strict`` policy; the message names the file, cut and problem."""


@dataclass(frozen=True)
class AudioLimits:
    """What counts as bad audio (defaults: ``validation`` in config.yaml)."""

    max_seconds: float | None = 60.0
    silence_dbfs: float = -60.0
    clip_level: float = 0.999
    max_clipped_fraction: float = 0.01


def validation_settings(config: Mapping[str, Any]) -> tuple[str, AudioLimits]:
    """Policy and limits from a loaded config's ``validation`` section (defaults if absent)."""
    section = dict(config.get("validation") or {})
    policy = section.pop("on_error", "skip")
    if policy not in POLICIES:
        raise ValueError(f"validation.on_error: {policy!r}; expected one of {list(POLICIES)}")
    known = set(AudioLimits.__dataclass_fields__) - {"clip_level"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in validation; allowed keys: {sorted(known)}")
    return policy, AudioLimits(**section)


@dataclass
class Checked:
    """One checked cut: repaired, with its mono 16 kHz audio when read; or why it was skipped."""

    cut: Cut
    audio: np.ndarray | None = None
    native_rate: int | None = None
    channels: int | None = None
    # "<code>: <what is wrong>" for a cut left out under ``skip``; None for a usable cut.
    problem: str | None = None


class _Problem(Exception):
    """A cut that cannot be used: its kind (``code``), where it is and what is wrong."""

    def __init__(self, code: str, where: str, message: str) -> None:
        super().__init__(message)
        self.code, self.where, self.message = code, where, message


@dataclass
class _Header:
    """What the file's header says, or why it could not be read."""

    sampling_rate: int = 0
    channels: int = 0
    frames: int = 0
    error: str | None = None


# Seconds by which a manifest may disagree with its audio file before it is repaired: Lhotse's
# own tolerance (it pads or cuts that much when it loads), and more than the few milliseconds
# that headers of lossy formats (MP3) are off by.
_LENGTH_TOLERANCE = 0.025
_MARKERS = re.compile(r"<[^<>]*>|\[[^\[\]]*\]|\{[^{}]*\}")
_MARKER_WORDS = frozenset({"ggg", "xxx"})
_EDGE_PUNCTUATION = ".,;:!?\"'()"


class CutValidator:
    """Checks cuts one at a time, applying ``policy``; keeps the tallies for the report.

    ``check_text=False`` checks audio and references only (the features stage).
    """

    def __init__(
        self,
        policy: str = "skip",
        limits: AudioLimits | None = None,
        vocabulary: Iterable[str] | None = None,
        check_text: bool = True,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"validation policy {policy!r}; expected one of {list(POLICIES)}")
        self.policy = policy
        self.limits = limits or AudioLimits()
        self.vocabulary = None if vocabulary is None else frozenset(vocabulary) | {" "}
        self.check_text = check_text
        self.seen: dict[str, str] = {}
        self.skipped: dict[str, Tally] = {}
        self.repaired: dict[str, Tally] = {}
        self.noted: dict[str, Tally] = {}
        self.sample_rates: Counter[int] = Counter()
        self.channels: Counter[int] = Counter()  # channels read per cut, before downmixing
        self.cuts_in = 0
        self.cuts_kept = 0
        self.seconds_kept = 0.0
        # Audio of cuts skipped for their text only: still usable as untranscribed audio.
        self.seconds_text_only = 0.0
        self._headers: dict[str, _Header] = {}

    # -- the checks ----------------------------------------------------------------------

    def check(self, cut: Cut) -> Checked:
        """The repaired cut, or (``skip``) why it is left out; raises under ``strict``."""
        self.cuts_in += 1
        try:
            checked = self._check(cut)
        except _Problem as problem:
            message = f"{problem.where}: {problem.message}"
            if self.policy == "strict":
                raise ValidationError(message) from None
            self.skipped.setdefault(problem.code, Tally()).add(
                {"id": cut.id, "file": _file_of(cut), "problem": problem.message}
            )
            return Checked(cut, problem=f"{problem.code}: {problem.message}")
        self.cuts_kept += 1
        self.seconds_kept += checked.cut.duration
        return checked

    def _check(self, cut: Cut) -> Checked:
        where = f"{_file_of(cut) or '<no audio>'} (cut {cut.id})"
        self._check_id(cut, where)
        self._check_references(cut, where)
        cut, header = self._check_header(cut, where)
        cut = self._check_rate_and_length(cut, header, where)
        audio, channels = self._check_samples(cut, header, where)
        if header.error is None:
            self.sample_rates[header.sampling_rate] += 1
        self.channels[channels] += 1
        if self.check_text:
            try:
                cut = self._check_text(cut, where)
            except _Problem:
                self.seconds_text_only += cut.duration
                raise
        native = header.sampling_rate if header.error is None else None
        return Checked(cut, audio, native, channels)

    def _check_id(self, cut: Cut, where: str) -> None:
        if cut.id in self.seen:
            raise _Problem(
                "duplicate_id",
                where,
                f"cut id {cut.id!r} appears twice (first with {self.seen[cut.id]}); "
                "expected unique ids",
            )
        self.seen[cut.id] = _file_of(cut) or "<no audio>"

    def _check_references(self, cut: Cut, where: str) -> None:
        if not cut.has_recording or not cut.recording.sources:
            raise _Problem("no_audio", where, "the cut references no audio; expected a recording")
        for sup in cut.supervisions:
            if sup.recording_id != cut.recording_id:
                raise _Problem(
                    "no_audio",
                    where,
                    f"supervision {sup.id!r} belongs to recording {sup.recording_id!r}, not to "
                    f"the cut's recording {cut.recording_id!r}",
                )
        if cut.duration <= 0:
            raise _Problem(
                "zero_length", where, f"cut duration {cut.duration} s; expected more than 0"
            )

    def _check_header(self, cut: Cut, where: str) -> tuple[Cut, _Header]:
        """Missing, empty and zero-length files; cuts past the end of their file."""
        path = _file_of(cut)
        if path is None:  # not a plain file (URL, command, memory): Lhotse reads it below
            return cut, _Header(error="not a file source")
        header = self._header(path)
        if header.error == "missing":
            raise _Problem("missing_audio", where, "no such audio file; expected it on disk")
        if header.error == "empty":
            raise _Problem("empty_file", where, "empty file (0 bytes); expected audio")
        if header.error is not None:
            return cut, header  # Lhotse may still read it (other backends); else unreadable
        if header.frames == 0:
            raise _Problem(
                "zero_length", where, "zero-length audio (0 samples in the file); expected audio"
            )
        file_seconds = header.frames / header.sampling_rate
        if cut.start >= file_seconds:
            raise _Problem(
                "beyond_audio",
                where,
                f"the cut starts at {cut.start:.3f} s but the audio file ends at "
                f"{file_seconds:.3f} s",
            )
        recording = cut.recording
        if abs(recording.duration - file_seconds) > _LENGTH_TOLERANCE:
            self._repair(
                "recording_length_fixed",
                cut,
                f"manifest says {recording.duration:.3f} s, the file has {file_seconds:.3f} s",
            )
            recording = fastcopy(
                recording,
                duration=file_seconds,
                num_samples=compute_num_samples(file_seconds, recording.sampling_rate),
            )
            cut = fastcopy(cut, recording=recording)
        if cut.end > file_seconds + _LENGTH_TOLERANCE:
            self._repair(
                "trimmed",
                cut,
                f"ended at {cut.end:.3f} s, past the end of the audio ({file_seconds:.3f} s)",
            )
            cut = _truncate(cut, file_seconds - cut.start)
        return cut, header

    def _header(self, path: str) -> _Header:
        if path not in self._headers:
            file = Path(path)
            if not file.is_file():
                header = _Header(error="missing")
            elif file.stat().st_size == 0:
                header = _Header(error="empty")
            else:
                try:
                    info = sf.info(path)
                    header = _Header(info.samplerate, info.channels, info.frames)
                except (sf.LibsndfileError, RuntimeError) as err:
                    header = _Header(error=str(err))
            # A long recording holds many cuts (CGN); read its header once.
            if len(self._headers) > 10000:
                self._headers.clear()
            self._headers[path] = header
        return self._headers[path]

    def _check_rate_and_length(self, cut: Cut, header: _Header, where: str) -> Cut:
        native = header.sampling_rate if header.error is None else cut.sampling_rate
        if native != SAMPLE_RATE or cut.sampling_rate != SAMPLE_RATE:
            self._repair("resampled", cut, f"{native} Hz to {SAMPLE_RATE} Hz")
            if cut.sampling_rate != SAMPLE_RATE:
                cut = cut.resample(SAMPLE_RATE)
        limit = self.limits.max_seconds
        if limit is not None and cut.duration > limit:
            if any((s.text or "").strip() for s in cut.supervisions):
                raise _Problem(
                    "too_long",
                    where,
                    f"{cut.duration:.1f} s with a transcript; expected at most {limit:g} s "
                    "(validation.max_seconds)",
                )
            self._repair("trimmed", cut, f"{cut.duration:.1f} s cut to {limit:g} s")
            cut = _truncate(cut, limit)
        return cut

    def _check_samples(self, cut: Cut, header: _Header, where: str) -> tuple[np.ndarray, int]:
        """Read the cut's audio once: decodability, NaN/inf, channels, silence, clipping."""
        try:
            samples = np.atleast_2d(cut.load_audio())
        except Exception as err:
            # libsndfile's reason is clearer than Lhotse's list of every backend it tried.
            reason = header.error if header.error and _file_of(cut) else _first_line(err)
            raise _Problem(
                "unreadable_audio",
                where,
                f"cannot decode audio ({reason}); expected a readable audio file",
            ) from None
        if samples.shape[-1] == 0:
            raise _Problem("zero_length", where, "zero-length audio (no samples decoded)")
        if not np.isfinite(samples).all():
            bad = int((~np.isfinite(samples)).sum())
            raise _Problem(
                "non_finite", where, f"{bad} NaN or infinite samples; expected finite audio"
            )
        channels = samples.shape[0]
        if channels > 1:
            self._repair("downmixed", cut, f"{channels} channels averaged to mono")
        mono = samples.mean(axis=0, dtype=np.float32)
        rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64))))
        level = 20 * math.log10(rms) if rms > 0 else -math.inf
        if level < self.limits.silence_dbfs:
            raise _Problem(
                "silent",
                where,
                f"silent: RMS {level:.1f} dBFS; expected at least "
                f"{self.limits.silence_dbfs:g} dBFS (validation.silence_dbfs)",
            )
        clipped = _clipped_fraction(samples, self.limits.clip_level)
        if clipped > self.limits.max_clipped_fraction:
            raise _Problem(
                "clipped",
                where,
                f"clipped: {100 * clipped:.2f}% of the samples in flat tops at full scale; "
                f"expected at most {100 * self.limits.max_clipped_fraction:g}% "
                "(validation.max_clipped_fraction)",
            )
        if clipped > 0:
            self._note("some_clipping", cut, f"{100 * clipped:.3f}% of the samples in flat tops")
        return mono, channels

    def _check_text(self, cut: Cut, where: str) -> Cut:
        supervisions = []
        for sup in cut.supervisions:
            if sup.text is None:  # untranscribed audio is not a text problem
                supervisions.append(sup)
                continue
            supervisions.append(fastcopy(sup, text=self._clean_text(cut, sup.text, where)))
        return fastcopy(cut, supervisions=supervisions)

    def _clean_text(self, cut: Cut, text: str, where: str) -> str:
        if not text.strip():
            raise _Problem("empty_text", where, "empty transcript; expected words")
        if "\ufffd" in text:
            raise _Problem(
                "bad_encoding",
                where,
                f"transcript {text!r} holds U+FFFD replacement characters: it was decoded "
                "with the wrong encoding and the original bytes are lost; expected UTF-8 text",
            )
        fixed = _undo_mojibake(text)
        if fixed != text:
            self._repair("encoding_repaired", cut, f"{text!r} -> {fixed!r}")
            text = fixed
        without = _remove_markers(text)
        if without != " ".join(text.split()):
            if not without:
                raise _Problem(
                    "only_markers",
                    where,
                    f"transcript {text!r} holds only non-speech markers; expected words",
                )
            self._repair("markers_removed", cut, f"{text!r} -> {without!r}")
            text = without
        normalised = normalise(text)
        if not normalised:
            raise _Problem(
                "empty_text", where, f"transcript {text!r} normalises to nothing; expected words"
            )
        if normalised != text:
            self._repair("text_normalised", cut, f"{text!r} -> {normalised!r}")
        if self.vocabulary is not None:
            unknown = sorted(set(normalised) - self.vocabulary)
            if unknown:
                raise _Problem(
                    "oov_characters",
                    where,
                    f"characters {unknown} in {normalised!r} are not in the vocabulary",
                )
        return normalised

    def _repair(self, code: str, cut: Cut, detail: str) -> None:
        self.repaired.setdefault(code, Tally()).add({"id": cut.id, "detail": detail})

    def _note(self, code: str, cut: Cut, detail: str) -> None:
        self.noted.setdefault(code, Tally()).add({"id": cut.id, "detail": detail})

    # -- the report ----------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "limits": {
                "max_seconds": self.limits.max_seconds,
                "silence_dbfs": self.limits.silence_dbfs,
                "max_clipped_fraction": self.limits.max_clipped_fraction,
            },
            "cuts_in": self.cuts_in,
            "cuts_kept": self.cuts_kept,
            "hours_kept": round(self.seconds_kept / 3600, 4),
            "hours_usable_audio": round((self.seconds_kept + self.seconds_text_only) / 3600, 4),
            "skipped": _tallies(self.skipped),
            "repaired": _tallies(self.repaired),
            "noted": _tallies(self.noted),
            "sample_rates": {str(k): v for k, v in sorted(self.sample_rates.items())},
            "channels": {str(k): v for k, v in sorted(self.channels.items())},
        }


def validate_cuts(
    cuts: Iterable[Cut],
    policy: str = "skip",
    max_seconds: float | None = 60.0,
    vocabulary: Iterable[str] | None = None,
    limits: AudioLimits | None = None,
    check_text: bool = True,
) -> tuple[CutSet, dict[str, Any]]:
    """Every cut checked (module docstring): the usable ones, repaired, and the report.

    ``max_seconds`` overrides ``limits.max_seconds``. Under ``strict`` the first problem
    raises ``ValidationError``; under ``skip`` the cut is left out and counted.
    """
    limits = dataclasses.replace(limits or AudioLimits(), max_seconds=max_seconds)
    validator = CutValidator(policy, limits, vocabulary, check_text=check_text)
    kept = []
    for cut in cuts:
        checked = validator.check(cut)
        if checked.problem is None:
            kept.append(checked.cut)
    return CutSet.from_cuts(kept), validator.report()


def summary_line(report: Mapping[str, Any]) -> str:
    """One log line: how many cuts were kept, skipped (why) and repaired (how)."""

    def counts(section: str) -> str:
        items = report.get(section, {})
        return ", ".join(f"{k} {v['count']}" for k, v in items.items()) or "none"

    return (
        f"{report['cuts_kept']} of {report['cuts_in']} cuts kept; skipped: {counts('skipped')}; "
        f"repaired: {counts('repaired')}"
    )


# --------------------------------------------------------------------------------------------
# Manifest files


def read_cuts(path: str | Path, policy: str = "strict") -> tuple[CutSet, Tally]:
    """A cuts manifest (``.jsonl`` or ``.jsonl.gz``), line by line, errors as ``file:line``.

    A line that is not JSON, not valid UTF-8 or not a Lhotse cut raises ``ValidationError``
    under ``strict``; under ``skip`` it is left out and counted in the returned ``Tally``.
    """
    if policy not in POLICIES:
        raise ValueError(f"validation policy {policy!r}; expected one of {list(POLICIES)}")
    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"{path}: no such manifest file")
    opener = gzip.open if path.suffix == ".gz" else open
    cuts, bad = [], Tally()
    with opener(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                item = deserialize_item(json.loads(raw.decode("utf-8")))
                if not isinstance(item, Cut):
                    raise ValueError(f"found a {type(item).__name__}")
            except Exception as err:  # JSON, UTF-8 and Lhotse's own errors alike
                message = f"{path}:{number}: {_first_line(err)}; expected one Lhotse cut as JSON"
                if policy == "strict":
                    raise ValidationError(message) from err
                bad.add(message)
                continue
            cuts.append(item)
    return CutSet.from_cuts(cuts), bad


# --------------------------------------------------------------------------------------------
# Config checks that need the data or the file system


def check_pretrain_amounts(config: Mapping[str, Any], corpus: str, train_hours: float) -> list[str]:
    """``pretrain.amounts`` entries larger than ``corpus``' training audio, if it is a pool."""
    if corpus not in config.get("pretrain", {}).get("pools", []):
        return []
    return [
        f"pretrain.amounts.{i}: {amount:g} h is more than the training audio of pool "
        f"{corpus!r} ({train_hours:.3f} h after validation); expected at most that or 'all'"
        for i, amount in enumerate(config["pretrain"]["amounts"])
        if amount != "all" and float(amount) > train_hours + 1e-9
    ]


_PATH_KEYS = ("root", "covost", "translation_root", "annotations")


def check_config_paths(
    config: Mapping[str, Any], corpora: Iterable[str] | None = None
) -> list[str]:
    """Local paths in the config that do not exist, each named by its key."""
    problems = []
    names = config.get("corpora", {}) if corpora is None else corpora
    for name in names:
        entry = config["corpora"][name]
        for key in _PATH_KEYS:
            if key in entry and not Path(entry[key]).exists():
                problems.append(f"corpora.{name}.{key}: {entry[key]} does not exist")
    for name, entry in config.get("imported", {}).items():
        if not Path(entry["path"]).exists():
            problems.append(
                f"imported.{name}.path: {entry['path']} does not exist; expected a Hugging Face "
                "wav2vec 2.0 directory or a fairseq .pt file"
            )
    return problems


# --------------------------------------------------------------------------------------------
# Helpers


def _file_of(cut: Cut) -> str | None:
    """The audio file of a cut with a single file source, else None."""
    if not cut.has_recording:
        return None
    sources = cut.recording.sources
    if len(sources) == 1 and sources[0].type == "file":
        return str(sources[0].source)
    return None


def _truncate(cut: Cut, duration: float) -> Cut:
    """``cut`` ending after ``duration`` seconds; supervisions clipped to it."""
    supervisions = [
        fastcopy(s, duration=min(s.duration, duration - s.start))
        for s in cut.supervisions
        if s.start < duration
    ]
    return fastcopy(cut, duration=duration, supervisions=supervisions)


def _clipped_fraction(samples: np.ndarray, level: float, min_run: int = 3) -> float:
    """Share of samples in runs of ``min_run`` or more at full scale.

    A lone full-scale sample is a peak-normalised recording touching 0 dBFS, not clipping
    (a third of the embedded corpus' clips have one); flat tops of several samples are.
    """
    in_runs = 0
    for channel in samples:
        edges = np.diff(np.concatenate([[0], (np.abs(channel) >= level).astype(np.int8), [0]]))
        lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        in_runs += int(lengths[lengths >= min_run].sum())
    return in_runs / samples.size


def _remove_markers(text: str) -> str:
    text = _MARKERS.sub(" ", text)
    words = [w for w in text.split() if w.strip(_EDGE_PUNCTUATION).lower() not in _MARKER_WORDS]
    return " ".join(words)


def _undo_mojibake(text: str) -> str:
    """UTF-8 bytes once decoded as Latin-1 or Windows-1252 (``cafÃ©``), decoded properly."""
    if text.isascii():
        return text
    for encoding in ("latin-1", "cp1252"):
        try:
            fixed = text.encode(encoding).decode("utf-8")
        except UnicodeError:
            continue
        if fixed != text:
            return fixed
    return text


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _tallies(tallies: Mapping[str, Tally]) -> dict[str, Any]:
    return {code: tally.to_dict() for code, tally in sorted(tallies.items())}
