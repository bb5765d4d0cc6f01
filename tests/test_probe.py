"""Linear phone separability: phonemiser, espeak timing, alignment, probe, table, workflow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml
from fillets_fixture import make_fillets_packages
from test_workflow import BIN, REPO, tiny_config, tiny_levels

from sslgrid.features.fbank import FbankConfig, LogMelFbank
from sslgrid.probe.align import (
    AlignerConfig,
    Region,
    align_utterance,
    fits,
    region_starts,
    regions_to_labels,
    spans_to_regions,
    train_recogniser,
)
from sslgrid.probe.phones import (
    OTHER,
    PHONES,
    EspeakPhonemiser,
    mnemonics_to_phones,
    phone_ids,
    split_espeak_mnemonics,
)
from sslgrid.probe.probe import FrameCountMismatch, ProbeSettings, fit_and_score, match_length
from sslgrid.probe.report import best_layers, plot_accuracy_vs_wer, probe_frame

ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng is not installed")


# --- phones ----------------------------------------------------------------------------------


def test_espeak_output_is_split_into_mnemonics_without_stress_or_pauses():
    out = "d+@ Q+r+'o:+t+@ v+'I+! s+v#+'E+m+t+_! _|+I+n _!d+,A+t+;+@ (en)+p+'a+tS+(nl)+@"
    assert split_espeak_mnemonics(out) == [
        "d", "@", "Q", "r", "o:", "t", "@", "v", "I", "s", "v#", "E", "m", "t", "I", "n",
        "d", "A", "t", "@", "(en)p", "(en)a", "(en)tS", "@",
    ]  # fmt: skip


def test_mnemonics_map_onto_the_phone_set_and_foreign_ones_to_spn():
    unknown = __import__("collections").Counter()
    phones = mnemonics_to_phones(["v#", "EI", "tS", "(en)p", "Wy"], unknown)
    assert phones == ["ʋ", "ɛi", "t", "ʃ", OTHER, "œy"]
    assert unknown == {"(en)p": 1}
    assert set(phones) <= set(PHONES)
    with pytest.raises(KeyError, match="'ü' is not in the phone set"):
        phone_ids(["ü"])


@needs_espeak
def test_espeak_phonemises_dutch_text():
    phonemiser = EspeakPhonemiser()
    [vis, water] = phonemiser.phonemise(["een grote vis", "het water"])
    assert vis == ["ə", "n", "ɣ", "r", "oː", "t", "ə", "v", "ɪ", "s"]
    assert water[-4:] == ["aː", "t", "ə", "r"]
    assert not phonemiser.unknown


# --- espeak's own timing ---------------------------------------------------------------------


@needs_espeak
def test_library_events_time_the_same_speech_as_the_command_line():
    from sslgrid.probe.espeak_timing import EspeakTimer

    text = "de grote vis zwemt in het water."
    timed = EspeakTimer().synthesise(text, voice="nl+m3", rate=170, pitch=40)
    wav = subprocess.run(
        [ESPEAK, "-b", "1", "-v", "nl+m3", "-s", "170", "-p", "40", "--stdin", "--stdout"],
        input=text.encode(),
        capture_output=True,
        check=True,
    ).stdout
    import io

    cli, rate = sf.read(io.BytesIO(wav), dtype="int16")
    assert rate == timed.sample_rate
    n = len(timed.samples)
    # The command appends silence; up to there the samples are identical.
    assert len(cli) >= n and np.array_equal(cli[:n], timed.samples) and not cli[n:].any()
    starts = timed.phone_starts()
    assert [p for p, _ in starts] == EspeakPhonemiser().phones(text.rstrip("."))
    times = [t for _, t in starts]
    assert times == sorted(times) and 0 <= times[0] < times[-1] < n / rate


# --- alignment -------------------------------------------------------------------------------


def test_blank_frames_are_split_between_neighbouring_phones_and_edges_are_silence():
    spans = [(5, 10, 12), (7, 20, 21), (9, 30, 31)]
    regions = spans_to_regions(spans, num_frames=50)
    # Gaps split at midpoints; the first phone reaches 4 frames right of its span, so 4 left;
    # the last phone reaches 5 frames left of its span, so 5 right.
    assert regions == [Region(5, 6, 16), Region(7, 16, 25), Region(9, 25, 36)]
    labels = regions_to_labels(regions, 50)
    assert labels.shape == (50,)
    assert (labels[:6] == 0).all() and (labels[36:] == 0).all() and PHONES[0] == "sil"
    assert labels[6:16].eq(5).all() and labels[16:25].eq(7).all() and labels[25:36].eq(9).all()
    assert region_starts(regions, 0.01) == [(PHONES[5], 0.06), (PHONES[7], 0.16), (PHONES[9], 0.25)]


def test_ctc_needs_a_frame_per_phone_and_a_blank_between_repeats():
    assert fits(3, [1, 2, 3]) and not fits(2, [1, 2, 3])
    assert not fits(3, [1, 1, 2]) and fits(4, [1, 1, 2])
    assert not fits(10, [])


def synthetic_phone_corpus(
    n: int, seed: int
) -> tuple[list[torch.Tensor], list[list[int]], list[torch.Tensor]]:
    """Utterances whose frames are a phone's fixed pattern plus noise: features, phone
    sequences and the true label per frame."""
    gen = torch.Generator().manual_seed(seed)
    patterns = torch.randn(len(PHONES), 16, generator=gen) * 2
    feats, targets, truth = [], [], []
    for _ in range(n):
        phones = torch.randint(1, 12, (6,), generator=gen).tolist()
        phones = [p for i, p in enumerate(phones) if i == 0 or p != phones[i - 1]]
        durations = torch.randint(4, 9, (len(phones),), generator=gen).tolist()
        labels = torch.cat(
            [torch.zeros(5, dtype=torch.long)]
            + [torch.full((d,), p) for p, d in zip(phones, durations, strict=True)]
            + [torch.zeros(5, dtype=torch.long)]
        )
        feats.append(patterns[labels] + 0.3 * torch.randn(len(labels), 16, generator=gen))
        targets.append(phones)
        truth.append(labels)
    return feats, targets, truth


def test_forced_alignment_gives_one_label_per_frame_close_to_the_truth():
    feats, targets, truth = synthetic_phone_corpus(120, seed=0)
    config = AlignerConfig(channels=32, layers=2, kernel=3, rnn_size=32, epochs=12,
                           batch_seconds=2.0, learning_rate=0.01)  # fmt: skip
    model, history = train_recogniser(feats, targets, config, seed=0, progress=False)
    assert history[-1]["ctc_loss"] < history[0]["ctc_loss"]
    agree = total = 0
    for x, y, labels in zip(feats[:20], targets[:20], truth[:20], strict=True):
        regions = align_utterance(model, x, y)
        assert [r.phone for r in regions] == y
        predicted = regions_to_labels(regions, x.shape[0])
        assert predicted.shape == labels.shape  # one label per frame
        agree += int((predicted == labels).sum())
        total += len(labels)
    assert agree / total > 0.7
    assert align_utterance(model, feats[0][:2], targets[0]) is None  # too short to align


@pytest.mark.parametrize("model", ["fbank", "wav2vec2"])
def test_labels_match_every_upstreams_frame_count(model):
    """The labels follow the fbank frames; a 20 ms model repeated to 10 ms ends within a few
    frames of them, for any length of audio."""
    from sslgrid.asr.finetune import encode_frozen, frame_repeat_for
    from sslgrid.config import load_config
    from sslgrid.features.store import FeatureCache
    from sslgrid.grid import model_args
    from sslgrid.models.factory import build_upstream

    config = load_config(REPO / "config.yaml")
    fbank = FbankConfig(**config["features"])
    args = {} if model == "fbank" else model_args(config, model)
    upstream = build_upstream(model, args, fbank).eval()
    repeat = frame_repeat_for(upstream, 10.0)
    frontend = LogMelFbank(fbank)
    for samples in (8000, 16037, 23999):
        wav = torch.randn(samples) * 0.1
        labels = torch.zeros(frontend.raw(wav).shape[0], dtype=torch.long)
        item = frontend.raw(wav).half() if upstream.input_kind == "fbank" else (wav * 32767).short()
        cache = FeatureCache(["u"], [item], fbank, upstream.input_kind)
        [hidden] = encode_frozen(upstream, cache, 10.0, repeat, progress=False)
        matched = match_length(labels, hidden.shape[1], tolerance=4, utt_id="u")
        assert matched.shape[0] == hidden.shape[1]
    with pytest.raises(FrameCountMismatch, match="utterance u: 10 label frames but 20"):
        match_length(torch.zeros(10, dtype=torch.long), 20, tolerance=4, utt_id="u")


# --- the probe -------------------------------------------------------------------------------


def labelled_utterances(
    n: int, encode_labels: bool, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` utterances of 50 frames with labels 0-9; frames are a fixed point per label (the
    same for every seed) plus noise, or noise alone."""
    centres = torch.randn(len(PHONES), 24, generator=torch.Generator().manual_seed(1234)) * 3
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        labels = torch.randint(0, 10, (50,), generator=gen)
        noise = torch.randn(50, 24, generator=gen)
        out.append(((centres[labels] + noise) if encode_labels else noise, labels))
    return out


