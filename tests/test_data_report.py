"""The validate stage's data report: report.md, report.json and report.png of a small corpus."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import soundfile as sf
import yaml
from lhotse import CutSet, Recording, SupervisionSegment
from tests_paths import REPO

from sslgrid.config import ConfigError
from sslgrid.corpora.manifests import cut_for_supervision

spec = importlib.util.spec_from_file_location("validate_data", REPO / "scripts/validate_data.py")
validate_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(validate_data)

# split -> (id, text, speaker, seconds, sample rate, channels)
CLIPS = {
    "train": [
        ("tr1", "hallo daar", "big", 1.0, 16000, 1),
        ("tr2", "een twee drie", "small", 1.5, 16000, 1),
        ("tr3", "vier vijf", "big", 0.7, 8000, 1),
        ("tr4", "zes zeven", "small", 2.0, 48000, 2),
    ],
    "dev": [("dv1", "zoë zag een quiz", "big", 1.2, 16000, 1)],
    "test": [
        ("ts1", "hallo daar", "small", 0.8, 16000, 1),
        ("ts2", "kapot", "big", 0.5, 16000, 1),  # its file is corrupted below
        ("ts3", "  Hallo   <unk> daar ", "big", 0.6, 16000, 1),
    ],
}


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path)


def make_corpus(tmp_path):
    """Manifests of a 4/1/3-clip corpus: other rates, stereo, a corrupt file, markers."""
    manifests, audio = tmp_path / "manifests", tmp_path / "audio"
    audio.mkdir()
    for split, clips in CLIPS.items():
        cuts = []
        for i, (cut_id, text, speaker, seconds, rate, channels) in enumerate(clips):
            t = np.arange(int(seconds * rate)) / rate
            wave = (0.2 * np.sin(2 * np.pi * (150 + 40 * i) * t)).astype("float32")
            path = audio / f"{cut_id}.flac"
            sf.write(path, np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate)
            rec = Recording.from_file(path, recording_id=cut_id)
            sup = SupervisionSegment(cut_id, cut_id, 0, rec.duration, text=text, speaker=speaker)
            cuts.append(cut_for_supervision(rec, sup))
        manifests.mkdir(exist_ok=True)
        CutSet.from_cuts(cuts).to_file(manifests / f"cuts_{split}.jsonl.gz")
    (audio / "ts2.flac").write_bytes(b"\x00" * 64)
    recipe_report = {
        "corpus": "toy",
        "empty_text": {"count": 1, "examples": [{"id": "x-1", "orig_text": "..."}]},
        "clips_without_transcript": {"count": 2, "items": ["level/a", "level/b"]},
        "seed": 0,
    }
    (manifests / "report.json").write_text(json.dumps(recipe_report))
    return manifests


def run(manifests, out, config=REPO / "config.yaml", corpus="toy"):
    validate_data.main(
        ["--config", str(config), "--corpus", corpus, "--manifest-dir", str(manifests),
         "--out-dir", str(out)]
    )  # fmt: skip


def test_report_counts_splits_repairs_and_unseen_characters(corpus, tmp_path):
    out = tmp_path / "report"
    run(corpus, out)
    report = json.loads((out / "report.json").read_text())
    splits = report["splits"]
    assert [splits[s]["utterances"] for s in ("train", "dev", "test")] == [4, 1, 2]
    assert splits["test"]["utterances_in"] == 3
    assert splits["train"]["hours"] == pytest.approx(5.2 / 3600, abs=1e-4)
    assert splits["train"]["speakers"] == 2 and report["speakers"]["total"] == 2
    assert report["speakers"]["shared"] == {"train-dev": 1, "train-test": 2, "dev-test": 1}
    assert splits["train"]["sample_rates"] == {"8000": 1, "16000": 2, "48000": 1}
    assert splits["train"]["channels"] == {"1": 3, "2": 1}
    assert splits["train"]["repaired"]["resampled"]["count"] == 2
    assert splits["train"]["repaired"]["downmixed"]["count"] == 1
    assert splits["test"]["skipped"]["unreadable_audio"]["examples"][0]["id"] == "ts2"
    assert splits["test"]["repaired"]["markers_removed"]["count"] == 1
    assert splits["dev"]["duration_seconds"]["max"] == pytest.approx(1.2)
    assert report["corpus_report"] == {
        "empty_text": {"count": 1, "examples": [{"id": "x-1", "orig_text": "..."}]},
        "clips_without_transcript": {"count": 2, "examples": ["level/a", "level/b"]},
    }
    # Train text has no q, u, g... : the dev sentence brings them; test brings nothing new.
    dev = report["oov_characters"]["dev"]
    assert set(dev) == {"ë", "q", "u", "g"} and dev["ë"]["code_point"] == "U+00EB"
    assert dev["q"] == {"code_point": "U+0071", "count": 1, "examples": ["dv1"]}
    assert report["oov_characters"]["test"] == {}

    md = (out / "report.md").read_text()
    assert md.startswith("# Data report: toy\n")
    assert "| train | 4 | 4 | 0.001 | 2 |" in md
    assert "![durations and sample rates](report.png)" in md
    assert "| test | skipped | unreadable_audio | 1 | ts2: cannot decode audio" in md
    assert "| all | set aside | clips_without_transcript | 2 | level/a |" in md
    assert "| dev | `ë` | U+00EB | 1 | dv1 |" in md
    assert "16000 Hz: 2" in md and "2 ch: 1" in md

    png = (out / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md", "report.png"]
    assert report["ids_in_two_splits"] == {}


def test_an_amount_larger_than_the_pool_stops_the_report(corpus, tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["pretrain"]["amounts"] = ["all", 0.001, 5.0]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"pretrain.amounts.2: 5 h is more than the training"):
        run(corpus, tmp_path / "report", config=path, corpus="fillets-nl")
    assert not (tmp_path / "report" / "report.md").exists()


def test_ids_in_two_splits_are_reported(corpus, tmp_path):
    train = CutSet.from_file(corpus / "cuts_train.jsonl.gz")
    test = CutSet.from_file(corpus / "cuts_test.jsonl.gz")
    CutSet.from_cuts([*test, train[0]]).to_file(corpus / "cuts_test.jsonl.gz")
    run(corpus, tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["ids_in_two_splits"] == {"train-test": {"count": 1, "examples": ["tr1"]}}
    assert "**train-test 1** (e.g. tr1)" in (tmp_path / "report" / "report.md").read_text()


def test_a_missing_split_manifest_is_named(corpus, tmp_path):
    (corpus / "cuts_dev.jsonl.gz").unlink()
    with pytest.raises(ValueError, match=r"cuts_dev\.jsonl\.gz: no such manifest file"):
        run(corpus, tmp_path / "report")
