"""The embedded default corpus: the voice track of the game Fish Fillets NG, shipped by Debian.

Two Debian packages make the corpus. ``fillets-ng-data-<lang>`` holds one Ogg Vorbis clip per
spoken line, at ``sound/<level>/<lang>/<dialog-id>.ogg`` (22.05 kHz stereo);
``fillets-ng-data`` holds the game scripts, where ``script/<level>/dialogs_<lang>.lua`` pairs
every dialog id with its font, the English subtitle and the translated line::

    dialogId("let-m-divna", "font_small", "What kind of strange ship is that?")
    dialogStr("Wat is dit voor raar schip?")

Lines said in every level (jokes, shouts at the border) live under ``sound/share/<group>/``;
their scripts are ``script/share/<prefix>dialogs_<lang>.lua`` and the game pairs the two with
``dialogLoad("script/share/<prefix>", "sound/share/<group>/")`` calls, which are read from the
scripts too. Such a group is treated as one more level, named ``share-<group>``.

``prepare_fillets`` turns the packages into Lhotse manifests with train/dev/test splits by
level, 16 kHz mono FLAC audio and a ``report.json`` of everything that could not be used.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.audio import AudioSource
from tqdm import tqdm

from sslgrid.audio import AudioError, decode_audio, write_flac
from sslgrid.corpora.debian import fetch_package, iter_members
from sslgrid.corpora.manifests import write_atomic
from sslgrid.text import normalise

__all__ = [
    "SPLITS",
    "Dialog",
    "LuaParseError",
    "parse_dialogs_lua",
    "prepare_fillets",
    "speaker_of",
    "split_levels",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
SAMPLE_RATE = 16000
GAME_ROOT = "usr/share/games/fillets-ng"


# --------------------------------------------------------------------------------------------
# Dialog scripts


@dataclass(frozen=True)
class Dialog:
    """One ``dialogId`` of a script and the ``dialogStr`` that follows it (``None`` if absent)."""

    id: str
    font: str
    english: str
    dutch: str | None
    line_no: int


class LuaParseError(ValueError):
    """A dialog script that cannot be read; the message starts with ``source:line``."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "string" or the punctuation character itself
    value: str
    line: int


_LUA_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_TYPOGRAPHIC_OPEN = "“”„"
_TYPOGRAPHIC_CLOSE = "”“"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LONG_BRACKET = re.compile(r"\[(=*)\[")


def parse_dialogs_lua(text: str, source: str) -> list[Dialog]:
    """Read the dialogs of one ``dialogs_<lang>.lua`` script.

    The script is a sequence of calls ``dialogId(id, font, english)`` and
    ``dialogStr(translation)`` with string-literal arguments; a ``dialogStr`` belongs to the
    ``dialogId`` before it. Understood: ``--`` and ``--[[ ]]`` comments (``--`` inside a string
    is text), Lua escapes (``\\"``, ``\\\\``, ``\\n``, ``\\ddd``; an unknown escape such as
    ``\\/`` stands for the character itself, as in Lua 5.1), single or double quotes, blank
    lines, Windows line endings, a byte-order mark, and typographic double quotes used as
    string delimiters (with a warning). A ``dialogId`` without a ``dialogStr`` is kept with
    ``dutch=None`` and a warning; other calls and a stray or repeated ``dialogStr`` are skipped
    with a warning. Anything else raises ``LuaParseError`` naming ``source:line``.
    """
    dialogs: list[Dialog] = []
    tokens = _tokens(text.removeprefix("\ufeff"), source)
    for name, args, line in _calls(tokens, source):
        if name == "dialogId":
            if len(args) != 3:
                raise LuaParseError(
                    f"{source}:{line}: dialogId takes 3 strings (id, font, text), got {len(args)}"
                )
            _warn_if_untranslated(dialogs, source)
            dialogs.append(Dialog(args[0], args[1], args[2], None, line))
        elif name == "dialogStr":
            _attach_translation(dialogs, args, line, source)
        else:
            log.warning("%s:%d: ignoring call to %s()", source, line, name)
    _warn_if_untranslated(dialogs, source)
    return dialogs


