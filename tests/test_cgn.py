"""CGN: TextGrids (long and short format, Latin-1, gzip), markers, speakers, the recipe."""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet

from sslgrid.audio import AudioError
from sslgrid.corpora.cgn import (
    CgnSpeaker,
    TextGridError,
    parse_textgrid,
    prepare_cgn,
    read_speakers,
    read_textgrid,
    strip_cgn_markers,
)

TierSpec = Mapping[str, Sequence[tuple[float, float, str]]]


# --------------------------------------------------------------------------------------------
# Fixture: a tiny corpus in the distributed layout


def textgrid_long(tiers: TierSpec, xmax: float) -> str:
    """A TextGrid in Praat's long text format, as CGN distributes it."""
    lines = [
        'File type = "ooTextFile"',
        'Object class = "TextGrid"',
        "",
        "xmin = 0 ",
        f"xmax = {xmax} ",
        "tiers? <exists> ",
        f"size = {len(tiers)} ",
        "item []: ",
    ]
    for number, (name, intervals) in enumerate(tiers.items(), start=1):
        lines += [
            f"    item [{number}]:",
            '        class = "IntervalTier" ',
            f'        name = "{name}" ',
            "        xmin = 0 ",
            f"        xmax = {xmax} ",
            f"        intervals: size = {len(intervals)} ",
        ]
        for k, (start, end, text) in enumerate(intervals, start=1):
            quoted = text.replace('"', '""')
            lines += [
                f"        intervals [{k}]:",
                f"            xmin = {start} ",
                f"            xmax = {end} ",
                f'            text = "{quoted}" ',
            ]
    return "\n".join(lines) + "\n"


def textgrid_short(tiers: TierSpec, xmax: float) -> str:
    """The same TextGrid in the short text format (values only)."""
    lines = ['File type = "ooTextFile short"', '"TextGrid"', "", "0", str(xmax), "<exists>"]
    lines.append(str(len(tiers)))
    for name, intervals in tiers.items():
        lines += ['"IntervalTier"', f'"{name}"', "0", str(xmax), str(len(intervals))]
        for start, end, text in intervals:
            lines += [str(start), str(end), '"' + text.replace('"', '""') + '"']
    return "\n".join(lines) + "\n"


TIERS_A1: TierSpec = {
    "V40001": [
        (0, 1.5, "één café, ggg ja."),
        (1.5, 2.0, ""),
        (2.0, 3.5, "dat is ge*a gewoon*v mooi*d."),
        (3.5, 6.0, "ggg"),
    ],
    "V40002": [(0, 3.0, ""), (3.0, 5.0, "Xxx de zee*z is koud*u!"), (5.0, 6.0, "xxx.")],
    "BACKGROUND": [(0, 6.0, "auto rijdt voorbij")],
    "COMMENT": [(0, 6.0, "opname buiten")],
}
TIERS_O2: TierSpec = {"V40003": [(0, 2.0, "Het is 3 uur."), (2.0, 4.0, "'t Is mooi weer")]}
TIERS_A3: TierSpec = {"N01001": [(0, 2.0, "hallo allemaal")]}
TIERS_C4: TierSpec = {"V40004": [(0, 2.0, "hallo met mij")], "V40005": [(2.0, 4.0, "ja dag")]}
TIERS_A5: TierSpec = {
    "V40006": [(0, 3.0, "nog een spreker")],
    "UNKNOWN": [(3.0, 4.0, "iets anders")],
}
SPEAKERS_TXT = (
    "type\tcreator\tversion\tupdate\tID\tsex\tbirthYear\tbirthPlace\tbirthRegion\n"
    "speaker\tcgn\t1\t2004\tV40001\tsex1\t1950\tLiège\tregW3\n"
    "speaker\tcgn\t1\t2004\tV40002\tsex2\t1971\tGent\tregV2\n"
    "speaker\tcgn\t1\t2004\tV40003\tsex2\t1980\tBrugge\tregV1\n"
    "speaker\tcgn\t1\t2004\tN01001\tsex1\t1965\tUtrecht\tregN2\n"
    "speaker\tcgn\t1\t2004\tV40004\tsexX\tunknown\t\t\n"
    "speaker\tcgn\t1\t2004\tV40005\tsex1\t1990\tLeuven\tregV3\n"
)