def test_a_probe_on_features_that_encode_the_labels_is_near_perfect():
    result = fit_and_score(
        labelled_utterances(40, True, 0), labelled_utterances(20, True, 1), len(PHONES),
        ProbeSettings(epochs=20, batch_frames=256), seed=0,
    )  # fmt: skip
    assert result.accuracy > 0.97
    assert result.accuracy_low <= result.accuracy <= result.accuracy_high
    assert result.n_utts == 20 and result.n_frames == 1000


def test_a_probe_on_noise_is_near_chance():
    result = fit_and_score(
        labelled_utterances(40, False, 0), labelled_utterances(40, False, 1), len(PHONES),
        ProbeSettings(epochs=20, batch_frames=256), seed=0,
    )  # fmt: skip
    assert abs(result.accuracy - 0.1) < 0.04  # ten equally likely labels
    assert result.accuracy_low < 0.1 + 0.04


# --- table and plot --------------------------------------------------------------------------


def write_probe(path, model, pool, amount, accuracies):
    rows = [
        {"layer_choice": "all", "layer": i, "num_layers": len(accuracies), "n_utts": 3,
         "n_frames": 300, "accuracy": a, "accuracy_low": a - 0.05, "accuracy_high": a + 0.05,
         "majority": 0.2, "train_accuracy": a + 0.1}
        for i, a in enumerate(accuracies)
    ]  # fmt: skip
    coords = {"model": model, "pool": pool, "amount": amount, "corpus": "c", "split": "test"}
    path.write_text(json.dumps({"coords": coords, "rows": rows}))
    return path