def _attach_translation(dialogs: list[Dialog], args: list[str], line: int, source: str) -> None:
    if len(args) != 1:
        raise LuaParseError(f"{source}:{line}: dialogStr takes 1 string, got {len(args)}")
    if not dialogs:
        log.warning("%s:%d: dialogStr without a dialogId before it; skipped", source, line)
        return
    last = dialogs[-1]
    if last.dutch is not None:
        log.warning("%s:%d: second dialogStr for %r; keeping the first", source, line, last.id)
        return
    dialogs[-1] = Dialog(last.id, last.font, last.english, args[0], last.line_no)


def _warn_if_untranslated(dialogs: list[Dialog], source: str) -> None:
    if dialogs and dialogs[-1].dutch is None:
        last = dialogs[-1]
        log.warning("%s:%d: dialogId %r has no dialogStr", source, last.line_no, last.id)


def _calls(tokens: Iterator[_Token], source: str) -> Iterator[tuple[str, list[str], int]]:
    """Group tokens into ``name(string, ...)`` calls, optionally followed by ``;``."""
    for token in tokens:
        if token.kind == ";":
            continue
        if token.kind != "name":
            raise LuaParseError(f"{source}:{token.line}: expected a call, found {token.value!r}")
        _expect(next(tokens, None), "(", source, token.line)
        args: list[str] = []
        while True:
            arg = next(tokens, None)
            if arg is not None and arg.kind == ")" and not args:
                break
            _expect(arg, "string", source, token.line)
            args.append(arg.value)
            sep = next(tokens, None)
            if sep is not None and sep.kind == ")":
                break
            _expect(sep, ",", source, token.line)
        yield token.value, args, token.line


def _expect(token: _Token | None, kind: str, source: str, line: int) -> None:
    if token is None:
        raise LuaParseError(f"{source}:{line}: unexpected end of file, expected {kind}")
    if token.kind != kind:
        raise LuaParseError(f"{source}:{token.line}: expected {kind}, found {token.value!r}")


def _tokens(text: str, source: str) -> Iterator[_Token]:
    """Lua tokens of the small subset the dialog scripts use; comments are skipped."""
    pos, line = 0, 1
    while pos < len(text):
        char = text[pos]
        if char == "\n":
            pos, line = pos + 1, line + 1
        elif char.isspace():
            pos += 1
        elif text.startswith("--", pos):
            pos, line = _skip_comment(text, pos, line, source)
        elif char in "(),;":
            yield _Token(char, char, line)
            pos += 1
        elif char in "\"'" or char in _TYPOGRAPHIC_OPEN:
            value, end = _read_string(text, pos, line, source)
            yield _Token("string", value, line)
            pos = end
        elif match := _NAME.match(text, pos):
            yield _Token("name", match.group(0), line)
            pos = match.end()
        else:
            raise LuaParseError(f"{source}:{line}: unexpected character {char!r}")


def _skip_comment(text: str, pos: int, line: int, source: str) -> tuple[int, int]:
    """Position and line after a ``--`` comment, short or ``--[[ long ]]``."""
    bracket = _LONG_BRACKET.match(text, pos + 2)
    if bracket:
        closing = "]" + bracket.group(1) + "]"
        end = text.find(closing, bracket.end())
        if end < 0:
            raise LuaParseError(f"{source}:{line}: unterminated long comment")
        end += len(closing)
        return end, line + text.count("\n", pos, end)
    end = text.find("\n", pos)
    return (len(text) if end < 0 else end), line