def write_wav(path: Path, seconds: float, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)


def write_ort(path: Path, text: str) -> None:
    """Latin-1, gzip-compressed if the name ends in ``.gz`` (both occur in the corpus)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("latin-1")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def make_cgn(root: Path) -> Path:
    """Five recordings: Flemish a/o/c (8 kHz telephone) and Netherlandic a."""
    ort, wav = root / "data/annot/text/ort", root / "data/audio/wav"
    write_ort(ort / "comp-a/vl/av400001.ort.gz", textgrid_long(TIERS_A1, 6.0))
    write_wav(wav / "comp-a/vl/av400001.wav", 6.0)
    write_ort(ort / "comp-o/vl/ov400002.ort", textgrid_short(TIERS_O2, 4.0))
    write_wav(wav / "comp-o/vl/ov400002.wav", 4.0)
    write_ort(ort / "comp-a/nl/an000003.ort", textgrid_short(TIERS_A3, 2.0))
    write_wav(wav / "comp-a/nl/an000003.wav", 2.0)
    write_ort(ort / "comp-c/vl/cv400004.ort", textgrid_long(TIERS_C4, 4.0))
    write_wav(wav / "comp-c/vl/cv400004.wav", 4.0, rate=8000)
    write_ort(ort / "comp-a/vl/av400005.ort", textgrid_long(TIERS_A5, 4.0))
    write_wav(wav / "comp-a/vl/av400005.wav", 4.0)
    meta = root / "data/meta/text/speakers.txt"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_bytes(SPEAKERS_TXT.encode("latin-1"))
    return root


@pytest.fixture(scope="module")
def cgn_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cgn(tmp_path_factory.mktemp("cgn"))


def load_cuts(manifest_dir: Path) -> dict[str, CutSet]:
    return {
        s: CutSet.from_file(manifest_dir / f"cuts_{s}.jsonl.gz") for s in ("train", "dev", "test")
    }


def by_id(cuts: Mapping[str, CutSet]) -> dict[str, tuple[str, object]]:
    return {cut.id: (split, cut) for split, cutset in cuts.items() for cut in cutset}


# --------------------------------------------------------------------------------------------
# TextGrids


def test_long_and_short_formats_read_alike(tmp_path: Path) -> None:
    long = parse_textgrid(textgrid_long(TIERS_A1, 6.0), "long.ort")
    short = parse_textgrid(textgrid_short(TIERS_A1, 6.0), "short.ort")
    assert [(t.name, t.kind) for t in long] == [(t.name, t.kind) for t in short]
    assert [t.name for t in long] == ["V40001", "V40002", "BACKGROUND", "COMMENT"]
    strip = [[(i.start, i.end, i.text) for i in t.intervals] for t in short]
    assert strip == [[(i.start, i.end, i.text) for i in t.intervals] for t in long]
    assert strip[0][0] == (0.0, 1.5, "één café, ggg ja.")
    # The interval's line is where its text is, so messages point at it.
    assert long[0].intervals[0].line == 18


def test_textgrid_quotes_and_point_tiers() -> None:
    text = (
        'File type = "ooTextFile"\nObject class = "TextGrid"\n\nxmin = 0\nxmax = 2\n'
        "tiers? <exists>\nsize = 2\nitem []:\n"
        '    item [1]:\n        class = "TextTier"\n        name = "beats"\n'
        "        xmin = 0\n        xmax = 2\n        points: size = 1\n"
        '        points [1]:\n            number = 0.5\n            mark = "x"\n'
        '    item [2]:\n        class = "IntervalTier"\n        name = "V1"\n'
        "        xmin = 0\n        xmax = 2\n        intervals: size = 1\n"
        "        intervals [1]:\n            xmin = 0\n            xmax = 2\n"
        '            text = "hij zei ""hallo"""\n'
    )
    tiers = parse_textgrid(text, "q.TextGrid")
    assert [(t.kind, len(t.intervals)) for t in tiers] == [("TextTier", 0), ("IntervalTier", 1)]
    assert tiers[1].intervals[0].text == 'hij zei "hallo"'


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("xmax = 3.5 ", "xmax = 3,5 ", 25, "unreadable '3,5'"),
        ('text = "dat is', 'text = "dat\n is', 26, "unterminated string"),
        ("intervals: size = 4 ", "intervals: size = 5 ", 32, "expected xmin of interval 5"),
        ("xmin = 2.0 ", "xmin = 2.0 seconds", 24, "unexpected word 'seconds'"),
        ("xmax = 3.5 ", "xmax = 1.0 ", 25, "interval 3 of tier 'V40001' ends (1.0)"),
    ],
)
def test_malformed_textgrid_names_file_and_line(
    tmp_path: Path, old: str, new: str, line: int, message: str
) -> None:
    text = textgrid_long(TIERS_A1, 6.0)
    assert old in text
    path = tmp_path / "fv400009.ort.gz"
    write_ort(path, text.replace(old, new, 1))
    with pytest.raises(TextGridError) as err:
        read_textgrid(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert message in str(err.value)


def test_textgrid_reads_latin1_and_honours_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "x.ort"
    write_ort(path, textgrid_short({"V1": [(0, 1, "één café")]}, 1.0))
    assert read_textgrid(path)[0].intervals[0].text == "één café"
    path.write_bytes(textgrid_short({"V1": [(0, 1, "één café")]}, 1.0).encode("utf-16"))
    assert read_textgrid(path)[0].intervals[0].text == "één café"


# --------------------------------------------------------------------------------------------
# Markers and speakers


@pytest.mark.parametrize(
    ("text", "kept", "found"),
    [
        ("één café, ggg ja.", "één café, ja.", {"ggg": 1}),
        ("dat is ge*a gewoon*v mooi*d.", "dat is gewoon mooi.", {"*a": 1, "*v": 1, "*d": 1}),
        ("Xxx de zee*z is koud*u!", "de zee is koud!", {"xxx": 1, "*z": 1, "*u": 1}),
        ("xxx.", "", {"xxx": 1}),
        ("ggg ggg", "", {"ggg": 2}),
        ("'t is zo'n auto*n", "'t is zo'n auto", {"*n": 1}),
        ("een sterretje * alleen", "een sterretje * alleen", {}),
    ],
)
def test_strip_cgn_markers(text: str, kept: str, found: dict[str, int]) -> None:
    assert strip_cgn_markers(text) == (kept, found)


def test_read_speakers_by_header_name(cgn_root: Path) -> None:
    speakers = read_speakers(cgn_root / "data/meta/text/speakers.txt")
    assert speakers["V40001"] == CgnSpeaker("V40001", "m", 1950)
    assert speakers["V40002"] == CgnSpeaker("V40002", "f", 1971)
    assert speakers["V40004"] == CgnSpeaker("V40004", None, None)


def test_read_speakers_without_id_column_names_the_header(tmp_path: Path) -> None:
    path = tmp_path / "speakers.txt"
    path.write_text("sex\tbirthYear\nsex1\t1950\n")
    with pytest.raises(ValueError, match=r"speakers.txt:1: no 'ID' column"):
        read_speakers(path)


# --------------------------------------------------------------------------------------------
# The recipe


def test_prepare_cgn_flemish_default(cgn_root: Path, tmp_path: Path) -> None:
    report = prepare_cgn({"root": str(cgn_root)}, tmp_path / "audio", tmp_path / "m", seed=3)
    cuts = by_id(load_cuts(tmp_path / "m"))
    assert sorted(cuts) == [
        "cgn-av400001-V40001-0001",
        "cgn-av400001-V40001-0003",
        "cgn-av400001-V40002-0002",
        "cgn-av400005-UNKNOWN-0001",
        "cgn-av400005-V40006-0001",
        "cgn-ov400002-V40003-0001",
        "cgn-ov400002-V40003-0002",
    ]  # no telephone (c), no Netherlandic (nl), no empty or marker-only interval
    texts = {cut_id: cut.supervisions[0].text for cut_id, (_, cut) in cuts.items()}
    assert texts["cgn-av400001-V40001-0001"] == "één café ja"
    assert texts["cgn-av400001-V40001-0003"] == "dat is gewoon mooi"
    assert texts["cgn-av400001-V40002-0002"] == "de zee is koud"
    assert texts["cgn-ov400002-V40003-0001"] == "het is drie uur"
    assert texts["cgn-ov400002-V40003-0002"] == "'t is mooi weer"

    _, cut = cuts["cgn-av400001-V40001-0003"]
    (sup,) = cut.supervisions
    assert (cut.start, cut.duration, sup.start, sup.duration) == (2.0, 1.5, 0.0, 1.5)
    assert cut.recording.id == sup.recording_id == "cgn-av400001"
    assert cut.recording.sources[0].source == str(
        cgn_root / "data/audio/wav/comp-a/vl/av400001.wav"
    )
    assert sup.speaker == "cgn-V40001" and sup.gender == "m" and sup.language == "nl"
    assert sup.custom == {
        "translation": None,
        "orig_text": "dat is ge*a gewoon*v mooi*d.",
        "domain": "conversation",
        "region": "vl",
        "component": "a",
        "corpus": "cgn",
        "birth_year": 1950,
    }
    assert cut.load_audio().shape == (1, 24000)
    assert cuts["cgn-ov400002-V40003-0001"][1].supervisions[0].custom["domain"] == "read-speech"
    assert cuts["cgn-av400005-UNKNOWN-0001"][1].supervisions[0].speaker == "cgn-av400005-UNKNOWN"

    assert report["excluded_components"] == ["c", "d"] and report["regions"] == ["vl"]
    assert report["empty_text"]["count"] == 2  # "ggg" and "xxx."
    assert {e["orig_text"] for e in report["empty_text"]["examples"]} == {"ggg", "xxx."}
    assert report["markers"] == {"*a": 1, "*d": 1, "*u": 1, "*v": 1, "*z": 1, "ggg": 2, "xxx": 2}
    assert report["non_speech_tiers"] == 2 and report["empty_intervals"] == 2
    assert report["speakers_without_metadata"] == ["V40006"]


def test_prepare_cgn_splits_are_speaker_disjoint_and_seeded(cgn_root: Path, tmp_path: Path) -> None:
    config = {"root": str(cgn_root), "region": "both", "telephone": "resample"}
    report = prepare_cgn(config, tmp_path / "a", tmp_path / "m1", seed=7, progress=False)
    speakers = [set(report["splits"][s]["speakers"]) for s in ("train", "dev", "test")]
    assert all(speakers)
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])
    cuts = load_cuts(tmp_path / "m1")
    for split, cutset in cuts.items():
        assert {c.supervisions[0].speaker for c in cutset} == set(
            report["splits"][split]["speakers"]
        )
    again = prepare_cgn(config, tmp_path / "a", tmp_path / "m2", seed=7, progress=False)
    assert again["splits"] == report["splits"]


