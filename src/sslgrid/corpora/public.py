"""Public Dutch corpora from local copies in their distributed layouts, through Lhotse's recipes.

Nothing is downloaded: every recipe reads a folder the user points at (``root``). Lhotse's
recipes (``lhotse.recipes``) do the reading (MLS: see below); each expects its own folder
layout, so the recipe first builds that layout in a scratch folder of symbolic links (and,
where a table has to be filtered, rewritten TSV files) and maps the audio paths back to
``root`` afterwards. The corpora and the layouts read:

- **Common Voice** (``prepare_commonvoice``): ``root`` is a release's language folder,
  ``cv-corpus-<version>/nl`` with ``clips/*.mp3`` and ``{train,dev,test,validated}.tsv``.
  MP3 decoding needs libsndfile 1.1 or later (``soundfile.available_formats()`` lists
  ``MP3``) or an ffmpeg that Lhotse can call. An optional CoVoST 2 table
  (``covost_v2.nl_en.tsv``: ``path``, ``translation``, ``split``) adds English translations,
  joined on the clip name, and can supply the splits instead.
- **MLS** (``prepare_mls``): ``root`` is ``mls_dutch`` (or ``mls_dutch_opus``) with
  ``{train,dev,test}/transcripts.txt`` + ``audio/<spk>/<book>/*.flac`` (or ``*.opus``) and
  ``metainfo.txt``. Lhotse's recipe is quadratic in the number of utterances, so only its
  audio scan is used (see ``prepare_mls``).
- **FLEURS** (``prepare_fleurs``): ``root`` is the ``nl_nl`` folder of the Hugging Face
  release, ``{train,dev,test}.tsv`` + ``audio/{train,dev,test}/*.wav`` (or the split folders
  directly under ``root``). An optional ``translation_root`` (the ``en_us`` folder) gives the
  English sentence with the same FLoRes id.
- **VoxPopuli** (``prepare_voxpopuli``): ``root`` holds ``raw_audios/original/<year>/
  <session>_original.ogg`` (the ``asr`` download of facebookresearch/voxpopuli) and the
  transcript table ``asr_nl.tsv.gz`` (``annotations`` option to put it elsewhere).

Every recipe writes ``cuts_{train,dev,test}.jsonl.gz`` (the corpus' official splits; one
cut per utterance) and ``report.json``. Audio is not copied: cuts point at the files under
``root`` and carry Lhotse's resampling transform where a file is not at 16 kHz, which for
hundreds of hours saves a second copy and an up-front decoding pass. Supervision text is the
corpus' own raw sentence normalised with ``sslgrid.text.normalise`` (an utterance that
normalises to nothing is dropped and counted); ids and speakers are prefixed with the corpus
name; ``custom`` holds ``translation`` (English or ``None``), ``orig_text``, ``domain``,
``region`` and ``corpus``.
"""

from __future__ import annotations

import csv
import gzip
import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lhotse import Recording, RecordingSet, SupervisionSegment
from lhotse import recipes as lhotse_recipes
from lhotse.cut import Cut
from lhotse.utils import fastcopy

from sslgrid.audio import AudioError
from sslgrid.corpora.manifests import (
    SAMPLE_RATE,
    SPLITS,
    Tally,
    check_unique_ids,
    cut_for_supervision,
    split_summary,
    write_report,
    write_split_cuts,
)
from sslgrid.text import normalise

__all__ = [
    "CorpusLayoutError",
    "CovostEntry",
    "commonvoice_region",
    "prepare_commonvoice",
    "prepare_fleurs",
    "prepare_mls",
    "prepare_voxpopuli",
    "read_covost",
    "select_commonvoice_clips",
]

log = logging.getLogger(__name__)


class CorpusLayoutError(ValueError):
    """A corpus folder or table that does not have the expected layout; names the file."""


# --------------------------------------------------------------------------------------------
# Options shared by the recipes