def _read_string(text: str, pos: int, line: int, source: str) -> tuple[str, int]:
    """Decode the string literal starting at ``pos``; return it and the position after it."""
    quote = text[pos]
    closers = _TYPOGRAPHIC_CLOSE if quote in _TYPOGRAPHIC_OPEN else quote
    if quote in _TYPOGRAPHIC_OPEN:
        log.warning("%s:%d: typographic quote %r used as a string delimiter", source, line, quote)
    out: list[str] = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char in closers:
            return "".join(out), pos + 1
        if char == "\n":
            break
        if char == "\\":
            decoded, pos = _read_escape(text, pos + 1, line, source)
            out.append(decoded)
            continue
        out.append(char)
        pos += 1
    raise LuaParseError(f"{source}:{line}: unterminated string")


def _read_escape(text: str, pos: int, line: int, source: str) -> tuple[str, int]:
    """Decode the escape after a backslash at ``pos - 1``."""
    if pos >= len(text):
        raise LuaParseError(f"{source}:{line}: backslash at end of file")
    char = text[pos]
    if char in _LUA_ESCAPES:
        return _LUA_ESCAPES[char], pos + 1
    digits = re.match(r"\d{1,3}", text[pos : pos + 3])
    if digits:
        code = int(digits.group(0))
        if code > 255:
            raise LuaParseError(f"{source}:{line}: escape \\{code} is out of range")
        return chr(code), pos + len(digits.group(0))
    if char == "\r" and text.startswith("\r\n", pos):
        return "\n", pos + 2
    return char, pos + 1


# --------------------------------------------------------------------------------------------
# Speakers and splits

_FISH_FONTS = {"font_small": "small", "font_big": "big", "font_both": "both"}
_COLOUR_FONTS = frozenset(
    "white yellow cyan lightgrey darkgrey grey green brown magenta red blue orange black".split()
)


def speaker_of(dialog: Dialog, corpus: str = "fillets-nl", level: str | None = None) -> str:
    """The voice that speaks ``dialog``, as ``<corpus>-<voice>``, derived from its font.

    The game gives every character a subtitle font, so the font names the voice:

    - ``font_small`` is the small fish (``<corpus>-small``), ``font_big`` the big fish
      (``<corpus>-big``), and ``font_both`` both fish speaking together (``<corpus>-both``).
    - A character font (``font_parrot``, ``font_crab``, ``font_statue``, ...) is that
      character in every level: ``<corpus>-parrot``.
    - A plain colour (``font_white``, ``font_yellow``, ``font_lightgrey``, ...) is whatever
      minor character the level gives that colour, so different levels are different voices:
      ``<corpus>-<level>-white`` when ``level`` is given, else ``<corpus>-white``.
    - An empty font is ``<corpus>-unknown``.
    """
    font = dialog.font.strip()
    if font in _FISH_FONTS:
        return f"{corpus}-{_FISH_FONTS[font]}"
    name = font.removeprefix("font_") or "unknown"
    if name in _COLOUR_FONTS and level:
        return f"{corpus}-{level}-{name}"
    return f"{corpus}-{name}"


