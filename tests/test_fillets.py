"""The embedded corpus: dialog scripts, speakers, splits, packages, audio and the manifests."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fillets_fixture import GAME_ROOT, make_fillets_packages
from lhotse import CutSet, RecordingSet, SupervisionSet

from sslgrid.audio import AudioError, load_audio, write_flac
from sslgrid.corpora.debian import ChecksumError, fetch_package, iter_members, sha256_of
from sslgrid.corpora.fillets import (
    Dialog,
    LuaParseError,
    parse_dialogs_lua,
    prepare_fillets,
    speaker_of,
    split_levels,
)

# --------------------------------------------------------------------------------------------
# Dialog scripts


def test_parse_dialogs_pairs_ids_with_translations() -> None:
    text = (
        '\ndialogId("let-m-divna", "font_small", "What kind of strange ship is that?")\n'
        'dialogStr("Wat is dit voor raar schip?")\n\n\n'
        'dialogId("let-v-vrak0", "font_big", "This is the wreck.")\n'
        'dialogStr("Dat is het wrak.")\n'
    )
    assert parse_dialogs_lua(text, "x.lua") == [
        Dialog("let-m-divna", "font_small", "What kind of strange ship is that?",
               "Wat is dit voor raar schip?", 2),
        Dialog("let-v-vrak0", "font_big", "This is the wreck.", "Dat is het wrak.", 6),
    ]  # fmt: skip


def test_parse_dialogs_handles_odd_lines(caplog: pytest.LogCaptureFixture) -> None:
    text = (
        "\ufeff-- Init\r\n"
        'dialogId("a", "font_small", "He said \\"hi\\" -- twice")  -- trailing comment\r\n'
        'dialogStr("Hij zei \\"hoi\\" -- twee keer, \\/etc en C:\\\\DOS")\r\n'
        "\r\n"
        "--[[ a long\r\ncomment ]]\r\n"
        'dialogId("b", "font_big", "No translation")\r\n'
        "\r\n"
        "dialogId('c', 'font_white', 'It’s')\r\n"
        "dialogStr(“Aan wat? “)\r\n"
        'dialogId("laser", "", "")\r\n'
    )
    with caplog.at_level(logging.WARNING):
        dialogs = parse_dialogs_lua(text, "odd.lua")
    assert [(d.id, d.dutch, d.line_no) for d in dialogs] == [
        ("a", 'Hij zei "hoi" -- twee keer, /etc en C:\\DOS', 2),
        ("b", None, 7),
        ("c", "Aan wat? ", 9),
        ("laser", None, 11),
    ]
    assert dialogs[0].english == 'He said "hi" -- twice'
    assert dialogs[2].english == "It’s"
    assert "odd.lua:7: dialogId 'b' has no dialogStr" in caplog.text
    assert "odd.lua:11: dialogId 'laser' has no dialogStr" in caplog.text
    assert "odd.lua:10: typographic quote" in caplog.text


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ('\n\ndialogId("a", "font_small", "unterminated)\n', 3, "unterminated string"),
        ('dialogId("a", "font_small")\ndialogStr("x")\n', 1, "dialogId takes 3 strings"),
        ('dialogId("a", "f", "e")\ndialogStr("x" "y")\n', 2, "expected"),
        ('dialogId("a", "f", "e")\n\ndialogStr("x", "y")\n', 3, "dialogStr takes 1 string"),
        ('\ndialogId("a", "f", "e") + 1\n', 2, "unexpected character '+'"),
        ('dialogId("a", "f", "e"\n', 1, "unexpected end of file"),
    ],
)
def test_malformed_scripts_name_source_and_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(LuaParseError, match=rf"^bad\.lua:{line}: .*{re.escape(problem)}"):
        parse_dialogs_lua(text, "bad.lua")


def test_stray_and_repeated_dialog_str_are_skipped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = 'dialogStr("stray")\ndialogId("a", "f", "e")\ndialogStr("een")\ndialogStr("twee")\n'
    with caplog.at_level(logging.WARNING):
        dialogs = parse_dialogs_lua(text, "s.lua")
    assert [(d.id, d.dutch) for d in dialogs] == [("a", "een")]
    assert "s.lua:1: dialogStr without a dialogId" in caplog.text
    assert "s.lua:4: second dialogStr" in caplog.text


# --------------------------------------------------------------------------------------------
# Speakers and splits


@pytest.mark.parametrize(
    ("font", "level", "speaker"),
    [
        ("font_small", "airplane", "fillets-nl-small"),
        ("font_big", None, "fillets-nl-big"),
        ("font_both", "ending", "fillets-nl-both"),
        ("font_parrot", "cabin1", "fillets-nl-parrot"),
        ("font_white", "linux", "fillets-nl-linux-white"),
        ("font_white", None, "fillets-nl-white"),
        ("", "electromagnet", "fillets-nl-unknown"),
    ],
)
def test_speaker_follows_the_font(font: str, level: str | None, speaker: str) -> None:
    assert speaker_of(Dialog("x", font, "", "", 1), "fillets-nl", level) == speaker


def test_speaker_prefix_is_the_corpus() -> None:
    assert speaker_of(Dialog("x", "font_small", "", "", 1), "fillets-cs") == "fillets-cs-small"


def _durations(n: int) -> dict[str, float]:
    return {f"level{i:02d}": 20.0 + (i * 37) % 50 for i in range(n)}


def test_split_levels_is_deterministic_and_partitions_levels() -> None:
    durations = _durations(40)
    first = split_levels(durations, 0.1, 0.1, seed=3)
    assert first == split_levels(dict(reversed(durations.items())), 0.1, 0.1, seed=3)
    assert set(first) == set(durations)
    assert set(first.values()) == {"train", "dev", "test"}
    assert first != split_levels(durations, 0.1, 0.1, seed=4)


def test_split_levels_meets_fractions_by_duration() -> None:
    durations = _durations(80)
    total = sum(durations.values())
    assignment = split_levels(durations, 0.1, 0.1, seed=0)
    share = {
        split: sum(d for lv, d in durations.items() if assignment[lv] == split) / total
        for split in ("train", "dev", "test")
    }
    largest = max(durations.values()) / total
    assert abs(share["dev"] - 0.1) <= largest / 2 + 1e-9
    assert abs(share["test"] - 0.1) <= largest / 2 + 1e-9


@pytest.mark.parametrize("n_levels", [3, 4, 5])
def test_split_levels_fills_every_split_from_three_levels(n_levels: int) -> None:
    durations = {f"l{i}": 100.0 * (i + 1) for i in range(n_levels)}
    for seed in range(10):
        assert set(split_levels(durations, 0.1, 0.1, seed).values()) == {"train", "dev", "test"}


def test_split_levels_rejects_fractions_that_leave_no_training_data() -> None:
    with pytest.raises(ValueError, match="below 1"):
        split_levels(_durations(5), 0.5, 0.5, seed=0)


# --------------------------------------------------------------------------------------------
# Packages


def test_fetch_package_reuses_a_verified_download(tmp_path: Path) -> None:
    source = tmp_path / "pkg_1.0_all.deb"
    source.write_bytes(b"payload")
    digest = sha256_of(source)
    fetched = fetch_package(str(source), digest, tmp_path / "dl", progress=False)
    assert fetched == tmp_path / "dl" / "pkg_1.0_all.deb"
    assert fetched.read_bytes() == b"payload"
    source.unlink()  # a second fetch must not need the source any more
    assert fetch_package(source.as_uri(), digest, tmp_path / "dl", progress=False) == fetched


def test_fetch_package_sha_mismatch_names_url_and_hashes(tmp_path: Path) -> None:
    source = tmp_path / "pkg_1.0_all.deb"
    source.write_bytes(b"payload")
    url, wrong = source.as_uri(), "0" * 64
    with pytest.raises(ChecksumError) as err:
        fetch_package(url, wrong, tmp_path / "dl", progress=False)
    message = str(err.value)
    assert url in message and wrong in message and sha256_of(source) in message
    assert list((tmp_path / "dl").iterdir()) == []


def test_iter_members_reads_a_deb_without_dpkg(tmp_path: Path) -> None:
    packages = make_fillets_packages(tmp_path, {"wc": [("wc-m-a", "font_small", "A", "Aa")]})
    audio_deb = Path(packages[0]["url"].removeprefix("file://"))
    script_deb = Path(packages[1]["url"].removeprefix("file://"))
    oggs = list(iter_members(audio_deb, f"{GAME_ROOT}/sound/*.ogg"))
    assert [path for path, _ in oggs] == [f"{GAME_ROOT}/sound/wc/nl/wc-m-a.ogg"]
    assert oggs[0][1].startswith(b"OggS")
    scripts = dict(iter_members(script_deb, re.compile(r".*/dialogs_nl\.lua")))
    assert b'dialogStr("Aa")' in scripts[f"{GAME_ROOT}/script/wc/dialogs_nl.lua"]


# --------------------------------------------------------------------------------------------
# Audio


def test_load_audio_downmixes_and_resamples(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    t = np.arange(22050) / 22050
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 22050)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) == 16000
    assert np.max(np.abs(samples)) == pytest.approx(0.25, abs=0.01)


def test_load_audio_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=re.escape(str(tmp_path / "gone.ogg"))):
        load_audio(tmp_path / "gone.ogg")


def test_load_audio_undecodable_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "broken.ogg"
    path.write_bytes(b"OggS but not really")
    with pytest.raises(AudioError, match=rf"{re.escape(str(path))}: cannot decode"):
        load_audio(path)


def test_load_audio_zero_length_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1), dtype=np.float32), 16000)
    with pytest.raises(AudioError, match=rf"{re.escape(str(path))}: zero-length"):
        load_audio(path)


def test_write_flac_round_trips_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.flac"
    samples = np.linspace(-1.2, 1.2, 1600, dtype=np.float32)
    write_flac(path, samples, 16000)
    assert [p.name for p in path.parent.iterdir()] == ["x.flac"]
    back = load_audio(path)
    assert len(back) == 1600 and np.max(np.abs(back)) <= 1.0
    np.testing.assert_allclose(back[400:1200], samples[400:1200], atol=1e-3)


# --------------------------------------------------------------------------------------------
# The recipe, on generated packages

LEVELS = {
    f"lvl{i}": [
        (f"l{i}-m-a", "font_small", f"Hello {i}.", f"Hallo nummer {i}!"),
        (f"l{i}-v-b", "font_big", "So, a 737.", "Zo'n 737, toch?"),
    ]
    for i in range(6)
}


def _prepare(tmp_path: Path, packages: list[dict[str, str]], **kwargs: object) -> dict:
    options: dict = {
        "corpus": "fillets-nl",
        "language": "nl",
        "download_dir": tmp_path / "dl",
        "audio_dir": tmp_path / "audio",
        "manifest_dir": tmp_path / "manifests",
        "region": "nl",
        "domain": "game-dialogue",
        "seed": 1,
        "progress": False,
    }
    options.update(kwargs)
    return prepare_fillets(packages, **options)


def test_prepare_writes_manifests_with_the_contract_fields(tmp_path: Path) -> None:
    packages = make_fillets_packages(tmp_path / "debs", LEVELS)
    report = _prepare(tmp_path, packages)
    manifests = tmp_path / "manifests"
    by_id = {}
    for split in ("train", "dev", "test"):
        recordings = RecordingSet.from_file(manifests / f"recordings_{split}.jsonl.gz")
        supervisions = SupervisionSet.from_file(manifests / f"supervisions_{split}.jsonl.gz")
        cuts = CutSet.from_file(manifests / f"cuts_{split}.jsonl.gz")
        assert len(recordings) == len(supervisions) == len(cuts) >= 1
        assert report["splits"][split]["utterances"] == len(cuts)
        for cut in cuts:
            (sup,) = cut.supervisions
            assert sup.id == sup.recording_id == cut.recording.id
            by_id[sup.id] = (sup, cut)
    assert len(by_id) == 12
    sup, cut = by_id["lvl2-l2-v-b"]
    assert sup.text == "zo'n zevenhonderdzevenendertig toch"
    assert sup.speaker == "fillets-nl-big" and sup.language == "nl"
    assert sup.custom == {
        "translation": "So, a 737.",
        "orig_text": "Zo'n 737, toch?",
        "domain": "game-dialogue",
        "region": "nl",
        "level": "lvl2",
        "corpus": "fillets-nl",
        "font": "font_big",
    }
    assert by_id["lvl4-l4-m-a"][0].text == "hallo nummer vier"
    assert cut.recording.sampling_rate == 16000
    assert cut.recording.sources[0].source == str(tmp_path / "audio" / "lvl2" / "l2-v-b.flac")
    audio = cut.load_audio()
    assert audio.shape == (1, 16000) and cut.duration == pytest.approx(1.0)
    assert json.loads((manifests / "report.json").read_text()) == report


def test_prepare_splits_never_share_a_level_and_are_deterministic(tmp_path: Path) -> None:
    packages = make_fillets_packages(tmp_path / "debs", LEVELS)
    first = _prepare(tmp_path, packages)
    levels = [set(first["splits"][s]["levels"]) for s in ("train", "dev", "test")]
    assert all(levels) and set().union(*levels) == set(LEVELS)
    assert sum(len(lv) for lv in levels) == len(LEVELS)
    again = _prepare(tmp_path, packages, manifest_dir=tmp_path / "again")
    assert again["splits"] == first["splits"]


def test_prepare_lists_unpaired_clips_and_transcripts(tmp_path: Path) -> None:
    levels = {
        **LEVELS,
        "lvl0": [*LEVELS["lvl0"], ("l0-x", "font_white", "No line", None)],
        "lvl1": [*LEVELS["lvl1"], ("l1-q", "font_small", "...", "...!")],
    }
    packages = make_fillets_packages(
        tmp_path / "debs",
        levels,
        without_audio={"lvl2/l2-m-a"},
        audio_only={"lvl3": ["l3_v_typo"]},
    )
    report = _prepare(tmp_path, packages)
    assert report["transcripts_without_clip"] == {"count": 1, "items": ["lvl2/l2-m-a"]}
    assert report["clips_without_transcript"] == {
        "count": 2,
        "items": ["lvl0/l0-x", "lvl3/l3_v_typo"],
    }
    assert report["empty_text"] == {
        "count": 1,
        "items": [{"id": "lvl1/l1-q", "orig_text": "...!"}],
    }
    assert sum(s["utterances"] for s in report["splits"].values()) == 11


def test_prepare_corrupt_audio_names_the_file(tmp_path: Path) -> None:
    packages = make_fillets_packages(tmp_path / "debs", LEVELS, corrupt_audio={"lvl3/l3-v-b"})
    with pytest.raises(AudioError, match=r"sound/lvl3/nl/l3-v-b\.ogg: cannot decode"):
        _prepare(tmp_path, packages)


def test_prepare_max_clips_spreads_over_levels(tmp_path: Path) -> None:
    packages = make_fillets_packages(tmp_path / "debs", LEVELS)
    report = _prepare(tmp_path, packages, max_clips=4)
    levels = [lv for s in report["splits"].values() for lv in s["levels"]]
    assert sum(s["utterances"] for s in report["splits"].values()) == 4
    assert sorted(levels) == ["lvl0", "lvl1", "lvl2", "lvl3"]
    assert len(list((tmp_path / "audio").rglob("*.flac"))) == 4


def test_prepare_rerun_keeps_converted_audio(tmp_path: Path) -> None:
    packages = make_fillets_packages(tmp_path / "debs", LEVELS)
    _prepare(tmp_path, packages)
    flac = tmp_path / "audio" / "lvl0" / "l0-m-a.flac"
    marker = np.zeros(8000, dtype=np.float32)
    write_flac(flac, marker, 16000)  # a re-run must not convert this clip again
    report = _prepare(tmp_path, packages)
    assert sf.info(str(flac)).frames == 8000
    hours = sum(s["hours"] for s in report["splits"].values())
    assert hours == pytest.approx(11.5 / 3600, abs=1e-4)


def test_prepare_excludes_levels(tmp_path: Path) -> None:
    packages = make_fillets_packages(tmp_path / "debs", LEVELS)
    report = _prepare(tmp_path, packages, exclude_levels=["lvl5"])
    levels = {lv for s in report["splits"].values() for lv in s["levels"]}
    assert levels == set(LEVELS) - {"lvl5"}
    assert report["excluded_levels"] == ["lvl5"]