@dataclass(frozen=True)
class _Options:
    """Keys every public-corpus config understands.

    ``root`` (required), ``name`` (prefix of ids and speakers), ``language`` (``nl``),
    ``region`` (``vl``/``nl``, for utterances whose region the corpus does not say),
    ``domain``, ``num_jobs`` (Lhotse's workers for reading audio headers) and ``on_error``:
    ``strict`` (default) raises when a listed audio file is missing, ``skip`` counts it.
    """

    root: Path
    name: str
    language: str
    region: str
    domain: str
    num_jobs: int
    on_error: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any], recipe: str, name: str, domain: str):
        if "root" not in config:
            raise ValueError(f"{recipe} corpus config needs 'root': the local corpus folder")
        root = Path(config["root"])
        if not root.is_dir():
            raise CorpusLayoutError(f"{root}: no such folder ({recipe} root)")
        region = config.get("region", "nl")
        if region not in ("vl", "nl"):
            raise ValueError(f"{recipe} region: {region!r}; expected 'vl' or 'nl'")
        on_error = config.get("on_error", "strict")
        if on_error not in ("strict", "skip"):
            raise ValueError(f"{recipe} on_error: {on_error!r}; expected 'strict' or 'skip'")
        return cls(
            root=root,
            name=config.get("name", name),
            language=config.get("language", "nl"),
            region=region,
            domain=config.get("domain", domain),
            num_jobs=int(config.get("num_jobs", 1)),
            on_error=on_error,
        )


@dataclass
class _Findings:
    empty_text: Tally = field(default_factory=Tally)
    missing_audio: Tally = field(default_factory=Tally)
    translated: int = 0
    untranslated: int = 0

    def missing(self, what: str, options: _Options) -> None:
        if options.on_error == "strict":
            raise AudioError(what)
        self.missing_audio.add(what)

    def to_dict(self) -> dict[str, Any]:
        return {
            "empty_text": self.empty_text.to_dict(),
            "missing_audio": self.missing_audio.to_dict(),
            "translations": {"joined": self.translated, "missing": self.untranslated},
        }


class _Scratch:
    """A scratch folder under ``manifest_dir`` in the layout a Lhotse recipe expects.

    Links point into the corpus; ``relocate`` turns a recording's path through a link back
    into the path under ``root`` as configured, so manifests outlive the scratch folder.
    """

    def __init__(self, manifest_dir: Path) -> None:
        manifest_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.TemporaryDirectory(dir=manifest_dir, prefix=".lhotse-")
        self.path = Path(self._tmp.name).absolute()
        self._links: dict[Path, Path] = {}

    def __enter__(self) -> _Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()

    def link(self, relative: str, target: Path) -> Path:
        link = self.path / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target.absolute(), target_is_directory=target.is_dir())
        self._links[link] = target
        return link

    def write(self, relative: str, text: str) -> Path:
        path = self.path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def relocate(self, recording: Recording) -> Recording:
        sources = [fastcopy(s, source=self._real(s.source)) for s in recording.sources]
        return fastcopy(recording, sources=sources)

    def _real(self, source: str) -> str:
        path = Path(source).absolute()
        for link, target in self._links.items():
            if path == link or link in path.parents:
                return str(target / path.relative_to(link))
        raise AssertionError(f"{source} is not under a linked corpus folder")


_EMPTY_SPLIT = "Lhotse's recipe cannot prepare an empty split"


