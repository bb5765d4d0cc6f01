"""Common Voice (+ CoVoST 2), MLS, FLEURS and VoxPopuli from fixtures in their native layouts."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet

from sslgrid.audio import AudioError
from sslgrid.corpora.public import (
    CorpusLayoutError,
    CovostEntry,
    commonvoice_region,
    prepare_commonvoice,
    prepare_fleurs,
    prepare_mls,
    prepare_voxpopuli,
    read_covost,
    select_commonvoice_clips,
)

SPLITS = ("train", "dev", "test")
# Common Voice ships MP3; libsndfile reads and writes it from version 1.1 on. Where it cannot,
# the fixture falls back to WAV clips, which the recipe reads the same way.
CV_FORMAT = "MP3" if "MP3" in sf.available_formats() else "WAV"
CV_EXT = ".mp3" if CV_FORMAT == "MP3" else ".wav"


def write_tone(
    path: Path, seconds: float, rate: int, fmt: str | None = None, subtype: str | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(seconds * rate))) / rate
    samples = (0.1 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    sf.write(path, samples, rate, format=fmt, subtype=subtype)


def write_table(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]], sep="\t") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(sep.join(r) + "\n" for r in [header, *rows])
    path.write_bytes(gzip.compress(text.encode()) if path.suffix == ".gz" else text.encode())


def load_cuts(manifest_dir: Path) -> dict[str, dict[str, object]]:
    return {
        split: {c.id: c for c in CutSet.from_file(manifest_dir / f"cuts_{split}.jsonl.gz")}
        for split in SPLITS
    }


# --------------------------------------------------------------------------------------------
# Common Voice + CoVoST 2

CV_HEADER = (
    "client_id path sentence_id sentence sentence_domain up_votes down_votes age gender "
    "accents variant locale segment"
).split()
# clip number -> (speaker, sentence, accents); the sentence keeps Common Voice's raw form.
CV_CLIPS = {
    1: ("spk-a", "Hallo, wereld!", "Vlaams"),
    2: ("spk-b", "Het is 5 uur.", "Nederlands Nederlands"),
    3: ("spk-a", '"Goedemorgen", zei ze.', ""),
    4: ("spk-c", "Dag allemaal.", ""),
    5: ("spk-d", "Tot ziens.", "Belgisch Nederlands"),
    6: ("spk-e", "Nog een zin.", ""),
    7: ("spk-c", "Andere zin.", ""),
    8: ("spk-f", "Dag allemaal.", ""),
    10: ("spk-b", "...", ""),
    11: ("spk-b", "Deze clip ontbreekt.", ""),
}
CV_SPLITS = {"train": [1, 2, 3, 10, 11], "dev": [4], "test": [5]}
CV_VALIDATED = [1, 2, 3, 4, 5, 6, 7, 8]
COVOST = [
    ("1", "Hello, world!", "train"),
    ("4", "Good day, everyone.", "dev"),
    ("5", "Goodbye.", "test"),
    ("6", "One more sentence.", "train_covost"),
    ("9", "Not in this release.", "train"),
]


def cv_row(number: int) -> list[str]:
    speaker, sentence, accents = CV_CLIPS[number]
    path = f"common_voice_nl_{number}.mp3"  # the tables name .mp3 whatever the fixture wrote
    return [speaker, path, f"s{number}", sentence, "", "2", "0", "", "", accents, "", "nl", ""]


def make_commonvoice(root: Path) -> tuple[Path, Path]:
    language_dir = root / "cv-corpus-17.0" / "nl"
    for number in CV_CLIPS:
        if number != 11:  # listed in train.tsv, missing from clips/
            write_tone(
                language_dir / f"clips/common_voice_nl_{number}{CV_EXT}", 0.5, 48000, CV_FORMAT
            )
    for split, numbers in CV_SPLITS.items():
        write_table(language_dir / f"{split}.tsv", CV_HEADER, [cv_row(n) for n in numbers])
    write_table(language_dir / "validated.tsv", CV_HEADER, [cv_row(n) for n in CV_VALIDATED])
    covost = root / "covost_v2.nl_en.tsv"
    write_table(
        covost,
        ["path", "sentence", "translation", "client_id", "split"],
        [[f"common_voice_nl_{n}.mp3", CV_CLIPS.get(int(n), ("", "x", ""))[1], t, "c", s]
         for n, t, s in COVOST],
    )  # fmt: skip
    return language_dir, covost


@pytest.fixture(scope="module")
def commonvoice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, Path]:
    tmp = tmp_path_factory.mktemp("cv")
    language_dir, covost = make_commonvoice(tmp)
    if CV_EXT != ".mp3":  # the tables name .mp3 files: rename them in the tables too
        for tsv in language_dir.glob("*.tsv"):
            tsv.write_text(tsv.read_text().replace(".mp3", CV_EXT))
    config = {"root": str(language_dir), "covost": str(covost), "on_error": "skip", "region": "nl"}
    report = prepare_commonvoice(config, tmp / "audio", tmp / "manifests", seed=0)
    return language_dir, covost, report, tmp / "manifests"


def test_commonvoice_official_splits_with_covost_translations(commonvoice) -> None:
    language_dir, _, report, manifests = commonvoice
    cuts = load_cuts(manifests)
    assert {s: sorted(c) for s, c in cuts.items()} == {
        "train": ["cv-nl-common_voice_nl_1", "cv-nl-common_voice_nl_2", "cv-nl-common_voice_nl_3"],
        "dev": ["cv-nl-common_voice_nl_4"],
        "test": ["cv-nl-common_voice_nl_5"],
    }
    cut = cuts["train"]["cv-nl-common_voice_nl_1"]
    (sup,) = cut.supervisions
    assert sup.text == "hallo wereld" and sup.speaker == "cv-nl-spk-a" and sup.language == "nl"
    assert sup.custom == {
        "translation": "Hello, world!",
        "orig_text": "Hallo, wereld!",
        "domain": "read-crowdsourced",
        "region": "vl",  # said "Vlaams"
        "corpus": "cv-nl",
        "accents": "Vlaams",
    }
    assert cut.recording.sources[0].source == str(language_dir / f"clips/common_voice_nl_1{CV_EXT}")
    assert cut.sampling_rate == 16000 and cut.load_audio().shape[0] == 1
    assert abs(cut.load_audio().shape[1] - 8000) < 800  # MP3 frames pad the end a little
    train = cuts["train"]
    assert train["cv-nl-common_voice_nl_2"].supervisions[0].text == "het is vijf uur"
    assert train["cv-nl-common_voice_nl_2"].supervisions[0].custom["region"] == "nl"
    assert train["cv-nl-common_voice_nl_2"].supervisions[0].custom["translation"] is None
    assert train["cv-nl-common_voice_nl_3"].supervisions[0].text == "goedemorgen zei ze"
    assert cuts["test"]["cv-nl-common_voice_nl_5"].supervisions[0].custom["region"] == "vl"
    assert cuts["dev"]["cv-nl-common_voice_nl_4"].supervisions[0].custom["translation"] == (
        "Good day, everyone."
    )
    assert report["empty_text"]["count"] == 1  # "..."
    assert report["missing_audio"]["count"] == 1
    assert "common_voice_nl_11" in report["missing_audio"]["examples"][0]
    assert report["translations"] == {"joined": 3, "missing": 2}
    assert not list(manifests.glob(".lhotse-*"))  # the scratch folder is gone


def test_select_commonvoice_clips_from_validated_and_covost(commonvoice) -> None:
    language_dir, covost_path, _, _ = commonvoice
    stems = lambda rows: sorted(int(r["path"].split("_")[-1].split(".")[0]) for r in rows)  # noqa: E731
    splits, left_out = select_commonvoice_clips(language_dir, train_tsv="validated")
    assert {s: stems(r) for s, r in splits.items()} == {
        "train": [1, 2, 3, 6],
        "dev": [4],
        "test": [5],
    }
    assert left_out == {"held_out_clip": 2, "held_out_speaker": 1, "held_out_sentence": 1}

    covost = read_covost(covost_path)
    assert covost["common_voice_nl_6"] == CovostEntry("One more sentence.", "train")
    splits, left_out = select_commonvoice_clips(language_dir, covost=covost, splits_from="covost")
    assert {s: stems(r) for s, r in splits.items()} == {"train": [1, 6], "dev": [4], "test": [5]}
    assert left_out == {"covost_clips_not_in_validated": 1}


@pytest.mark.parametrize(
    ("accents", "variant", "region"),
    [
        ("Vlaams", "", "vl"),
        ("Belgisch Nederlands", "", "vl"),
        ("Nederlands Nederlands", "", "nl"),
        ("", "", "nl"),
        ("Surinaams", "", "nl"),
        ("West-Vlaanderen", "", "vl"),
    ],
)
def test_commonvoice_region_from_accent(accents: str, variant: str, region: str) -> None:
    assert commonvoice_region(accents, variant, default="nl") == region


def test_commonvoice_table_without_columns_names_the_file(tmp_path: Path) -> None:
    language_dir = tmp_path / "nl"
    (language_dir / "clips").mkdir(parents=True)
    for split in SPLITS:
        write_table(language_dir / f"{split}.tsv", ["path", "text"], [["a.mp3", "hallo"]])
    with pytest.raises(
        CorpusLayoutError, match=r"dev.tsv:1: no column \['sentence', 'client_id'\]"
    ):
        prepare_commonvoice({"root": str(language_dir)}, tmp_path, tmp_path / "m", seed=0)


# --------------------------------------------------------------------------------------------
# MLS

MLS = {
    "train": [
        ("1724_1000_000001", "hallo wereld", 1.0),
        ("1724_1000_000002", "het is vijf uur", 1.5),
    ],
    "dev": [("2000_300_000010", "goede morgen", 1.0)],
    "test": [("3000_400_000020", "tot ziens", 0.5)],
}


def make_mls(root: Path, audio_format: str = "flac") -> Path:
    """The flac release at 16 kHz, or the opus one (Ogg Opus, decoded at 48 kHz)."""
    lang_dir = root / f"mls_dutch{'_opus' if audio_format == 'opus' else ''}"
    write = {"flac": {"rate": 16000}, "opus": {"rate": 48000, "fmt": "OGG", "subtype": "OPUS"}}
    metainfo = [
        "SPEAKER   |   GENDER   | PARTITION  |  MINUTES   |  BOOK ID   |  TITLE  |  CHAPTER",
        "1724      |     F      |   train    |   10.0     |    1000    | Boek    | Een",
        "2000      |     M      |    dev     |    5.0     |     300    | Boek    | Twee",
        "3000      |     F      |    test    |    5.0     |     400    | Boek    | Drie",
    ]
    lang_dir.mkdir(parents=True)
    (lang_dir / "metainfo.txt").write_text("\n".join(metainfo) + "\n")
    for split, utterances in MLS.items():
        lines = []
        for utt_id, text, seconds in utterances:
            speaker, book, _ = utt_id.split("_")
            path = lang_dir / split / "audio" / speaker / book / f"{utt_id}.{audio_format}"
            write_tone(path, seconds, **write[audio_format])
            lines.append(f"{utt_id}\t{text}\n")
        (lang_dir / split / "transcripts.txt").write_text("".join(lines))
    return lang_dir


@pytest.mark.parametrize("audio_format", ["flac", "opus"])
def test_mls_official_splits(tmp_path: Path, audio_format: str) -> None:
    root = make_mls(tmp_path, audio_format)
    report = prepare_mls({"root": str(root), "region": "nl"}, tmp_path, tmp_path / "m", seed=0)
    cuts = load_cuts(tmp_path / "m")
    assert {s: sorted(c) for s, c in cuts.items()} == {
        "train": ["mls-nl-1724_1000_000001", "mls-nl-1724_1000_000002"],
        "dev": ["mls-nl-2000_300_000010"],
        "test": ["mls-nl-3000_400_000020"],
    }
    cut = cuts["train"]["mls-nl-1724_1000_000002"]
    (sup,) = cut.supervisions
    assert (sup.text, sup.speaker, sup.gender) == ("het is vijf uur", "mls-nl-1724", "f")
    assert sup.custom == {
        "translation": None,
        "orig_text": "het is vijf uur",
        "domain": "audiobook",
        "region": "nl",
        "corpus": "mls-nl",
        "book": "1000",
    }
    assert cut.duration == 1.5 and cut.sampling_rate == 16000
    assert cut.load_audio().shape == (1, 24000)
    assert cut.recording.sources[0].source == str(
        root / f"train/audio/1724/1000/1724_1000_000002.{audio_format}"
    )
    assert report["audio_format"] == audio_format
    assert report["splits"]["train"]["num_speakers"] == 1


def test_mls_malformed_transcript_line_names_file_and_line(tmp_path: Path) -> None:
    root = make_mls(tmp_path)
    transcripts = root / "dev" / "transcripts.txt"
    transcripts.write_text(transcripts.read_text() + "2000_300_000011 no tab here\n")
    with pytest.raises(CorpusLayoutError, match=rf"{transcripts}:2: expected '<utterance id>"):
        prepare_mls({"root": str(root)}, tmp_path, tmp_path / "m", seed=0)


# --------------------------------------------------------------------------------------------
# FLEURS


def fleurs_row(prompt: str, file: str, raw: str, seconds: float, gender: str) -> list[str]:
    text = raw.lower().strip(".")
    chars = " ".join("|".join(text.split())) + " |"
    return [prompt, file, raw, text, chars, str(int(seconds * 16000)), gender]


def make_fleurs(root: Path) -> tuple[Path, Path]:
    nl, en = root / "nl_nl", root / "en_us"
    rows = {
        "train": [
            ("1001", "111.wav", "Het is 20 graden.", 1.0, "FEMALE"),
            ("1001", "112.wav", "Het is 20 graden.", 1.5, "MALE"),
        ],
        "dev": [("1002", "222.wav", "Goedemiddag, Brussel!", 1.0, "MALE")],
        "test": [
            ("1003", "333.wav", "Tot morgen.", 0.5, "FEMALE"),
            ("1005", "334.wav", "Tot straks.", 0.5, "MALE"),
        ],
    }
    for split, split_rows in rows.items():
        for _, file, _, seconds, _ in split_rows:
            write_tone(nl / "audio" / split / file, seconds, 16000)
        write_table(
            nl / f"{split}.tsv",
            fleurs_row(*split_rows[0]),
            [fleurs_row(*r) for r in split_rows[1:]],
        )
    english = {"train": [("1001", "9.wav", "It is 20 degrees.", 1.0, "MALE")],
               "dev": [("1002", "8.wav", "Good afternoon, Brussels!", 1.0, "MALE")],
               "test": [("1004", "7.wav", "Something else.", 1.0, "MALE")]}  # fmt: skip
    for split, split_rows in english.items():
        write_table(en / f"{split}.tsv", fleurs_row(*split_rows[0]), [])
    return nl, en


def test_fleurs_splits_and_english_by_flores_id(tmp_path: Path) -> None:
    nl, en = make_fleurs(tmp_path)
    config = {"root": str(nl), "translation_root": str(en), "region": "nl"}
    report = prepare_fleurs(config, tmp_path, tmp_path / "m", seed=0)
    cuts = load_cuts(tmp_path / "m")
    assert {s: sorted(c) for s, c in cuts.items()} == {
        "train": ["fleurs-nl-111", "fleurs-nl-112"],
        "dev": ["fleurs-nl-222"],
        "test": ["fleurs-nl-333", "fleurs-nl-334"],
    }
    (sup,) = cuts["train"]["fleurs-nl-112"].supervisions
    assert (sup.text, sup.speaker, sup.gender) == (
        "het is twintig graden",
        "fleurs-nl-utt-112",
        "m",
    )
    assert sup.custom == {
        "translation": "It is 20 degrees.",
        "orig_text": "Het is 20 graden.",
        "domain": "read-wikipedia",
        "region": "nl",
        "corpus": "fleurs-nl",
        "prompt_id": "1001",
    }
    assert cuts["train"]["fleurs-nl-112"].load_audio().shape == (1, 24000)
    assert cuts["dev"]["fleurs-nl-222"].supervisions[0].text == "goedemiddag brussel"
    assert cuts["test"]["fleurs-nl-333"].supervisions[0].custom["translation"] is None
    assert report["translations"] == {"joined": 3, "missing": 2}


def test_fleurs_missing_audio_strict_names_table_line_then_skip(tmp_path: Path) -> None:
    nl, _ = make_fleurs(tmp_path)
    (nl / "audio" / "test" / "333.wav").unlink()
    with pytest.raises(AudioError, match=rf"^{nl / 'test.tsv'}:1: no audio file .*333.wav$"):
        prepare_fleurs({"root": str(nl)}, tmp_path, tmp_path / "m", seed=0)
    report = prepare_fleurs({"root": str(nl), "on_error": "skip"}, tmp_path, tmp_path / "m", seed=0)
    assert report["missing_audio"]["count"] == 1 and report["splits"]["test"]["utterances"] == 1


# --------------------------------------------------------------------------------------------
# VoxPopuli

VOXPOPULI_HEADER = (
    "id_|session_id|lang|split|original_text|normed_text|speaker_id|gender|"
    "is_gold_transcript|accent|start_time|end_time"
).split("|")


def make_voxpopuli(root: Path) -> Path:
    sessions = {
        "20190102-0900-PLENARY-3": 6.0,
        "20190103-0900-PLENARY-4": 4.0,
        "20190104-0900-PLENARY-5": 2.0,
    }
    for session, seconds in sessions.items():
        path = root / "raw_audios/original/2019" / f"{session}_original.ogg"
        write_tone(path, seconds, 16000, "OGG", subtype="VORBIS")
    s3, s4, s5 = sessions
    rows = [
        ("a", s3, "train", "Voorzitter, ik dank u.", "111", "male", "0.5", "2.5"),
        ("b", s3, "train", "Het gaat om 12 lidstaten.", "222", "female", "3.0", "5.5"),
        ("c", s4, "dev", "Dank u wel.", "333", "male", "0.0", "2.0"),
        ("d", s4, "test", "Tot morgen!", "444", "female", "2.0", "3.5"),
        ("e", s5, "train", "Ja.", "111", "male", "0.0", "1.0"),
    ]
    table = root / "asr_nl.tsv.gz"
    write_table(
        table,
        VOXPOPULI_HEADER,
        [[i, s, "nl", split, text, text.lower(), spk, g, "True", "None", start, end]
         for i, s, split, text, spk, g, start, end in rows],
        sep="|",
    )  # fmt: skip
    return root


def test_voxpopuli_segments_of_sessions_offline(tmp_path: Path) -> None:
    root = make_voxpopuli(tmp_path / "voxpopuli")
    report = prepare_voxpopuli({"root": str(root)}, tmp_path, tmp_path / "m", seed=0)
    cuts = load_cuts(tmp_path / "m")
    assert {s: sorted(c) for s, c in cuts.items()} == {
        "train": [
            "voxpopuli-nl-20190102-0900-PLENARY-3-1",
            "voxpopuli-nl-20190102-0900-PLENARY-3-2",
            "voxpopuli-nl-20190104-0900-PLENARY-5-1",
        ],
        "dev": ["voxpopuli-nl-20190103-0900-PLENARY-4-1"],
        "test": ["voxpopuli-nl-20190103-0900-PLENARY-4-2"],
    }
    cut = cuts["train"]["voxpopuli-nl-20190102-0900-PLENARY-3-2"]
    (sup,) = cut.supervisions
    assert (cut.start, cut.duration) == (3.0, 2.5)
    assert (sup.text, sup.speaker, sup.gender) == (
        "het gaat om twaalf lidstaten",
        "voxpopuli-nl-222",
        "f",
    )
    assert sup.custom["orig_text"] == "Het gaat om 12 lidstaten."
    assert sup.custom["domain"] == "parliament" and sup.custom["translation"] is None
    assert cut.recording.sources[0].source == str(
        root / "raw_audios/original/2019/20190102-0900-PLENARY-3_original.ogg"
    )
    assert cut.load_audio().shape == (1, 40000)
    assert report["splits"]["train"]["num_speakers"] == 2


def test_voxpopuli_missing_session_names_the_table(tmp_path: Path) -> None:
    root = make_voxpopuli(tmp_path / "voxpopuli")
    (root / "raw_audios/original/2019/20190104-0900-PLENARY-5_original.ogg").unlink()
    with pytest.raises(AudioError, match="no audio for session 20190104-0900-PLENARY-5"):
        prepare_voxpopuli({"root": str(root)}, tmp_path, tmp_path / "m", seed=0)
    report = prepare_voxpopuli(
        {"root": str(root), "on_error": "skip"}, tmp_path, tmp_path / "m", seed=0
    )
    assert report["missing_audio"]["count"] == 1
    assert report["splits"]["train"]["utterances"] == 2