def test_prepare_cgn_region_both_and_resampled_telephone(cgn_root: Path, tmp_path: Path) -> None:
    config = {
        "root": str(cgn_root),
        "region": "both",
        "telephone": "resample",
        "components": ["a", "c"],
    }
    prepare_cgn(config, tmp_path / "a", tmp_path / "m", seed=0, progress=False)
    cuts = by_id(load_cuts(tmp_path / "m"))
    assert cuts["cgn-an000003-N01001-0001"][1].supervisions[0].custom["region"] == "nl"
    assert "cgn-ov400002-V40003-0001" not in cuts  # component o not chosen
    _, phone = cuts["cgn-cv400004-V40005-0001"]
    assert phone.supervisions[0].custom["domain"] == "telephone-switchboard"
    assert phone.sampling_rate == 16000
    assert phone.load_audio().shape == (1, 32000)


def test_prepare_cgn_refuses_telephone_components_unless_asked(
    cgn_root: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"\['c'\] are 8 kHz telephone speech"):
        prepare_cgn({"root": str(cgn_root), "components": ["a", "c"]}, tmp_path, tmp_path, 0)


def test_prepare_cgn_malformed_transcript_strict_and_skip(tmp_path: Path) -> None:
    root = make_cgn(tmp_path / "cgn")
    bad = root / "data/annot/text/ort/comp-o/vl/ov400002.ort"
    lines = bad.read_text(encoding="latin-1").splitlines()
    lines[12] = "0,2"  # the xmin of the tier's first interval
    bad.write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(TextGridError, match=rf"^{bad}:13: unreadable '0,2'"):
        prepare_cgn({"root": str(root)}, tmp_path / "a", tmp_path / "m", seed=0, progress=False)

    config = {"root": str(root), "on_error": "skip"}
    report = prepare_cgn(config, tmp_path / "a", tmp_path / "m", seed=0, progress=False)
    assert report["bad_annotation"]["count"] == 1
    assert report["bad_annotation"]["examples"][0].startswith(f"{bad}:13: ")
    assert not any(
        c.id.startswith("cgn-ov400002") for cs in load_cuts(tmp_path / "m").values() for c in cs
    )