def _run_lhotse(recipe: Callable[..., Any], root: Path, *args: Any, **kwargs: Any) -> Any:
    """Call a Lhotse recipe; its failures (often bare assertions) say which corpus failed."""
    try:
        return recipe(*args, **kwargs)
    except Exception as exc:
        raise CorpusLayoutError(
            f"{root}: lhotse.recipes.{recipe.__name__} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _gender(value: str | None) -> str | None:
    """``m``/``f`` from the corpora's many spellings (``male``, ``F``, ``female_feminine``)."""
    value = (value or "").strip().lower()
    return value[0] if value[:1] in ("m", "f") else None


def _contract_cuts(
    recordings: RecordingSet,
    supervisions: Iterable[SupervisionSegment],
    scratch: _Scratch | None,
    options: _Options,
    findings: _Findings,
    describe: Callable[[SupervisionSegment], dict[str, Any]],
) -> list[Cut]:
    """Our cuts for Lhotse's supervisions; ``describe`` gives each one's corpus-specific parts.

    ``describe`` returns ``raw_text`` (normalised here), ``speaker`` (native id),
    ``translation`` and optionally ``id`` (native utterance id, default the supervision's),
    ``region`` and ``custom`` (extra fields). Audio paths through ``scratch`` links are
    mapped back to the corpus folder.
    """
    # By id through a dict: RecordingSet[id] scans the set, which is quadratic over a corpus.
    by_id = {r.id: r for r in recordings}
    renamed: dict[str, Recording] = {}
    cuts = []
    for sup in supervisions:
        parts = describe(sup)
        text = normalise(parts["raw_text"])
        utt_id = f"{options.name}-{parts.get('id', sup.id)}"
        if not text:
            findings.empty_text.add({"id": utt_id, "orig_text": parts["raw_text"]})
            continue
        if sup.recording_id not in renamed:
            recording = by_id[sup.recording_id]
            recording = scratch.relocate(recording) if scratch else recording
            renamed[sup.recording_id] = fastcopy(recording, id=f"{options.name}-{recording.id}")
        recording = renamed[sup.recording_id]
        translation = parts.get("translation")
        if translation:
            findings.translated += 1
        else:
            findings.untranslated += 1
        supervision = SupervisionSegment(
            id=utt_id,
            recording_id=recording.id,
            start=sup.start,
            duration=sup.duration,
            channel=0,
            text=text,
            language=options.language,
            speaker=f"{options.name}-{parts['speaker']}",
            gender=_gender(sup.gender),
            custom={
                "translation": translation or None,
                "orig_text": parts["raw_text"],
                "domain": options.domain,
                "region": parts.get("region") or options.region,
                "corpus": options.name,
                **parts.get("custom", {}),
            },
        )
        cuts.append(cut_for_supervision(recording, supervision))
    return cuts


def _write_manifests(
    cuts_by_split: Mapping[str, Sequence[Cut]],
    manifest_dir: Path,
    report: dict[str, Any],
    findings: _Findings,
) -> dict[str, Any]:
    check_unique_ids([c for cuts in cuts_by_split.values() for c in cuts], report["root"])
    report["splits"] = {}
    for split in SPLITS:
        cuts = sorted(cuts_by_split.get(split, ()), key=lambda c: c.id)
        write_split_cuts(cuts, split, manifest_dir)
        report["splits"][split] = split_summary(cuts)
    report.update(findings.to_dict())
    write_report(report, manifest_dir)
    if findings.empty_text.count or findings.missing_audio.count:
        log.warning(
            "%s: %d utterances with empty text, %d missing audio files (see report.json)",
            report["corpus"],
            findings.empty_text.count,
            findings.missing_audio.count,
        )
    return report


def _base_report(options: _Options, recipe: str, seed: int) -> dict[str, Any]:
    return {
        "corpus": options.name,
        "recipe": recipe,
        "root": str(options.root),
        "language": options.language,
        "region": options.region,
        "domain": options.domain,
        "on_error": options.on_error,
        "seed": seed,  # unused: these corpora come with their own splits
    }


def _read_tsv(path: Path, required: Sequence[str], delimiter: str = "\t") -> list[dict[str, str]]:
    """Rows of a headed table, read as the corpora write them (no quoting: ``"`` is text)."""
    if not path.is_file():
        raise CorpusLayoutError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file, delimiter=delimiter, quoting=csv.QUOTE_NONE)
        header = reader.fieldnames or []
        missing = [name for name in required if name not in header]
        if missing:
            raise CorpusLayoutError(f"{path}:1: no column {missing}; the header has {header}")
        return [{k: v or "" for k, v in row.items() if k is not None} for row in reader]


# --------------------------------------------------------------------------------------------
# Common Voice (+ CoVoST 2 translations)

# What Lhotse's Common Voice recipe reads from a row; older releases lack some of them.
_LHOTSE_CV_COLUMNS = ("client_id", "path", "sentence", "gender", "age", "accents", "variant")


@dataclass(frozen=True)
class CovostEntry:
    translation: str
    split: str  # train, dev or test (CoVoST's "train_covost" counts as train)


