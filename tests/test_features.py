"""The feature cache: shapes, CMVN, and clear errors for unreadable audio."""

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording, SupervisionSegment
from lhotse.cut import MonoCut

from sslgrid.features.fbank import CmvnAccumulator, FbankConfig
from sslgrid.features.store import cmvn_of, compute_cache, load_cache, save_cache


def make_cuts(tmp_path, seconds=(1.0, 0.5)):
    cuts = []
    for i, s in enumerate(seconds):
        path = tmp_path / f"utt{i}.flac"
        t = np.arange(int(16000 * s)) / 16000
        sf.write(path, (0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t)).astype("float32"), 16000)
        rec = Recording.from_file(path, recording_id=f"utt{i}")
        sup = SupervisionSegment(f"utt{i}", f"utt{i}", 0, rec.duration, text="een")
        cuts.append(MonoCut(f"utt{i}", 0, rec.duration, 0, recording=rec, supervisions=[sup]))
    return CutSet.from_cuts(cuts)


def test_cache_round_trip_and_frame_counts(tmp_path):
    cache = compute_cache(make_cuts(tmp_path), FbankConfig(), progress=False)
    assert cache.ids == ["utt0", "utt1"]
    assert cache.frames() == [100, 50]
    save_cache(cache, tmp_path / "fbank.pt")
    again = load_cache(tmp_path / "fbank.pt")
    assert again.ids == cache.ids and again.config == cache.config
    torch.testing.assert_close(again.feats[1], cache.feats[1])


def test_cmvn_normalises_the_training_features(tmp_path):
    cache = compute_cache(make_cuts(tmp_path), FbankConfig(), progress=False)
    stats = cmvn_of(cache)
    frames = torch.cat([f.float() for f in cache.feats])
    normed = (frames - stats["mean"]) / stats["std"]
    torch.testing.assert_close(normed.mean(0), torch.zeros(80), atol=1e-3, rtol=0)
    assert int(stats["frames"]) == 150


def test_cmvn_without_frames_is_an_error():
    with pytest.raises(ValueError, match="no frames"):
        CmvnAccumulator(80).stats()


def test_missing_audio_names_the_file(tmp_path):
    cuts = make_cuts(tmp_path)
    (tmp_path / "utt1.flac").unlink()
    with pytest.raises(OSError, match="utt1.flac"):
        compute_cache(cuts, FbankConfig(), progress=False)


def test_corrupt_audio_names_the_file(tmp_path):
    cuts = make_cuts(tmp_path)
    (tmp_path / "utt0.flac").write_bytes(b"fLaC but not really")
    with pytest.raises(OSError, match="utt0.flac"):
        compute_cache(cuts, FbankConfig(), progress=False)


def test_waveform_cache_holds_the_flac_samples_exactly(tmp_path):
    import soundfile as sf

    cuts = make_cuts(tmp_path)
    cache = compute_cache(cuts, FbankConfig(), kind="wav", progress=False)
    assert cache.kind == "wav" and cache.rate == 16000
    assert cache.frames() == [16000, 8000]
    pcm, _ = sf.read(tmp_path / "utt0.flac", dtype="int16")
    assert torch.equal(cache.feats[0], torch.from_numpy(pcm))
    save_cache(cache, tmp_path / "wav.pt")
    again = load_cache(tmp_path / "wav.pt")
    assert again.kind == "wav" and again.subset(["utt1"]).kind == "wav"
    assert abs(again.hours() - 1.5 / 3600) < 1e-9