def test_prepare_cgn_missing_and_unreadable_audio(tmp_path: Path) -> None:
    root = make_cgn(tmp_path / "cgn")
    missing = root / "data/audio/wav/comp-o/vl/ov400002.wav"
    missing.unlink()
    ort = root / "data/annot/text/ort/comp-o/vl/ov400002.ort"
    with pytest.raises(AudioError, match=rf"^{ort}: no audio file {missing}$"):
        prepare_cgn({"root": str(root)}, tmp_path / "a", tmp_path / "m", seed=0, progress=False)

    broken = root / "data/audio/wav/comp-a/vl/av400005.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00not really a wav file")
    config = {"root": str(root), "on_error": "skip"}
    report = prepare_cgn(config, tmp_path / "a", tmp_path / "m", seed=0, progress=False)
    assert report["missing_audio"]["count"] == 1 and report["bad_audio"]["count"] == 1
    assert report["bad_audio"]["examples"][0].startswith(f"{broken}: cannot read audio")
    assert report["files_read"] == 1  # only av400001 is left of the Flemish non-telephone files


def test_prepare_cgn_keeps_every_channel_of_a_stereo_recording(tmp_path: Path) -> None:
    root = make_cgn(tmp_path / "cgn")
    stereo = np.zeros((4 * 16000, 2), dtype=np.float32)
    stereo[:, 1] = 0.1  # the second speaker only on the second channel
    sf.write(root / "data/audio/wav/comp-a/vl/av400005.wav", stereo, 16000)
    prepare_cgn({"root": str(root)}, tmp_path / "a", tmp_path / "m", seed=0, progress=False)
    cuts = by_id(load_cuts(tmp_path / "m"))
    _, cut = cuts["cgn-av400005-UNKNOWN-0001"]
    assert cut.load_audio().shape == (2, 16000)  # the features stage averages the channels
    assert cut.supervisions[0].channel == [0, 1]