def read_covost(path: str | Path) -> dict[str, CovostEntry]:
    """A CoVoST 2 table (``covost_v2.nl_en.tsv``) by clip name without extension.

    Read like the CoVoST tools read it: tab-separated, no quoting, ``\\`` as escape.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusLayoutError(f"{path}: no such file (CoVoST 2 table)")
    with path.open(encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        header = reader.fieldnames or []
        if "path" not in header or "translation" not in header:
            raise CorpusLayoutError(
                f"{path}:1: a CoVoST table needs columns 'path' and 'translation'; has {header}"
            )
        table = {}
        for row in reader:
            split = row.get("split") or ""
            split = "train" if split.startswith("train") else split
            table[Path(row["path"]).stem] = CovostEntry(row["translation"] or "", split)
    return table


_FLEMISH = re.compile(r"vlaams|vlaanderen|belgi|flemish|flanders")
_NETHERLANDIC = re.compile(r"nederlands nederlands|\bnederland\b|netherlands|holland")


def commonvoice_region(accents: str, variant: str, default: str) -> str:
    """``vl`` or ``nl`` from a Common Voice speaker's self-described accent, else ``default``.

    Contributors describe their Dutch in free text (``Belgisch Nederlands``, ``Vlaams``,
    ``Nederlands Nederlands``, ...); the words for Flanders or Belgium make ``vl``, those for
    the Netherlands ``nl``, anything else (including no answer) leaves the corpus default.
    """
    said = f"{variant} {accents}".lower()
    if _FLEMISH.search(said):
        return "vl"
    if _NETHERLANDIC.search(said):
        return "nl"
    return default


def select_commonvoice_clips(
    language_dir: Path,
    train_tsv: str = "train",
    covost: Mapping[str, CovostEntry] | None = None,
    splits_from: str = "commonvoice",
) -> tuple[dict[str, list[dict[str, str]]], dict[str, int]]:
    """The TSV rows of each split, and counts of rows left out and why.

    ``splits_from="commonvoice"`` takes ``dev.tsv`` and ``test.tsv`` and, for training,
    ``train.tsv`` or (``train_tsv="validated"``) every validated clip whose speaker and
    sentence are in neither dev nor test, as Common Voice's own splits keep them apart.
    ``splits_from="covost"`` takes the clips and splits of the CoVoST table, with text and
    speaker from ``validated.tsv``.
    """
    required = ("path", "sentence", "client_id")
    left_out: dict[str, int] = {}
    if splits_from == "covost":
        if covost is None:
            raise ValueError("common voice splits_from: covost needs a 'covost' table")
        validated = {
            Path(r["path"]).stem: r for r in _read_tsv(language_dir / "validated.tsv", required)
        }
        splits: dict[str, list[dict[str, str]]] = {s: [] for s in SPLITS}
        left_out["covost_clips_not_in_validated"] = 0
        for stem, entry in covost.items():
            if entry.split not in splits:
                continue
            if stem not in validated:
                left_out["covost_clips_not_in_validated"] += 1
                continue
            splits[entry.split].append(validated[stem])
        return splits, left_out
    if splits_from != "commonvoice":
        raise ValueError(f"common voice splits_from: {splits_from!r}; expected commonvoice|covost")
    dev = _read_tsv(language_dir / "dev.tsv", required)
    test = _read_tsv(language_dir / "test.tsv", required)
    if train_tsv == "train":
        train = _read_tsv(language_dir / "train.tsv", required)
    elif train_tsv == "validated":
        held_out = dev + test
        speakers = {r["client_id"] for r in held_out}
        sentences = {r["sentence"] for r in held_out}
        paths = {r["path"] for r in held_out}
        train = []
        left_out.update(held_out_clip=0, held_out_speaker=0, held_out_sentence=0)
        for row in _read_tsv(language_dir / "validated.tsv", required):
            if row["path"] in paths:
                left_out["held_out_clip"] += 1
            elif row["client_id"] in speakers:
                left_out["held_out_speaker"] += 1
            elif row["sentence"] in sentences:
                left_out["held_out_sentence"] += 1
            else:
                train.append(row)
    else:
        raise ValueError(f"common voice train_tsv: {train_tsv!r}; expected train|validated")
    return {"train": train, "dev": dev, "test": test}, left_out


def prepare_commonvoice(
    corpus_config: Mapping[str, Any],
    audio_dir: str | Path,
    manifest_dir: str | Path,
    seed: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Common Voice (nl) through ``lhotse.recipes.prepare_commonvoice``; returns the report.

    Options beyond the shared ones (``_Options``): ``train_tsv`` (``train`` or
    ``validated``), ``covost`` (path of a CoVoST 2 table, for ``custom.translation``) and
    ``splits_from`` (``commonvoice`` or ``covost``). ``custom.region`` comes from the
    speaker's stated accent where it names Flanders/Belgium or the Netherlands
    (``commonvoice_region``); ``custom.accents`` keeps what they said.

    The selected rows of all splits go to Lhotse as one table, so that its recipe starts one
    pool of worker processes rather than one per split, and with the columns it reads present
    whatever the release (older ones lack ``variant``).
    """
    del audio_dir, progress  # clips are referenced in place; Lhotse draws its own progress
    options = _Options.from_config(corpus_config, "commonvoice", "cv-nl", "read-crowdsourced")
    manifest_dir = Path(manifest_dir)
    language_dir = options.root
    if not (language_dir / "clips").is_dir() and (language_dir / options.language).is_dir():
        language_dir = language_dir / options.language
    if not (language_dir / "clips").is_dir():
        raise CorpusLayoutError(f"{options.root}: no clips/ folder (Common Voice language folder)")
    covost_path = corpus_config.get("covost")
    covost = read_covost(covost_path) if covost_path else None
    splits, left_out = select_commonvoice_clips(
        language_dir,
        corpus_config.get("train_tsv", "train"),
        covost,
        corpus_config.get("splits_from", "commonvoice"),
    )
    split_of: dict[str, str] = {}
    for split, rows in splits.items():
        for row in rows:
            stem = Path(row["path"]).stem
            if split_of.setdefault(stem, split) != split:
                raise CorpusLayoutError(
                    f"{language_dir}: clip {row['path']} is in both {split_of[stem]} and {split}"
                )

    findings = _Findings()
    with _Scratch(manifest_dir) as scratch:
        scratch.link(f"{options.language}/clips", language_dir / "clips")
        table = ["\t".join(_LHOTSE_CV_COLUMNS)]
        for rows in splits.values():
            for row in rows:
                fields = {**row, "accents": row.get("accents") or row.get("accent", "")}
                table.append("\t".join(fields.get(c, "") for c in _LHOTSE_CV_COLUMNS))
        scratch.write(f"{options.language}/selected.tsv", "\n".join(table) + "\n")
        manifests = _run_lhotse(
            lhotse_recipes.prepare_commonvoice,
            language_dir,
            scratch.path,
            scratch.path / "lhotse",
            languages=[options.language],
            splits=["selected"],
            num_jobs=options.num_jobs,
        )[options.language]["selected"]
        recordings, supervisions = manifests["recordings"], manifests["supervisions"]
        found = {r.id for r in recordings}
        for stem in sorted(set(split_of) - found):
            findings.missing(f"{language_dir / 'clips'}: no readable clip {stem}.*", options)

        def describe(sup: SupervisionSegment) -> dict[str, Any]:
            custom = sup.custom or {}
            entry = covost.get(sup.recording_id) if covost else None
            return {
                "raw_text": sup.text or "",
                "speaker": sup.speaker,
                "translation": entry.translation if entry else None,
                "region": commonvoice_region(
                    custom.get("accents", ""), custom.get("variant", ""), options.region
                ),
                "custom": {"accents": custom.get("accents", "")},
            }

        cuts_by_split = {
            split: _contract_cuts(
                recordings,
                (s for s in supervisions if split_of[s.recording_id] == split),
                scratch,
                options,
                findings,
                describe,
            )
            for split in SPLITS
        }

    report = _base_report(options, "commonvoice", seed)
    report.update(
        train_tsv=corpus_config.get("train_tsv", "train"),
        splits_from=corpus_config.get("splits_from", "commonvoice"),
        covost=str(covost_path) if covost_path else None,
        left_out=left_out,
    )
    return _write_manifests(cuts_by_split, manifest_dir, report, findings)


