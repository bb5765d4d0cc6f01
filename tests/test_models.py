"""Upstream interface, APC pre-training, the downstream recogniser and greedy decoding."""

import pytest
import torch

from sslgrid.asr.downstream import (
    ConvCTCRecogniser,
    CTCRecogniser,
    DownstreamConfig,
    build_recogniser,
    greedy_decode,
)
from sslgrid.asr.tokenizer import CharTokenizer
from sslgrid.features.fbank import FbankConfig, LogMelFbank, num_frames
from sslgrid.models.apc import APC, APCConfig, apc_paper
from sslgrid.models.factory import build_upstream, upstream_from_spec, upstream_spec

FBANK = FbankConfig()


def test_fbank_frames_and_lengths():
    frontend = LogMelFbank(FBANK)
    wavs = torch.randn(2, 16000)
    feats, lengths = frontend(wavs, torch.tensor([16000, 8000]))
    assert feats.shape == (2, 100, 80)
    assert lengths.tolist() == [100, 50]
    assert num_frames(8000, 160) == 50


def test_cached_features_match_the_waveform_path():
    torch.manual_seed(0)
    model = APC(APCConfig(num_layers=2, hidden_size=32), FBANK).eval()
    wav = torch.randn(16000) * 0.1
    from_wav = model(wav[None], torch.tensor([16000])).hidden_states[-1]
    feats = model.frontend.normalise(model.frontend.raw(wav))[None]
    from_cache = model.forward_features(feats, torch.tensor([feats.shape[1]])).hidden_states[-1]
    torch.testing.assert_close(from_wav, from_cache, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "name,args", [("fbank", {}), ("apc", {"num_layers": 3, "hidden_size": 48})]
)
def test_upstream_contract(name, args):
    model = build_upstream(name, args, FBANK)
    out = model(torch.randn(3, 12000), torch.tensor([12000, 9000, 4000]))
    assert len(out.hidden_states) == model.num_layers
    shapes = {h.shape for h in out.hidden_states}
    assert shapes == {(3, 75, model.output_dim)}
    assert out.lengths.tolist() == [75, 56, 25]
    assert model.downsample_rate == 160


def test_apc_paper_size_matches_the_reference_table():
    model = APC(apc_paper(), FBANK)
    params = sum(p.numel() for p in model.parameters())
    assert model.output_dim == 512
    assert abs(params - 4.1e6) / 4.1e6 < 0.10


def test_apc_is_causal():
    model = APC(APCConfig(num_layers=2, hidden_size=16, dropout=0.0), FBANK).eval()
    x = torch.randn(1, 40, 80)
    y = x.clone()
    y[:, 30:] = torch.randn(1, 10, 80)
    a = model.forward_features(x, torch.tensor([40])).hidden_states[-1]
    b = model.forward_features(y, torch.tensor([40])).hidden_states[-1]
    torch.testing.assert_close(a[:, :30], b[:, :30])
    assert not torch.allclose(a[:, 30:], b[:, 30:])


def test_apc_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = APC(APCConfig(num_layers=2, hidden_size=64, prediction_shift=2, dropout=0.0), FBANK)
    t = torch.arange(120).float()
    # Smooth, predictable "features": sinusoids with a per-utterance phase.
    x = torch.stack([torch.sin(0.2 * t[:, None] + torch.linspace(0, 3, 80) + k) for k in range(4)])
    lengths = torch.tensor([120, 100, 80, 60])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model.pretrain_loss(x, lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_apc_loss_ignores_padding():
    model = APC(APCConfig(num_layers=1, hidden_size=16, prediction_shift=2), FBANK).eval()
    x = torch.randn(1, 30, 80)
    padded = torch.cat([x, 100 * torch.randn(1, 20, 80)], dim=1)
    a = model.pretrain_loss(x, torch.tensor([30]))
    b = model.pretrain_loss(padded, torch.tensor([30]))
    torch.testing.assert_close(a, b)


def test_spec_round_trip_rebuilds_the_same_architecture():
    spec = upstream_spec("apc", {"num_layers": 2, "hidden_size": 24}, FBANK)
    model = upstream_from_spec(spec)
    assert isinstance(model, APC) and model.output_dim == 24 and model.num_layers == 2


def test_recogniser_output_lengths_follow_subsampling():
    model = CTCRecogniser(16, 3, 10, DownstreamConfig(num_layers=1, hidden_size=8, subsample=3))
    layers = torch.randn(3, 2, 31, 16)
    log_probs, lengths = model(layers, torch.tensor([31, 20]))
    assert log_probs.shape == (2, 11, 10)
    assert lengths.tolist() == [11, 7]
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 11))