def test_table_has_a_row_per_cell_and_layer_and_the_plot_joins_the_wer_table(tmp_path):
    files = [
        write_probe(tmp_path / "a.json", "fbank", "none", "none", [0.4]),
        write_probe(tmp_path / "b.json", "apc", "pool", "all", [0.5, 0.7, 0.6]),
    ]
    frame = probe_frame(files)
    assert len(frame) == 4
    assert list(frame.columns[:9]) == ["model", "pool", "amount", "pretrain_repeat", "corpus",
                                       "split", "layer_choice", "layer", "num_layers"]  # fmt: skip
    assert frame["accuracy"].tolist() == [40.0, 50.0, 70.0, 60.0]
    best = best_layers(frame)
    assert best.set_index("model")["layer"].to_dict() == {"fbank": 0, "apc": 1}
    wer = pd.DataFrame(
        [
            {"model": m, "pool": p, "amount": a, "decoder": d, "corpus": "c", "split": "test",
             "wer": w, "wer_low": w - 2, "wer_high": w + 2}
            for m, p, a, w in (("fbank", "none", "none", 80.0), ("apc", "pool", "all", 60.0))
            for d in ("greedy", "lm")
        ]
    )  # fmt: skip
    out = tmp_path / "plots" / "acc.png"
    plot_accuracy_vs_wer(frame, wer, out)
    assert out.stat().st_size > 0


# --- the workflow ----------------------------------------------------------------------------


@pytest.mark.e2e
@needs_espeak
def test_snakemake_builds_the_phone_probe_table(tmp_path):
    packages = make_fillets_packages(tmp_path / "pkgs", tiny_levels())
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = tiny_config(packages, ["fbank", "apc"])
    config["decode"]["decoders"] = ["greedy"]
    config["probe"] = {
        "layers": "all",
        "epochs": 2,
        "aligner": {"channels": 16, "layers": 1, "rnn_size": 8, "epochs": 1, "batch_seconds": 4.0},
    }
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    cmd = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory",
           str(workdir), "--configfile", str(workdir / "tiny.yaml"), "--cores", "2"]  # fmt: skip
    # Every layer is probed, so the table needs no fine-tuning (the plot, tested above, does).
    proc = subprocess.run([*cmd, "results/phone_probe_table.csv"], env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = pd.read_csv(workdir / "results" / "phone_probe_table.csv", dtype={"amount": str})
    # A row per cell and layer: fbank has one layer, the tiny APC its input and two GRU layers.
    cells = set(zip(table["model"], table["pool"], table["amount"], strict=True))
    assert cells == {("fbank", "none", "none"), ("apc", "fillets-nl", "all")}
    assert sorted(table.loc[table["model"] == "apc", "layer"]) == list(
        range(int(table.loc[table["model"] == "apc", "num_layers"].iloc[0]))
    )
    assert (table["corpus"] == "fillets-nl").all() and (table["split"] == "test").all()
    assert (
        (table["accuracy_low"] <= table["accuracy"]) & (table["accuracy"] <= table["accuracy_high"])
    ).all()
    report = json.loads((workdir / "results" / "phones" / "fillets-nl" / "report.json").read_text())
    assert report["splits"]["test"]["aligned"] > 0
    assert not (workdir / "results" / "finetune").exists()