# --------------------------------------------------------------------------------------------
# Multilingual LibriSpeech


def prepare_mls(
    corpus_config: Mapping[str, Any],
    audio_dir: str | Path,
    manifest_dir: str | Path,
    seed: int,
    progress: bool = True,
) -> dict[str, Any]:
    """MLS Dutch: Lhotse's ``RecordingSet.from_dir`` for the audio, its transcripts read here.

    ``root`` is the ``mls_dutch`` folder. ``audio_format`` is ``flac``, ``opus`` or
    ``auto`` (default: whichever the dev split holds). Speakers' gender comes from
    ``metainfo.txt`` where present; ``custom.book`` is the LibriVox book id. MLS transcripts
    are lower-case already and are normalised all the same.

    ``lhotse.recipes.prepare_mls`` is not used: it looks every utterance's duration up by id
    in a list (``RecordingSet.duration``), which is quadratic, about three hours of lookups
    for the 374k utterances of the Dutch training split, and it reads every ``mls_*`` folder
    beside the one asked for. The audio scan, the part worth sharing, is Lhotse's.
    """
    del audio_dir, progress  # audio is referenced in place; Lhotse draws its own progress
    options = _Options.from_config(corpus_config, "mls", "mls-nl", "audiobook")
    manifest_dir = Path(manifest_dir)
    audio_format = corpus_config.get("audio_format", "auto")
    if audio_format == "auto":
        has_opus = next((options.root / "dev").rglob("*.opus"), None) is not None
        audio_format = "opus" if has_opus else "flac"
    if audio_format not in ("flac", "opus"):
        raise ValueError(f"mls audio_format: {audio_format!r}; expected flac, opus or auto")
    genders = _mls_genders(options.root / "metainfo.txt")

    findings = _Findings()
    cuts_by_split: dict[str, list[Cut]] = {}
    for split in SPLITS:
        transcripts = _read_mls_transcripts(options.root / split / "transcripts.txt")
        recordings = RecordingSet.from_dir(
            options.root / split / "audio",
            f"*.{audio_format}",
            num_jobs=options.num_jobs,
            force_opus_sampling_rate=SAMPLE_RATE if audio_format == "opus" else None,
        )
        duration = {r.id: r.duration for r in recordings}
        supervisions = []
        for utt_id, (line_no, text) in transcripts.items():
            if utt_id not in duration:
                where = f"{options.root / split / 'transcripts.txt'}:{line_no}"
                findings.missing(f"{where}: no {audio_format} file for {utt_id}", options)
                continue
            speaker = utt_id.split("_")[0]
            supervisions.append(
                SupervisionSegment(
                    id=utt_id,
                    recording_id=utt_id,
                    start=0.0,
                    duration=duration[utt_id],
                    text=text,
                    speaker=speaker,
                    gender=genders.get(speaker),
                )
            )

        def describe(sup: SupervisionSegment) -> dict[str, Any]:
            return {
                "raw_text": sup.text or "",
                "speaker": sup.speaker,
                "translation": None,
                "custom": {"book": sup.id.split("_")[1] if "_" in sup.id else None},
            }

        cuts_by_split[split] = _contract_cuts(
            recordings, supervisions, None, options, findings, describe
        )
    report = _base_report(options, "mls", seed)
    report["audio_format"] = audio_format
    return _write_manifests(cuts_by_split, manifest_dir, report, findings)