@pytest.mark.parametrize("kind", ["lstm", "conv"])
def test_recogniser_learns_a_fixed_mapping(kind):
    torch.manual_seed(0)
    tok = CharTokenizer.from_texts(["ab ba"])
    model = build_recogniser(
        8,
        1,
        len(tok),
        DownstreamConfig(num_layers=1, hidden_size=32, dropout=0.0, subsample=1, kind=kind),
    )
    x = torch.randn(1, 2, 20, 8)
    targets = [torch.tensor(tok.encode("ab")), torch.tensor(tok.encode("ba"))]
    ctc = torch.nn.CTCLoss(zero_infinity=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        lp, lens = model(x, torch.tensor([20, 20]))
        loss = ctc(lp.transpose(0, 1), torch.cat(targets), lens, torch.tensor([2, 2]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    lp, lens = model(x, torch.tensor([20, 20]))
    assert [tok.decode(h) for h in greedy_decode(lp, lens)] == ["ab", "ba"]


def test_conv_recogniser_ignores_padding_and_follows_subsampling():
    """A padded utterance gets the same output as alone, whatever the padding holds."""
    torch.manual_seed(0)
    config = DownstreamConfig(kind="conv", num_layers=2, hidden_size=16, subsample=3, dropout=0.0)
    model = build_recogniser(8, 3, 10, config).eval()
    assert isinstance(model, ConvCTCRecogniser)
    layers = torch.randn(3, 2, 20, 8)
    layers[:, 1, 11:] = 100.0  # padding that would show if it leaked
    log_probs, lengths = model(layers, torch.tensor([20, 11]))
    assert log_probs.shape == (2, 7, 10) and lengths.tolist() == [7, 4]
    alone, _ = model(layers[:, 1:, :11], torch.tensor([11]))
    torch.testing.assert_close(log_probs[1, :4], alone[0])


def test_downstream_config_refuses_unknown_kinds_and_even_kernels():
    with pytest.raises(ValueError, match="kind 'gru'"):
        DownstreamConfig(kind="gru")
    with pytest.raises(ValueError, match="kernel_size 4"):
        DownstreamConfig(kind="conv", kernel_size=4)


def test_greedy_decode_collapses_repeats_and_drops_blanks():
    # frames: a a <b> a b b <b>  ->  "a a b" in symbol ids 1 1 2
    ids = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 2]])
    log_probs = torch.nn.functional.one_hot(ids, 3).float().log()
    assert greedy_decode(log_probs, torch.tensor([7])) == [[1, 1, 2]]


def test_tokenizer_round_trip_and_unknown_characters():
    tok = CharTokenizer.from_texts(["één twee", "drie"])
    assert tok.decode(tok.encode("twee één")) == "twee één"
    assert tok.unknown("vier") == {"v"}
    assert tok.encode("vier") == tok.encode("ier")


def test_frame_repeat_brings_20ms_frames_to_10ms():
    from sslgrid.asr.finetune import encode_frozen, frame_repeat_for
    from sslgrid.features.store import FeatureCache

    class TwentyMs(torch.nn.Module):
        downsample_rate = 320

    assert frame_repeat_for(TwentyMs(), 10.0) == 2
    assert frame_repeat_for(TwentyMs(), None) == 1
    model = build_upstream("apc", {"num_layers": 1, "hidden_size": 8}, FBANK)
    cache = FeatureCache(["a"], [torch.randn(30, 80).half()], FBANK)
    once = encode_frozen(model, cache, 10.0, 1, progress=False)[0]
    twice = encode_frozen(model, cache, 10.0, 2, progress=False)[0]
    assert twice.shape == (1, 60, 8)
    torch.testing.assert_close(twice[:, 0::2], once)
    torch.testing.assert_close(twice[:, 1::2], once)


def test_every_upstream_reads_the_input_kind_the_workflow_plans_for():
    from tests_paths import REPO

    from sslgrid.config import load_config
    from sslgrid.grid import INPUT_KINDS
    from sslgrid.models.factory import UPSTREAMS

    config = load_config(REPO / "config.yaml")
    assert set(INPUT_KINDS) == set(UPSTREAMS)
    for name in UPSTREAMS:
        args = {} if name == "fbank" else config["models"][name]["sizes"]["tiny"]
        assert build_upstream(name, args, FBANK).input_kind == INPUT_KINDS[name], name