def split_levels(
    level_durations: Mapping[str, float], dev_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    """Assign whole levels to ``train``/``dev``/``test``, aiming at the fractions by duration.

    Levels are visited in a seeded pseudo-random order (SHA256 of ``"<seed>:<level>"``, so the
    order of one level never depends on the others). A level goes to test if adding it brings
    test's duration closer to ``test_fraction`` of the total, else to dev by the same rule,
    else to train. Each split thus ends within half a level of its target. Afterwards, with at
    least three levels, an empty split (one with a positive fraction, and train always) takes
    the shortest level of the split holding most levels. The result is deterministic for a
    given seed and set of durations.
    """
    if not 0 <= dev_fraction < 1 or not 0 <= test_fraction < 1:
        raise ValueError(f"dev/test fractions must be in [0, 1): {dev_fraction}, {test_fraction}")
    if dev_fraction + test_fraction >= 1:
        raise ValueError(f"dev + test fractions must be below 1: {dev_fraction + test_fraction}")
    order = sorted(level_durations, key=lambda level: _seeded_key(level, seed))
    total = float(sum(level_durations.values()))
    targets = {"test": test_fraction * total, "dev": dev_fraction * total}
    filled = {"test": 0.0, "dev": 0.0}
    assignment: dict[str, str] = {}
    for level in order:
        duration = float(level_durations[level])
        split = next((s for s in ("test", "dev") if filled[s] + duration / 2 < targets[s]), "train")
        assignment[level] = split
        if split != "train":
            filled[split] += duration
    if len(order) >= 3:
        wanted = ["train"] + [s for s, f in (("dev", dev_fraction), ("test", test_fraction)) if f]
        _fill_empty_splits(assignment, order, level_durations, wanted)
    return assignment


def _seeded_key(level: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{level}".encode()).hexdigest()


def _fill_empty_splits(
    assignment: dict[str, str],
    order: Sequence[str],
    durations: Mapping[str, float],
    wanted: Sequence[str],
) -> None:
    for split in wanted:
        if split in assignment.values():
            continue
        sizes = {s: sum(1 for v in assignment.values() if v == s) for s in SPLITS}
        donor = max(SPLITS, key=lambda s: sizes[s])
        candidates = [level for level in order if assignment[level] == donor]
        assignment[min(candidates, key=lambda level: durations[level])] = split


# --------------------------------------------------------------------------------------------
# Reading the packages


@dataclass(frozen=True)
class _Transcript:
    level: str
    dialog: Dialog
    source: str


@dataclass(frozen=True)
class _Clip:
    level: str
    dialog_id: str
    source: str  # "<deb>:<member>", for messages
    data: bytes = field(repr=False)


_SHARE_LOAD = re.compile(
    r'dialogLoad\(\s*"script/share/([\w.-]*)"\s*,\s*"sound/share/([\w.-]+)/?"\s*\)'
)


def _read_transcripts(debs: Sequence[Path], language: str) -> list[_Transcript]:
    """Every dialog of every level (and shared group) found in the packages' scripts."""
    lang = re.escape(language)
    level_script = re.compile(rf"{GAME_ROOT}/script/([^/]+)/dialogs_{lang}\.lua")
    share_script = re.compile(rf"{GAME_ROOT}/script/share/([^/]*)dialogs_{lang}\.lua")
    share_lua = re.compile(rf"{GAME_ROOT}/script/share/[^/]+\.lua")
    scripts: dict[str, tuple[str, str]] = {}  # member path -> (source, text)
    share_groups: dict[str, set[str]] = defaultdict(set)  # script prefix -> sound groups
    for deb in debs:
        pattern = re.compile(rf"{GAME_ROOT}/script/.+\.lua")
        for path, data in iter_members(deb, pattern):
            text = data.decode("utf-8-sig", errors="strict")
            if share_lua.fullmatch(path):
                for prefix, group in _SHARE_LOAD.findall(text):
                    share_groups[prefix].add(group)
            if share_script.fullmatch(path) or level_script.fullmatch(path):
                scripts[path] = (f"{deb.name}:{path}", text)
    transcripts: list[_Transcript] = []
    for path, (source, text) in sorted(scripts.items()):
        for level in _levels_of_script(path, level_script, share_script, share_groups):
            transcripts += [_Transcript(level, d, source) for d in parse_dialogs_lua(text, source)]
    return transcripts


def _levels_of_script(
    path: str,
    level_script: re.Pattern[str],
    share_script: re.Pattern[str],
    share_groups: Mapping[str, set[str]],
) -> list[str]:
    share = share_script.fullmatch(path)
    if share:
        groups = sorted(share_groups.get(share.group(1), ()))
        if not groups:
            log.info("%s: no dialogLoad() gives it a sound folder; not used", path)
        return [f"share-{group}" for group in groups]
    match = level_script.fullmatch(path)
    return [match.group(1)] if match else []


def _read_clips(debs: Sequence[Path], language: str) -> Iterator[_Clip]:
    """Every ``sound/<level>/<lang>/<id>.ogg`` in the packages, with its bytes."""
    pattern = re.compile(rf"{GAME_ROOT}/sound/(.+)/{re.escape(language)}/([^/]+)\.ogg")
    for deb in debs:
        for path, data in iter_members(deb, pattern):
            match = pattern.fullmatch(path)
            assert match is not None  # iter_members only yields full matches
            level = match.group(1).replace("/", "-")
            yield _Clip(level, match.group(2), f"{deb.name}:{path}", data)


# --------------------------------------------------------------------------------------------
# Pairing clips with transcripts


@dataclass
class _Inventory:
    """Clips paired with transcripts, and everything that could not be paired or used."""

    pairs: list[tuple[_Clip, _Transcript, str]] = field(default_factory=list)
    clips_without_transcript: list[str] = field(default_factory=list)
    transcripts_without_clip: list[str] = field(default_factory=list)
    empty_text: list[dict[str, str]] = field(default_factory=list)
    empty_audio: list[str] = field(default_factory=list)


def _pair(
    clips: Iterable[_Clip], transcripts: Sequence[_Transcript], exclude: set[str]
) -> _Inventory:
    """Match clips and transcripts on (level, dialog id); sort out what cannot be used."""
    by_key: dict[tuple[str, str], _Transcript] = {}
    for t in transcripts:
        key = (t.level, t.dialog.id)
        if key in by_key:
            raise ValueError(
                f"dialog id {t.dialog.id!r} of level {t.level!r} is defined twice: "
                f"{by_key[key].source}:{by_key[key].dialog.line_no} and "
                f"{t.source}:{t.dialog.line_no}"
            )
        by_key[key] = t
    inventory = _Inventory()
    seen: set[tuple[str, str]] = set()
    for clip in clips:
        key = (clip.level, clip.dialog_id)
        seen.add(key)
        if clip.level in exclude:
            continue
        transcript = by_key.get(key)
        if transcript is None or transcript.dialog.dutch is None:
            inventory.clips_without_transcript.append(f"{clip.level}/{clip.dialog_id}")
        elif not (text := normalise(transcript.dialog.dutch)):
            inventory.empty_text.append(
                {"id": f"{clip.level}/{clip.dialog_id}", "orig_text": transcript.dialog.dutch}
            )
        elif _num_frames(clip) == 0:
            inventory.empty_audio.append(f"{clip.level}/{clip.dialog_id}")
        else:
            inventory.pairs.append((clip, transcript, text))
    inventory.transcripts_without_clip = sorted(
        f"{level}/{dialog_id}"
        for level, dialog_id in by_key
        if (level, dialog_id) not in seen and level not in exclude
    )
    inventory.pairs.sort(key=lambda p: (p[0].level, p[0].dialog_id))
    return inventory


def _num_frames(clip: _Clip) -> int:
    """Frames in the clip according to its header; ``AudioError`` if it cannot be read."""
    try:
        return sf.info(io.BytesIO(clip.data)).frames
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioError(f"{clip.source}: cannot decode audio ({exc})") from exc


def _spread_subset(
    pairs: Sequence[tuple[_Clip, _Transcript, str]], max_clips: int | None
) -> list[tuple[_Clip, _Transcript, str]]:
    """At most ``max_clips`` pairs, dealt round-robin over the levels in name order."""
    if max_clips is None or max_clips >= len(pairs):
        return list(pairs)
    by_level: dict[str, list[tuple[_Clip, _Transcript, str]]] = defaultdict(list)
    for pair in pairs:
        by_level[pair[0].level].append(pair)
    queues = [by_level[level] for level in sorted(by_level)]
    chosen: list[tuple[_Clip, _Transcript, str]] = []
    for depth in range(max(len(q) for q in queues)):
        for queue in queues:
            if depth < len(queue) and len(chosen) < max_clips:
                chosen.append(queue[depth])
    return sorted(chosen, key=lambda p: (p[0].level, p[0].dialog_id))


# --------------------------------------------------------------------------------------------
# Audio and manifests


def _convert(clip: _Clip, audio_dir: Path) -> tuple[Path, int]:
    """FLAC path and sample count of the clip at 16 kHz mono; converted only if not there yet."""
    path = audio_dir / clip.level / f"{clip.dialog_id}.flac"
    if path.is_file():
        return path, sf.info(str(path)).frames
    samples = decode_audio(clip.data, clip.source, SAMPLE_RATE)
    write_flac(path, samples, SAMPLE_RATE)
    return path, len(samples)


@dataclass(frozen=True)
class _Utterance:
    recording: Recording
    supervision: SupervisionSegment
    level: str


def _utterance(
    clip: _Clip,
    transcript: _Transcript,
    text: str,
    audio: tuple[Path, int],
    meta: Mapping[str, str],
) -> _Utterance:
    path, num_samples = audio
    utt_id = f"{clip.level}-{clip.dialog_id}"
    duration = num_samples / SAMPLE_RATE
    recording = Recording(
        id=utt_id,
        sources=[AudioSource(type="file", channels=[0], source=str(path))],
        sampling_rate=SAMPLE_RATE,
        num_samples=num_samples,
        duration=duration,
    )
    dialog = transcript.dialog
    supervision = SupervisionSegment(
        id=utt_id,
        recording_id=utt_id,
        start=0.0,
        duration=duration,
        channel=0,
        text=text,
        language=meta["language"],
        speaker=speaker_of(dialog, meta["corpus"], clip.level),
        custom={
            "translation": dialog.english,
            "orig_text": dialog.dutch,
            "domain": meta["domain"],
            "region": meta["region"],
            "level": clip.level,
            "corpus": meta["corpus"],
            "font": dialog.font,
        },
    )
    return _Utterance(recording, supervision, clip.level)


def _check_unique_ids(utterances: Sequence[_Utterance]) -> None:
    """``<level>-<id>`` could in principle collide (``a-b`` + ``c`` vs ``a`` + ``b-c``)."""
    seen: dict[str, str] = {}
    for utt in utterances:
        if utt.recording.id in seen:
            raise ValueError(
                f"utterance id {utt.recording.id!r} is made by two clips: "
                f"{seen[utt.recording.id]} and {utt.recording.sources[0].source}"
            )
        seen[utt.recording.id] = utt.recording.sources[0].source


def _write_split(utterances: Sequence[_Utterance], split: str, manifest_dir: Path) -> None:
    recordings = RecordingSet.from_recordings(u.recording for u in utterances)
    supervisions = SupervisionSet.from_segments(u.supervision for u in utterances)
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    for name, manifest in (
        ("recordings", recordings),
        ("supervisions", supervisions),
        ("cuts", cuts),
    ):
        write_atomic(manifest_dir / f"{name}_{split}.jsonl.gz", manifest.to_file)


def _split_summary(utterances: Sequence[_Utterance]) -> dict[str, Any]:
    speakers = sorted({u.supervision.speaker for u in utterances if u.supervision.speaker})
    return {
        "hours": round(sum(u.recording.duration for u in utterances) / 3600, 4),
        "utterances": len(utterances),
        "num_speakers": len(speakers),
        "speakers": speakers,
        "levels": sorted({u.level for u in utterances}),
    }


def _listed(items: Sequence[Any]) -> dict[str, Any]:
    return {"count": len(items), "items": list(items)}


def _warn_unused(inventory: _Inventory) -> None:
    for what, items in (
        ("clips without a transcript", inventory.clips_without_transcript),
        ("transcripts without a clip", inventory.transcripts_without_clip),
        ("clips whose text normalises to nothing", [i["id"] for i in inventory.empty_text]),
        ("clips with zero-length audio", inventory.empty_audio),
    ):
        if items:
            shown = ", ".join(items[:5]) + (", ..." if len(items) > 5 else "")
            log.warning("%d %s (listed in report.json): %s", len(items), what, shown)


# --------------------------------------------------------------------------------------------
# The recipe


def prepare_fillets(
    packages: Sequence[Mapping[str, str]],
    corpus: str,
    language: str,
    download_dir: str | os.PathLike[str],
    audio_dir: str | os.PathLike[str],
    manifest_dir: str | os.PathLike[str],
    region: str,
    domain: str,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    max_clips: int | None = None,
    exclude_levels: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the corpus from its Debian packages; return the report also written as JSON.

    ``packages`` are ``{"name", "url", "sha256"}`` entries (audio and script packages, in any
    order). Clips become ``<audio_dir>/<level>/<dialog-id>.flac`` (16 kHz mono; existing files
    are kept, so re-runs only re-read the packages). ``manifest_dir`` receives
    ``{recordings,supervisions,cuts}_{train,dev,test}.jsonl.gz`` and ``report.json``. Audio
    paths in the manifests are ``audio_dir`` as given, so a relative ``audio_dir`` keeps the
    manifests relative to the working directory.

    Utterance id is ``<level>-<dialog-id>``; the supervision carries the normalised text, the
    speaker (``speaker_of``), the language, and in ``custom`` the English ``translation``, the
    ``orig_text``, ``domain``, ``region``, ``level``, ``corpus`` and ``font``. Splits are by
    level (``split_levels``). ``max_clips`` keeps a subset dealt round-robin over the levels,
    for tiny test configurations. Unusable clips and transcripts are listed in the report.
    """
    if not re.fullmatch(r"[a-z]{2,3}(_[A-Z]{2})?", language):
        raise ValueError(f"language {language!r} is not a code such as 'nl' or 'cs'")
    audio_dir, manifest_dir = Path(audio_dir), Path(manifest_dir)
    meta = {"corpus": corpus, "language": language, "region": region, "domain": domain}
    debs = [fetch_package(p["url"], p["sha256"], download_dir, progress) for p in packages]

    transcripts = _read_transcripts(debs, language)
    inventory = _pair(_read_clips(debs, language), transcripts, set(exclude_levels or ()))
    _warn_unused(inventory)
    if not inventory.pairs:
        raise ValueError(
            f"{corpus}: no clip with a usable transcript in {[p['name'] for p in packages]}"
        )
    chosen = _spread_subset(inventory.pairs, max_clips)

    utterances = [
        _utterance(clip, transcript, text, _convert(clip, audio_dir), meta)
        for clip, transcript, text in tqdm(
            chosen, desc=f"{corpus} audio", unit="clip", disable=not progress
        )
    ]
    _check_unique_ids(utterances)
    level_durations: dict[str, float] = defaultdict(float)
    for utt in utterances:
        level_durations[utt.level] += utt.recording.duration
    assignment = split_levels(level_durations, dev_fraction, test_fraction, seed)

    manifest_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        **meta,
        "packages": [dict(p) for p in packages],
        "seed": seed,
        "dev_fraction": dev_fraction,
        "test_fraction": test_fraction,
        "max_clips": max_clips,
        "excluded_levels": sorted(exclude_levels or ()),
        "splits": {},
    }
    for split in SPLITS:
        members = [u for u in utterances if assignment[u.level] == split]
        _write_split(members, split, manifest_dir)
        report["splits"][split] = _split_summary(members)
    report["clips_without_transcript"] = _listed(inventory.clips_without_transcript)
    report["transcripts_without_clip"] = _listed(inventory.transcripts_without_clip)
    report["empty_text"] = _listed(inventory.empty_text)
    report["empty_audio"] = _listed(inventory.empty_audio)
    write_atomic(
        manifest_dir / "report.json",
        lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n"),
    )
    return report