def _read_mls_transcripts(path: Path) -> dict[str, tuple[int, str]]:
    """``<utterance id><TAB><text>`` lines by id, with their line numbers."""
    if not path.is_file():
        raise CorpusLayoutError(f"{path}: no such file (MLS split transcripts)")
    transcripts = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if line.count("\t") != 1:
            raise CorpusLayoutError(f"{path}:{line_no}: expected '<utterance id><TAB><text>'")
        utt_id, text = line.split("\t")
        transcripts[utt_id] = (line_no, text)
    return transcripts


def _mls_genders(path: Path) -> dict[str, str]:
    """Speaker -> gender from ``metainfo.txt`` (``SPEAKER | GENDER | ...``), if there is one."""
    if not path.is_file():
        return {}
    genders = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        fields = [f.strip() for f in line.split("|")]
        if len(fields) >= 2 and fields[0]:
            genders[fields[0]] = fields[1]
    return genders


# --------------------------------------------------------------------------------------------
# FLEURS

_FLEURS_FIELDS = 7  # id, file name, raw text, normalised text, characters, samples, gender


def _read_fleurs_tsv(path: Path) -> list[tuple[int, list[str]]]:
    if not path.is_file():
        raise CorpusLayoutError(f"{path}: no such file (FLEURS split table)")
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != _FLEURS_FIELDS:
            raise CorpusLayoutError(
                f"{path}:{line_no}: {len(fields)} tab-separated fields, expected "
                f"{_FLEURS_FIELDS} (id, file, raw text, text, characters, samples, gender)"
            )
        rows.append((line_no, fields))
    return rows