@pytest.mark.parametrize(
    "name,paper",
    [
        ("apc", "sslgrid.models.apc:apc_paper"),
        ("mockingjay", "sslgrid.models.mockingjay:mockingjay_paper"),
        ("tera", "sslgrid.models.mockingjay:tera_paper"),
        ("cpc", "sslgrid.models.cpc:cpc_paper"),
        ("wav2vec", "sslgrid.models.wav2vec:wav2vec_paper"),
        ("wav2vec2", "sslgrid.models.wav2vec2:wav2vec2_base"),
    ],
)
def test_the_configured_paper_size_is_the_reference_architecture(name, paper):
    """config.yaml's `paper` entries are the architectures whose sizes the model tests check."""
    import importlib

    from tests_paths import REPO

    from sslgrid.config import load_config
    from sslgrid.models.factory import architecture

    module, function = paper.split(":")
    expected = getattr(importlib.import_module(module), function)()
    config = load_config(REPO / "config.yaml")
    assert architecture(name, config["models"][name]["sizes"]["paper"]) == expected


def test_conv_recogniser_checkpoint_reloads_as_conv(tmp_path):
    """finetune_frozen with kind conv writes a checkpoint that decodes through the same path."""
    from sslgrid.asr.finetune import encode_frozen, finetune_frozen, load_recogniser, transcribe
    from sslgrid.features.store import FeatureCache

    torch.manual_seed(0)
    texts = ["een vis", "twee vissen", "de grote vis", "hier is water"]
    fbank = FbankConfig()
    frames = [torch.randn(100, fbank.num_mel_bins) for _ in texts]
    cache = FeatureCache([f"u{i}" for i in range(4)], frames, fbank, "fbank")
    upstream = build_upstream("fbank", {}, fbank)
    config = DownstreamConfig(kind="conv", num_layers=1, hidden_size=16, subsample=2)
    out = tmp_path / "model.pt"
    run = {"upstream": upstream_spec("fbank", {}, fbank), "downstream": config.to_dict()}
    finetune_frozen(
        upstream, (cache, texts), (cache, texts), config, run, out,
        epochs=2, batch_seconds=2.0, learning_rate=1e-3, seed=0, progress=False,
    )  # fmt: skip
    recogniser = load_recogniser(out)
    assert isinstance(recogniser.downstream, ConvCTCRecogniser)
    assert recogniser.downstream.config == config
    encoded = encode_frozen(recogniser.upstream, cache, 2.0, progress=False)
    hyps = transcribe(recogniser.downstream, recogniser.tokenizer, encoded, 10_000)
    assert len(hyps) == len(texts)


def _tiny_upstreams():
    from tests_paths import REPO

    from sslgrid.config import load_config
    from sslgrid.models.factory import UPSTREAMS

    config = load_config(REPO / "config.yaml")
    for name in UPSTREAMS:
        yield name, ({} if name == "fbank" else config["models"][name]["sizes"]["tiny"])


@pytest.mark.parametrize(
    "name,args", list(_tiny_upstreams()), ids=lambda v: v if isinstance(v, str) else ""
)
def test_an_utterance_encodes_the_same_alone_and_in_a_padded_batch(name, args):
    """What a test utterance is turned into must not depend on which utterances share its
    batch: one-per-batch and all-in-one-batch encodings agree for every upstream."""
    from sslgrid.asr.finetune import encode_frozen
    from sslgrid.features.store import FeatureCache

    torch.manual_seed(0)
    model = build_upstream(name, args, FBANK)
    seconds = [1.0, 2.5, 0.6, 1.7]
    if model.input_kind == "wav":
        items = [(torch.randn(int(s * 16000)) * 3000).short() for s in seconds]
        cache = FeatureCache([str(i) for i in range(4)], items, FBANK, "wav")
    else:
        items = [torch.randn(int(s * 100), 80).half() for s in seconds]
        cache = FeatureCache([str(i) for i in range(4)], items, FBANK)
    alone = encode_frozen(model, cache, 0.5, progress=False)  # every batch holds one utterance
    together = encode_frozen(model, cache, 60.0, progress=False)  # one batch, padded to 2.5 s
    for a, b in zip(alone, together, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a.float(), b.float(), atol=2e-3, rtol=2e-3)
