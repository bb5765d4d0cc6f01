"""Full fine-tuning: the upstream trains with a linear CTC head, its waveform CNN stays frozen,
and the checkpoint decodes through the same path as a frozen-upstream recogniser."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml
from signals import chirps

from sslgrid.asr.downstream import LinearCTCHead, LinearHeadConfig
from sslgrid.asr.finetune import (
    FullRecogniser,
    encode_frozen,
    finetune_full,
    freeze_feature_encoder,
    load_recogniser,
    transcribe,
)
from sslgrid.asr.tokenizer import CharTokenizer
from sslgrid.config import load_config
from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import FeatureCache, float_to_pcm
from sslgrid.grid import finetune_cells, finetune_label, finetune_settings, upstream_cells
from sslgrid.models.factory import build_upstream, upstream_spec
from sslgrid.train.loop import pad_sequences

REPO = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((REPO / "config.yaml").read_text())["models"]
TEXTS = ["een vis", "twee vissen", "de grote vis", "hier is water", "waar is de deur", "kijk"]


def wav_cache(n: int = 6, seconds: float = 1.0) -> FeatureCache:
    waves = chirps(n, int(16000 * seconds))
    return FeatureCache(
        [f"u{i}" for i in range(n)], [float_to_pcm(w) for w in waves], FbankConfig(), "wav"
    )


def run_config(name: str) -> dict:
    fbank = FbankConfig()
    return {
        "upstream": upstream_spec(name, TINY[name]["sizes"]["tiny"], fbank),
        "mode": "full",
        "downstream": LinearHeadConfig(dropout=0.0).to_dict(),
    }


def test_full_fine_tuning_trains_the_upstream_but_not_its_cnn(tmp_path):
    torch.manual_seed(0)
    upstream = build_upstream("wav2vec2", TINY["wav2vec2"]["sizes"]["tiny"], FbankConfig())
    before = {k: v.clone() for k, v in upstream.state_dict().items()}
    cache = wav_cache()
    out = tmp_path / "ft" / "model.pt"
    finetune_full(
        upstream,
        (cache, TEXTS),
        (cache, TEXTS),
        LinearHeadConfig(dropout=0.0),
        run_config("wav2vec2"),
        out,
        epochs=2,
        batch_seconds=3.0,
        learning_rate=1e-3,
        seed=0,
        progress=False,
    )
    ckpt = torch.load(out, weights_only=False)
    cnn = [k for k in before if k.startswith(upstream.feature_encoder_prefixes)]
    transformer = [k for k in before if ".encoder.layers." in k and k.endswith("weight")]
    assert cnn and transformer
    for key in cnn:
        assert torch.equal(ckpt["upstream"][key], before[key]), key
    assert any(not torch.equal(ckpt["upstream"][k], before[k]) for k in transformer)

    # The checkpoint decodes through the frozen recogniser's path, with the fine-tuned weights.
    recogniser = load_recogniser(out)
    assert isinstance(recogniser.downstream, LinearCTCHead)
    for key, value in ckpt["upstream"].items():
        assert torch.equal(recogniser.upstream.state_dict()[key], value)
    encoded = encode_frozen(recogniser.upstream, cache, 3.0, progress=False)
    hyps = transcribe(recogniser.downstream, recogniser.tokenizer, encoded, 10_000)
    assert len(hyps) == len(TEXTS) and all(isinstance(h, str) for h in hyps)


@pytest.mark.parametrize("name", ["mockingjay", "wav2vec2"])
def test_full_fine_tuning_loss_falls_on_a_fixed_batch(name):
    torch.manual_seed(0)
    fbank = FbankConfig()
    upstream = build_upstream(name, TINY[name]["sizes"]["tiny"], fbank)
    cache = wav_cache(4)
    if upstream.input_kind == "fbank":
        upstream.frontend.set_cmvn(torch.zeros(80), torch.ones(80))
        feats = [upstream.frontend.raw(w.float() / 32768) for w in cache.feats]
        cache = FeatureCache(cache.ids, feats, fbank, "fbank")
    freeze_feature_encoder(upstream)
    tokenizer = CharTokenizer.from_texts(TEXTS[:4])
    model = FullRecogniser(
        upstream, LinearCTCHead(upstream.output_dim, len(tokenizer), LinearHeadConfig(0.0))
    )
    x, x_len = pad_sequences([upstream.prepare(f) for f in cache.feats])
    targets = [torch.tensor(tokenizer.encode(t)) for t in TEXTS[:4]]
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    ctc = torch.nn.CTCLoss(zero_infinity=True)
    losses = []
    model.train()
    for _ in range(40):
        log_probs, out_len = model(x, x_len)
        loss = ctc(
            log_probs.transpose(0, 1),
            torch.cat(targets),
            out_len,
            torch.tensor([len(t) for t in targets]),
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::8]


def test_the_grid_has_a_cell_per_mode_and_labelled_amount_and_fbank_only_frozen():
    config = load_config(
        REPO / "config.yaml",
        overrides={"finetune": {"modes": ["frozen", "full"], "amounts": [0.5, "all"]}},
    )
    labels = [s.label for s in finetune_settings(config)]
    assert labels == [
        "frozen-fillets-nl-0.5h",
        "frozen-fillets-nl",
        "full-fillets-nl-0.5h",
        "full-fillets-nl",
    ]
    assert finetune_label(config) == "frozen-fillets-nl-0.5h"
    cells = finetune_cells(config)
    fbank = [s.mode for c, s in cells if c.model == "fbank"]
    assert fbank == ["frozen", "frozen"]
    pretrained = len(upstream_cells(config)) - 1  # every cell but fbank
    assert len(cells) == 2 + pretrained * 4


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_labelled_subsets_are_nested_and_too_much_is_an_error(tmp_path):
    from lhotse import CutSet, MonoCut, Recording

    finetune = load_script("finetune")
    ids = [f"u{i:02d}" for i in range(40)]
    cuts = CutSet.from_cuts(
        MonoCut(i, 0.0, 90.0, 0, recording=Recording(i, [], 16000, 16000 * 90, 90.0)) for i in ids
    )
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    cache = FeatureCache(ids, [torch.zeros(9000, 80) for _ in ids], FbankConfig())
    texts = [f"tekst {i}" for i in range(40)]
    config = {"seed": 3}
    small = finetune.labelled_subset((cache, texts), tmp_path / "cuts.jsonl.gz", "0.25h", config)
    large = finetune.labelled_subset((cache, texts), tmp_path / "cuts.jsonl.gz", "0.5h", config)
    assert len(small[1]) == 10 and len(large[1]) == 20
    assert set(small[0].ids) <= set(large[0].ids)
    # Transcripts stay with their utterances.
    assert all(t == f"tekst {int(i[1:])}" for i, t in zip(large[0].ids, large[1], strict=True))
    everything = finetune.labelled_subset((cache, texts), tmp_path / "cuts.jsonl.gz", "all", config)
    assert everything[1] == texts
    with pytest.raises(ValueError, match="finetune.amounts: 2h"):
        finetune.labelled_subset((cache, texts), tmp_path / "cuts.jsonl.gz", "2h", config)