def _fleurs_translations(translation_root: Path) -> dict[str, str]:
    """English raw sentences of the ``en_us`` release by FLoRes id (the same in every language)."""
    english: dict[str, str] = {}
    for split in SPLITS:
        for _, fields in _read_fleurs_tsv(translation_root / f"{split}.tsv"):
            english.setdefault(fields[0], fields[2])
    return english


def prepare_fleurs(
    corpus_config: Mapping[str, Any],
    audio_dir: str | Path,
    manifest_dir: str | Path,
    seed: int,
    progress: bool = True,
) -> dict[str, Any]:
    """FLEURS nl_nl through ``lhotse.recipes.prepare_fleurs``; returns the report.

    ``root`` is the ``nl_nl`` folder; ``translation_root`` (optional) the ``en_us`` one.
    Lhotse expects the layout its own downloader writes (``<lang>/<split>/*.wav`` and
    ``metadata/<lang>/<split>.tsv``), which the scratch folder provides. FLEURS publishes no
    speaker ids (Lhotse's ``<sentence>_<n>`` is a count, not a person), so every recording is
    its own speaker, ``<name>-utt-<file>``. ``custom.prompt_id`` is the FLoRes sentence id.
    """
    del audio_dir, progress
    options = _Options.from_config(corpus_config, "fleurs", "fleurs-nl", "read-wikipedia")
    manifest_dir = Path(manifest_dir)
    language = corpus_config.get("fleurs_language", "nl_nl")
    translation_root = corpus_config.get("translation_root")
    english = _fleurs_translations(Path(translation_root)) if translation_root else {}

    findings = _Findings()
    cuts_by_split: dict[str, list[Cut]] = {}
    with _Scratch(manifest_dir) as scratch:
        for split in SPLITS:
            table = options.root / f"{split}.tsv"
            audio = options.root / "audio" / split
            audio = audio if audio.is_dir() else options.root / split
            if not audio.is_dir():
                raise CorpusLayoutError(f"{options.root}: no audio/{split}/ nor {split}/ folder")
            kept = []
            for line_no, fields in _read_fleurs_tsv(table):
                if (audio / fields[1]).is_file():
                    kept.append("\t".join(fields))
                else:
                    findings.missing(
                        f"{table}:{line_no}: no audio file {audio / fields[1]}", options
                    )
            if not kept:
                raise CorpusLayoutError(f"{table}: no utterance with audio; {_EMPTY_SPLIT}")
            scratch.link(f"{language}/{split}", audio)
            scratch.write(f"metadata/{language}/{split}.tsv", "".join(f"{k}\n" for k in kept))
        manifests = _run_lhotse(
            lhotse_recipes.prepare_fleurs,
            options.root,
            scratch.path,
            scratch.path / "lhotse",
            languages=language,
            num_jobs=options.num_jobs,
        )[language]

        def describe(sup: SupervisionSegment) -> dict[str, Any]:
            prompt_id = sup.id.split("_")[0]
            return {
                # Lhotse's id counts repeats of a sentence; the file name is unique.
                "id": sup.recording_id,
                "raw_text": (sup.custom or {}).get("raw_text") or sup.text or "",
                "speaker": f"utt-{sup.recording_id}",
                "translation": english.get(prompt_id),
                "custom": {"prompt_id": prompt_id},
            }

        for split in SPLITS:
            cuts_by_split[split] = _contract_cuts(
                manifests[split]["recordings"],
                manifests[split]["supervisions"],
                scratch,
                options,
                findings,
                describe,
            )
    report = _base_report(options, "fleurs", seed)
    report["translation_root"] = str(translation_root) if translation_root else None
    return _write_manifests(cuts_by_split, manifest_dir, report, findings)


