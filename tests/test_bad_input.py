"""Bad input: every kind of bad audio, transcript, manifest and config, and what becomes of it.

Each case runs under ``skip`` (the cut is dropped and counted, or repaired and counted) and,
where it is a problem, under ``strict`` (an error naming the file and what was expected).
"""

from __future__ import annotations

import copy
import gzip
import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from lhotse import CutSet, Recording, SupervisionSegment
from lhotse.audio import AudioSource
from lhotse.cut import MonoCut
from lhotse.utils import fastcopy
from tests_paths import REPO

from sslgrid.config import ConfigError, validate_config
from sslgrid.corpora.manifests import cut_for_supervision
from sslgrid.corpora.validate import (
    AudioLimits,
    ValidationError,
    check_config_paths,
    check_pretrain_amounts,
    read_cuts,
    validate_cuts,
    validation_settings,
)
from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import compute_cache, load_cache, load_cut_audio, save_cache

SR = 16000


def tone(seconds=0.5, sr=SR, amplitude=0.3, freq=220.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    mono = (amplitude * np.sin(2 * np.pi * freq * t)).astype("float32")
    if channels == 1:
        return mono
    return np.stack([mono * (1 + c) / channels for c in range(channels)], axis=1)


def make_cut(tmp_path, name, samples=None, sr=SR, text="hallo daar", subtype=None, fmt="flac"):
    """A cut as the recipes make it (``cut_for_supervision``) over a generated file."""
    samples = tone(sr=sr) if samples is None else samples
    path = tmp_path / f"{name}.{fmt}"
    sf.write(path, samples, sr, subtype=subtype)
    rec = Recording.from_file(path, recording_id=name)
    sup = SupervisionSegment(name, name, 0.0, rec.duration, text=text, speaker="spk")
    return cut_for_supervision(rec, sup)


def check(cuts, policy="skip", **kwargs):
    return validate_cuts(CutSet.from_cuts(cuts), policy=policy, **kwargs)


def skipped_once(report, code):
    assert report["skipped"][code]["count"] == 1, report["skipped"]
    return report["skipped"][code]["examples"][0]


# --------------------------------------------------------------------------------------------
# Audio


def test_good_cut_passes_untouched(tmp_path):
    cut = make_cut(tmp_path, "good")
    clean, report = check([cut])
    assert [c.id for c in clean] == ["good"]
    assert report["skipped"] == {} and report["repaired"] == {} and report["noted"] == {}
    assert report["sample_rates"] == {"16000": 1} and report["channels"] == {"1": 1}


@pytest.mark.parametrize(
    ("damage", "code", "expected"),
    [
        (lambda p: p.write_bytes(b"fLaC but not really"), "unreadable_audio", "cannot decode"),
        (lambda p: p.write_bytes(b""), "empty_file", "empty file (0 bytes)"),
        (lambda p: sf.write(p, np.zeros(0, "f4"), SR, format="WAV"), "zero_length", "zero-length"),
        (lambda p: p.unlink(), "missing_audio", "no such audio file"),
    ],
    ids=["corrupt", "empty", "zero-length", "missing"],
)
def test_unusable_audio_files(tmp_path, damage, code, expected):
    good, bad = make_cut(tmp_path, "good"), make_cut(tmp_path, "bad")
    damage(tmp_path / "bad.flac")
    clean, report = check([good, bad])
    assert [c.id for c in clean] == ["good"]
    example = skipped_once(report, code)
    assert example["id"] == "bad" and example["file"].endswith("bad.flac")
    assert expected in example["problem"]
    with pytest.raises(ValidationError, match=rf"bad\.flac \(cut bad\): .*{re.escape(expected)}"):
        check([good, bad], policy="strict")


def test_a_cut_of_zero_duration(tmp_path):
    cut = make_cut(tmp_path, "nothing", samples=np.zeros(0, "float32"), fmt="wav")
    assert cut.duration == 0
    _, report = check([cut])
    assert "expected more than 0" in skipped_once(report, "zero_length")["problem"]


def test_silence_is_dropped(tmp_path):
    silent = make_cut(tmp_path, "silent", samples=np.zeros(SR // 2, "float32"))
    rng = np.random.default_rng(0)
    hiss = make_cut(tmp_path, "hiss", samples=(1e-5 * rng.standard_normal(SR // 2)).astype("f4"))
    quiet = make_cut(tmp_path, "quiet", samples=tone(amplitude=0.01))  # -43 dBFS: speech
    clean, report = check([silent, hiss, quiet])
    assert [c.id for c in clean] == ["quiet"]
    assert report["skipped"]["silent"]["count"] == 2
    assert "-inf dBFS" in report["skipped"]["silent"]["examples"][0]["problem"]
    with pytest.raises(ValidationError, match=r"silent\.flac.*silent: RMS -inf dBFS; expected"):
        check([silent], policy="strict")


def test_clipping(tmp_path):
    square = np.sign(tone(amplitude=1.0)).astype("float32")
    clipped = make_cut(tmp_path, "square", samples=square)
    lightly = tone(amplitude=0.5)
    lightly[100:103] = 1.0  # three samples at full scale: noted, kept
    light = make_cut(tmp_path, "light", samples=lightly)
    clean, report = check([clipped, light])
    assert [c.id for c in clean] == ["light"]
    assert "% of the samples in flat tops" in skipped_once(report, "clipped")["problem"]
    assert report["noted"]["some_clipping"]["examples"][0]["id"] == "light"
    with pytest.raises(ValidationError, match=r"square\.flac.*max_clipped_fraction"):
        check([clipped], policy="strict")


def test_nan_samples(tmp_path):
    samples = tone()
    samples[10] = np.nan
    cut = make_cut(tmp_path, "nan", samples=samples, subtype="FLOAT", fmt="wav")
    _, report = check([cut])
    assert "1 NaN or infinite samples" in skipped_once(report, "non_finite")["problem"]


def test_stereo_is_downmixed(tmp_path):
    cut = make_cut(tmp_path, "stereo", samples=tone(channels=2))
    clean, report = check([cut])
    assert len(clean) == 1 and report["channels"] == {"2": 1}
    assert report["repaired"]["downmixed"]["count"] == 1
    cache = compute_cache(clean, FbankConfig(), kind="wav", progress=False, policy="strict")
    expected = sf.read(tmp_path / "stereo.flac", dtype="float32")[0].mean(axis=1)
    np.testing.assert_allclose(cache.feats[0].float().numpy() / 32768, expected, atol=1e-4)


@pytest.mark.parametrize("rate", [8000, 48000])
def test_other_sample_rates_are_resampled(tmp_path, rate):
    cut = make_cut(tmp_path, f"sr{rate}", samples=tone(seconds=1.0, sr=rate), sr=rate)
    clean, report = check([cut])
    assert report["repaired"]["resampled"]["examples"][0]["detail"] == f"{rate} Hz to 16000 Hz"
    assert report["sample_rates"] == {str(rate): 1}
    assert clean[0].sampling_rate == SR and load_cut_audio(clean[0]).shape == (SR,)
    # A cut that does not resample in its manifest gets the transform.
    raw = MonoCut(cut.id, 0, 1.0, 0, recording=Recording.from_file(tmp_path / f"sr{rate}.flac"))
    clean, report = check([raw], check_text=False)
    assert clean[0].sampling_rate == SR and load_cut_audio(clean[0]).shape == (SR,)
    cache = compute_cache(CutSet.from_cuts([raw]), FbankConfig(), progress=False, policy="skip")
    assert cache.frames() == [100]


def test_long_cuts(tmp_path):
    transcribed = make_cut(tmp_path, "long", samples=tone(seconds=3.0))
    untranscribed = make_cut(tmp_path, "pool", samples=tone(seconds=3.0), text=None)
    clean, report = check([transcribed, untranscribed], max_seconds=2.0)
    assert [c.id for c in clean] == ["pool"] and clean[0].duration == 2.0
    assert (
        "3.0 s with a transcript; expected at most 2 s"
        in skipped_once(report, "too_long")["problem"]
    )
    assert report["repaired"]["trimmed"]["examples"][0]["detail"] == "3.0 s cut to 2 s"
    assert load_cut_audio(clean[0]).shape == (2 * SR,)
    with pytest.raises(ValidationError, match=r"long\.flac \(cut long\).*validation.max_seconds"):
        check([transcribed], policy="strict", max_seconds=2.0)


# --------------------------------------------------------------------------------------------
# Transcripts


@pytest.mark.parametrize(
    ("text", "code", "expected"),
    [
        ("", "empty_text", "empty transcript"),
        ("  \t ", "empty_text", "empty transcript"),
        ("?!", "empty_text", "normalises to nothing"),
        ("<unk> [noise] ggg xxx", "only_markers", "only non-speech markers"),
        ("caf\ufffd", "bad_encoding", "U+FFFD"),
    ],
    ids=["empty", "whitespace", "punctuation", "markers", "lost-encoding"],
)
def test_unusable_transcripts(tmp_path, text, code, expected):
    cut = make_cut(tmp_path, "t", text=text)
    clean, report = check([cut])
    assert len(clean) == 0 and expected in skipped_once(report, code)["problem"]
    assert report["hours_usable_audio"] > 0  # the audio itself is still fine for pre-training
    with pytest.raises(ValidationError, match=rf"t\.flac \(cut t\): .*{re.escape(expected)}"):
        check([cut], policy="strict")


@pytest.mark.parametrize(
    ("text", "fixed", "repairs"),
    [
        ("  Hallo\t\u200b daar\x00 \n", "hallo daar", ["text_normalised"]),
        ("hallo <unk> daar [noise]", "hallo daar", ["markers_removed"]),
        ("caf\u00c3\u00a9 in Gent", "café in gent", ["encoding_repaired", "text_normalised"]),
        ("Ge\u00c3\u00abrgerd", "geërgerd", ["encoding_repaired", "text_normalised"]),
        ("zo\u00e2\u20ac\u2122n", "zo'n", ["encoding_repaired", "text_normalised"]),  # cp1252
    ],
    ids=["whitespace-control", "markers", "latin-1-mojibake", "diaeresis", "cp1252-mojibake"],
)
def test_repairable_transcripts(tmp_path, text, fixed, repairs):
    clean, report = check([make_cut(tmp_path, "t", text=text)])
    assert clean[0].supervisions[0].text == fixed
    assert sorted(report["repaired"]) == sorted(repairs)


def test_characters_outside_the_vocabulary(tmp_path):
    vocabulary = set("abcdefghijklmnopqrstuvwxyzëéèïöüáóú'")
    ok, odd = make_cut(tmp_path, "ok", text="één zee"), make_cut(tmp_path, "odd", text="привет")
    clean, report = check([ok, odd], vocabulary=vocabulary)
    assert [c.id for c in clean] == ["ok"]
    assert "'в'" in skipped_once(report, "oov_characters")["problem"]
    with pytest.raises(ValidationError, match=r"odd\.flac.*not in the vocabulary"):
        check([odd], policy="strict", vocabulary=vocabulary)


def test_well_formed_dutch_is_left_alone(tmp_path):
    text = "'t is zo'n gedoe met die één euro"
    clean, report = check([make_cut(tmp_path, "t", text=text)])
    assert clean[0].supervisions[0].text == text and report["repaired"] == {}


# --------------------------------------------------------------------------------------------
# Manifests


def test_duplicate_ids(tmp_path):
    first = make_cut(tmp_path, "a")
    (tmp_path / "other").mkdir()
    second = make_cut(tmp_path / "other", "a")
    clean, report = check([first, second])
    assert len(clean) == 1 and clean[0].recording.sources[0].source.endswith("/a.flac")
    assert "appears twice" in skipped_once(report, "duplicate_id")["problem"]
    with pytest.raises(ValidationError, match=r"cut id 'a' appears twice .*expected unique ids"):
        check([first, second], policy="strict")


def test_ids_that_reference_no_audio(tmp_path):
    orphan = MonoCut("orphan", 0, 1.0, 0, supervisions=[SupervisionSegment("orphan", "x", 0, 1)])
    good = make_cut(tmp_path, "good")
    mismatched = make_cut(tmp_path, "mis")
    sup = fastcopy(mismatched.supervisions[0], recording_id="someone-else")
    mismatched = fastcopy(mismatched, supervisions=[sup])
    clean, report = check([orphan, good, mismatched])
    assert [c.id for c in clean] == ["good"]
    assert report["skipped"]["no_audio"]["count"] == 2
    problems = [e["problem"] for e in report["skipped"]["no_audio"]["examples"]]
    assert "references no audio" in problems[0] and "'someone-else'" in problems[1]
    with pytest.raises(ValidationError, match=r"<no audio> \(cut orphan\): .*references no"):
        check([orphan], policy="strict")


def test_supervisions_beyond_the_end_of_their_recording(tmp_path):
    sf.write(tmp_path / "one.flac", tone(seconds=1.0), SR)
    # The manifest believes the file is 2 s long; the supervision covers all of it.
    rec = Recording("one", [AudioSource("file", [0], str(tmp_path / "one.flac"))], SR, 2 * SR, 2.0)
    over = MonoCut(
        "over", 0.0, 2.0, 0, recording=rec,
        supervisions=[SupervisionSegment("over", "one", 0.0, 2.0, text="hallo")],
    )  # fmt: skip
    after = MonoCut(
        "after", 1.5, 0.5, 0, recording=rec,
        supervisions=[SupervisionSegment("after", "one", 0.0, 0.5, text="daar")],
    )  # fmt: skip
    clean, report = check([over, after])
    assert [c.id for c in clean] == ["over"]
    assert clean[0].duration == pytest.approx(1.0)
    assert clean[0].supervisions[0].duration == pytest.approx(1.0)
    assert load_cut_audio(clean[0]).shape == (SR,)
    assert "past the end of the audio" in report["repaired"]["trimmed"]["examples"][0]["detail"]
    assert report["repaired"]["recording_length_fixed"]["count"] == 1
    assert (
        "starts at 1.500 s but the audio file ends at 1.000 s"
        in skipped_once(report, "beyond_audio")["problem"]
    )


def test_manifest_lines_that_are_not_cuts(tmp_path):
    good = make_cut(tmp_path, "good")
    path = tmp_path / "cuts_train.jsonl.gz"
    with gzip.open(path, "wb") as fh:
        fh.write((json.dumps(good.to_dict()) + "\n").encode())
        fh.write(b'{"id": "broken", \n')
        fh.write(json.dumps({"id": "s", "recording_id": "r", "start": 0, "duration": 1}).encode())
        fh.write(b"\n" + '{"id": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(ValidationError, match=r"cuts_train\.jsonl\.gz:2: .*expected one Lhotse"):
        read_cuts(path)
    cuts, bad = read_cuts(path, policy="skip")
    assert [c.id for c in cuts] == ["good"] and bad.count == 3
    assert ":3: found a SupervisionSegment" in bad.examples[1]
    assert ":4: 'utf-8' codec can't decode" in bad.examples[2]
    with pytest.raises(ValidationError, match="no such manifest file"):
        read_cuts(tmp_path / "nope.jsonl.gz")


# --------------------------------------------------------------------------------------------
# The features stage


def test_features_skip_drops_and_lists_bad_clips(tmp_path):
    cuts = [make_cut(tmp_path, n) for n in ("a", "b", "c")]
    (tmp_path / "b.flac").write_bytes(b"not audio")
    cache = compute_cache(CutSet.from_cuts(cuts), FbankConfig(), progress=False, policy="skip")
    assert cache.ids == ["a", "c"]
    assert cache.dropped["b"].startswith("unreadable_audio: cannot decode audio")
    save_cache(cache, tmp_path / "fbank.pt")
    assert load_cache(tmp_path / "fbank.pt").dropped == cache.dropped


def test_features_strict_names_the_file(tmp_path):
    cuts = [make_cut(tmp_path, n) for n in ("a", "b")]
    (tmp_path / "b.flac").unlink()
    with pytest.raises(ValidationError, match=r"b\.flac \(cut b\): no such audio file"):
        compute_cache(CutSet.from_cuts(cuts), FbankConfig(), progress=False, policy="strict")


def test_features_with_validation_match_the_plain_reader(tmp_path):
    cuts = CutSet.from_cuts([make_cut(tmp_path, n) for n in ("a", "b")])
    plain = compute_cache(cuts, FbankConfig(), kind="wav", progress=False)
    checked = compute_cache(cuts, FbankConfig(), kind="wav", progress=False, policy="strict")
    for x, y in zip(plain.feats, checked.feats, strict=True):
        assert torch.equal(x, y)


# --------------------------------------------------------------------------------------------
# Config


DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def test_validation_settings_defaults_and_errors():
    assert validation_settings({}) == ("skip", AudioLimits())
    policy, limits = validation_settings({"validation": {"on_error": "strict", "max_seconds": 30}})
    assert policy == "strict" and limits.max_seconds == 30
    with pytest.raises(ValueError, match=r"validation.on_error: 'lenient'; expected"):
        validation_settings({"validation": {"on_error": "lenient"}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['max_secs'\] in validation"):
        validation_settings({"validation": {"max_secs": 30}})


def test_an_amount_larger_than_the_pool_names_the_key():
    config = copy.deepcopy(DEFAULT)
    config["pretrain"]["amounts"] = ["all", 0.5, 5.0]
    problems = check_pretrain_amounts(config, "fillets-nl", train_hours=1.27)
    assert problems == [
        "pretrain.amounts.2: 5 h is more than the training audio of pool 'fillets-nl' "
        "(1.270 h after validation); expected at most that or 'all'"
    ]
    assert check_pretrain_amounts(config, "not-a-pool", train_hours=0.1) == []


def test_a_pretrained_model_that_does_not_exist_is_named():
    config = copy.deepcopy(DEFAULT)
    config["pretrain"]["models"] = ["apc", "wav2vec3"]
    with pytest.raises(ConfigError, match=r"pretrain.models.1: 'wav2vec3' is neither a model"):
        validate_config(config)


def test_paths_that_do_not_exist_are_named_by_key(tmp_path):
    config = copy.deepcopy(DEFAULT)
    config["corpora"]["cgn-vl"] = {"recipe": "cgn", "root": str(tmp_path / "CGN"), "region": "vl"}
    config["corpora"]["cv"] = {"recipe": "commonvoice", "root": str(tmp_path)}
    config["imported"] = {"xlsr": {"path": str(tmp_path / "xlsr")}}
    problems = check_config_paths(config)
    assert problems == [
        f"corpora.cgn-vl.root: {tmp_path / 'CGN'} does not exist",
        f"imported.xlsr.path: {tmp_path / 'xlsr'} does not exist; expected a Hugging Face "
        "wav2vec 2.0 directory or a fairseq .pt file",
    ]
    assert check_config_paths(config, corpora=["cv"]) == [problems[1]]