# --------------------------------------------------------------------------------------------
# VoxPopuli

# What Lhotse's VoxPopuli ASR recipe reads from the transcript table ("|"-separated).
_VOXPOPULI_COLUMNS = (
    "session_id",
    "split",
    "start_time",
    "end_time",
    "speaker_id",
    "gender",
    "normed_text",
    "original_text",
)


def prepare_voxpopuli(
    corpus_config: Mapping[str, Any],
    audio_dir: str | Path,
    manifest_dir: str | Path,
    seed: int,
    progress: bool = True,
) -> dict[str, Any]:
    """VoxPopuli Dutch ASR data through ``lhotse.recipes.prepare_voxpopuli``; returns the report.

    Lhotse's recipe downloads ``asr_nl.tsv.gz`` unless the file is already in its output
    folder, and scans ``raw_audios/nl`` for every ``.ogg``; the scratch folder gives it the
    local table and links to just the sessions the table names, found in
    ``raw_audios/original/<year>/`` (or ``raw_audios/nl/<year>/``). Utterances are stretches
    of the session recordings; the text is the original transcript, normalised.
    """
    del audio_dir, progress
    options = _Options.from_config(corpus_config, "voxpopuli", "voxpopuli-nl", "parliament")
    manifest_dir = Path(manifest_dir)
    language = options.language
    table = Path(corpus_config.get("annotations", options.root / f"asr_{language}.tsv.gz"))
    rows = _read_tsv(table, _VOXPOPULI_COLUMNS, delimiter="|")
    sessions = sorted({r["session_id"] for r in rows if r["split"] in SPLITS})

    findings = _Findings()
    audio_of = {}
    for session in sessions:
        audio = _voxpopuli_session_audio(options.root, session, language)
        if audio is None:
            where = f"{options.root}/raw_audios/{{original,{language}}}/{session[:4]}/"
            findings.missing(f"{table}: no audio for session {session} in {where}", options)
        else:
            audio_of[session] = audio
    for split in SPLITS:
        if not any(r["split"] == split and r["session_id"] in audio_of for r in rows):
            raise CorpusLayoutError(f"{table}: no {split} utterance with audio; {_EMPTY_SPLIT}")

    cuts_by_split: dict[str, list[Cut]] = {}
    with _Scratch(manifest_dir) as scratch:
        for audio in audio_of.values():
            scratch.link(f"raw_audios/{language}/{audio.name}", audio)
        scratch.link(f"lhotse/asr_{language}.tsv.gz", table)
        manifests = _run_lhotse(
            lhotse_recipes.prepare_voxpopuli,
            options.root,
            scratch.path,
            scratch.path / "lhotse",
            task="asr",
            lang=language,
            num_jobs=options.num_jobs,
        )

        def describe(sup: SupervisionSegment) -> dict[str, Any]:
            return {
                "raw_text": (sup.custom or {}).get("orig_text") or sup.text or "",
                "speaker": sup.speaker,
                "translation": None,
                "custom": {"session": sup.recording_id},
            }

        for split in SPLITS:
            cuts_by_split[split] = _contract_cuts(
                manifests[split]["recordings"],
                manifests[split]["supervisions"],
                scratch,
                options,
                findings,
                describe,
            )
    report = _base_report(options, "voxpopuli", seed)
    report["annotations"] = str(table)
    return _write_manifests(cuts_by_split, manifest_dir, report, findings)


def _voxpopuli_session_audio(root: Path, session: str, language: str) -> Path | None:
    year = session[:4]
    for candidate in (
        root / "raw_audios" / "original" / year / f"{session}_original.ogg",
        root / "raw_audios" / language / year / f"{session}_{language}.ogg",
    ):
        if candidate.is_file():
            return candidate
    return None
