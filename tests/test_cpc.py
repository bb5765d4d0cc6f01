"""CPC: upstream contract, padding-free InfoNCE, negative sampling, paper size, encoder
normalisation over time (and older checkpoints' per-frame normalisation)."""

import math

import pytest
import torch
from signals import chirps

from sslgrid.models.cpc import (
    CPC,
    ENCODER_LAYERS,
    CPCConfig,
    conv_channels_last,
    cpc_paper,
    sample_negative_indices,
)
from sslgrid.models.upstream import conv_output_lengths

# config.yaml's tiny size, except where a test shrinks it further.
TINY = {
    "hidden_size": 32,
    "ar_layers": 1,
    "prediction_steps": 12,
    "num_negatives": 16,
    "negatives": "batch",
}


def tiny(**overrides) -> CPC:
    return CPC(CPCConfig(**{**TINY, **overrides}))


@pytest.mark.parametrize(
    "kernel,stride,channels,frames", [(10, 5, 1, 1003), (8, 4, 6, 307), (4, 2, 5, 10), (4, 2, 3, 4)]
)
def test_channel_last_convolution_equals_conv1d(kernel, stride, channels, frames):
    conv = torch.nn.Conv1d(channels, 7, kernel, stride=stride).double()
    x = torch.randn(2, frames, channels, dtype=torch.double)
    expected = conv(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(conv_channels_last(x, conv), expected)


@pytest.mark.parametrize("ar_layers", [1, 2])
def test_upstream_contract(ar_layers):
    torch.manual_seed(0)
    model = tiny(ar_layers=ar_layers).eval()
    lengths = torch.tensor([16000, 12345, 3000])
    out = model(torch.randn(3, 16000) * 0.1, lengths)
    assert model.num_layers == 1 + ar_layers == len(out.hidden_states)
    expected = conv_output_lengths(lengths, ENCODER_LAYERS)
    assert {h.shape for h in out.hidden_states} == {(3, int(expected[0]), model.output_dim)}
    assert out.lengths.tolist() == expected.tolist()
    assert model.downsample_rate == 160
    # Unpadded convolutions lose less than one receptive field (465 samples) of frames.
    assert ((lengths / model.downsample_rate - out.lengths).abs() < 3).all()


def test_shorter_than_one_frame_gives_no_frames():
    out = tiny().eval()(torch.randn(2, 300), torch.tensor([300, 100]))
    assert out.lengths.tolist() == [0, 0]


@pytest.mark.parametrize("norm", ["time", "frame"])
def test_padding_in_a_batch_does_not_change_valid_frames(norm):
    torch.manual_seed(0)
    model = tiny(encoder_norm=norm).eval()
    short, long = torch.randn(5000) * 0.1, torch.randn(9000) * 0.1
    alone = model(short[None], torch.tensor([5000]))
    batch = torch.stack([torch.cat([short, 5 * torch.randn(4000)]), long])
    padded = model(batch, torch.tensor([5000, 9000]))
    n = int(alone.lengths[0])
    assert int(padded.lengths[0]) == n
    for a, b in zip(alone.hidden_states, padded.hidden_states, strict=True):
        torch.testing.assert_close(b[0, :n], a[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("negatives,norm", [("batch", "time"), ("same_utterance", "time"),
                                            ("batch", "frame")])  # fmt: skip
def test_loss_ignores_padding(negatives, norm):
    model = tiny(negatives=negatives, encoder_norm=norm).eval()
    wavs = torch.randn(2, 6000) * 0.1
    lengths = torch.tensor([6000, 4000])
    garbage = torch.cat([wavs, 10 * torch.randn(2, 3000)], dim=1)
    garbage[1, 4000:] = 10 * torch.randn(5000)
    torch.manual_seed(1)
    a = model.pretrain_loss(wavs, lengths)
    torch.manual_seed(1)
    b = model.pretrain_loss(garbage, lengths)
    # Bit-identical: valid frames do not depend on padding, negative draws are time-major and
    # the sum runs over the same selected terms in the same order.
    assert torch.equal(a, b)


def test_same_utterance_negatives_come_from_the_same_utterance():
    torch.manual_seed(0)
    lengths = torch.tensor([5, 0, 3, 7, 1])
    idx = sample_negative_indices(lengths, 7, 200, same_utterance=True)
    assert idx.shape == (5, 7, 200)
    start = torch.cumsum(lengths, 0) - lengths
    for b, n in enumerate(lengths.tolist()):
        if n == 0:
            continue
        drawn = idx[b, :n]
        assert set(drawn.unique().tolist()) == set(range(start[b], start[b] + n))


def test_batch_negatives_cover_the_valid_frames_of_every_utterance():
    torch.manual_seed(0)
    lengths = torch.tensor([4, 2, 6])
    idx = sample_negative_indices(lengths, 6, 300, same_utterance=False)
    for b, n in enumerate(lengths.tolist()):
        assert set(idx[b, :n].unique().tolist()) == set(range(12))


def test_negative_draws_do_not_depend_on_padding():
    lengths = torch.tensor([4, 6])
    torch.manual_seed(3)
    a = sample_negative_indices(lengths, 6, 5, same_utterance=False)
    torch.manual_seed(3)
    b = sample_negative_indices(lengths, 9, 5, same_utterance=False)
    assert torch.equal(a, b[:, :6])


@pytest.mark.parametrize("negatives,norm", [("batch", "time"), ("same_utterance", "time"),
                                            ("batch", "frame")])  # fmt: skip
def test_loss_falls_on_a_fixed_batch(negatives, norm):
    torch.manual_seed(0)
    model = tiny(prediction_steps=4, num_negatives=8, negatives=negatives, encoder_norm=norm)
    wavs = chirps(4, 6000)
    lengths = torch.tensor([6000, 5500, 5000, 4000])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    chance = math.log(1 + 8)  # every candidate equally likely
    losses = []
    while len(losses) < 100 and not (len(losses) > 5 and sum(losses[-5:]) < 5 * 0.5 * chance):
        loss = model.pretrain_loss(wavs, lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert abs(losses[0] - chance) < 0.5
    assert sum(losses[-5:]) / 5 < 0.5 * chance


def test_paper_size_matches_the_reference_table():
    model = CPC(cpc_paper())
    assert model.output_dim == 256 and model.num_layers == 2
    counted = sum(p.numel() for name, p in model.named_parameters() if "predictor" not in name)
    heads = sum(p.numel() for p in model.predictor.parameters())
    # Documented count: encoder + LSTM; the 12 pre-training-only predictors are not counted.
    assert abs(counted - 1.8e6) / 1.8e6 < 0.10
    assert heads == 12 * (256 * 256 + 256)


def test_state_dict_round_trip_gives_identical_outputs():
    torch.manual_seed(0)
    model = tiny().eval()
    torch.manual_seed(1)
    copy = tiny().eval()
    copy.load_state_dict(model.state_dict())
    wavs, lengths = torch.randn(2, 4000) * 0.1, torch.tensor([4000, 3000])
    original, restored = model(wavs, lengths), copy(wavs, lengths)
    for a, b in zip(original.hidden_states, restored.hidden_states, strict=True):
        assert torch.equal(a, b)


def test_config_round_trip_and_validation():
    config = cpc_paper(num_negatives=64)
    assert CPCConfig(**config.to_dict()) == config
    with pytest.raises(ValueError, match="same_utterance"):
        CPCConfig(negatives="same_speaker")
    with pytest.raises(ValueError, match="encoder_norm: 'batch'; expected one of"):
        CPCConfig(encoder_norm="batch")


def test_the_encoder_normalises_each_channel_over_the_utterance():
    """Under ``time`` every encoder layer's channels have zero mean and unit variance over each
    utterance's valid frames (before the ReLU; the affine map is the identity at
    initialisation); under ``frame`` every frame over its channels. Only ``frame``
    convolutions carry a bias."""
    torch.manual_seed(0)
    wavs, lengths = chirps(2, 6000), torch.tensor([6000, 4500])
    for norm in ("time", "frame"):
        model = tiny(encoder_norm=norm).eval()
        assert all((conv.bias is None) == (norm == "time") for conv in model.encoder.convs)
        outputs = []
        hooks = [n.register_forward_hook(lambda m, i, o, kept=outputs: kept.append(o))
                 for n in model.encoder.norms]  # fmt: skip
        with torch.no_grad():
            model(wavs, lengths)
        for hook in hooks:
            hook.remove()
        n = lengths
        for layer, out in zip(ENCODER_LAYERS, outputs, strict=True):
            n = conv_output_lengths(n, (layer,))
            valid = out[1, : int(n[1])]
            if norm == "time":
                torch.testing.assert_close(valid.mean(0), torch.zeros(32), atol=1e-4, rtol=0)
                # var / (var + eps) with eps 1e-5: a quiet channel ends a little below 1.
                torch.testing.assert_close(valid.var(0, unbiased=False), torch.ones(32),
                                           atol=0.02, rtol=0)  # fmt: skip
            else:
                torch.testing.assert_close(valid.mean(1), torch.zeros(len(valid)), atol=1e-4,
                                           rtol=0)  # fmt: skip


def test_checkpoints_from_before_the_normalisation_over_time_keep_their_layer_norms():
    """A CPC spec without ``encoder_norm`` is an older checkpoint's, trained with per-frame
    LayerNorms and biased convolutions: it is rebuilt with those, loads its weights strictly and
    computes what it computed; new specs name their normalisation."""
    from sslgrid.features.fbank import FbankConfig
    from sslgrid.models.factory import spec_args, upstream_from_spec, upstream_spec

    fbank = FbankConfig()
    spec = upstream_spec("cpc", dict(TINY), fbank)
    assert spec["args"]["encoder_norm"] == "time"
    assert (
        upstream_spec("cpc", {**TINY, "encoder_norm": "frame"}, fbank)["args"]["encoder_norm"]
        == "frame"
    )
    old_spec = {**spec, "args": dict(TINY)}
    assert spec_args(old_spec)["encoder_norm"] == "frame"
    torch.manual_seed(0)
    old = tiny(encoder_norm="frame").eval()
    restored = upstream_from_spec(old_spec).eval()
    restored.load_state_dict(old.state_dict())
    wavs, lengths = chirps(2, 4000), torch.tensor([4000, 3000])
    with torch.no_grad():
        for a, b in zip(old(wavs, lengths).hidden_states, restored(wavs, lengths).hidden_states,
                        strict=True):  # fmt: skip
            assert torch.equal(a, b)
    # The old weights do not fit the new default (no conv biases there): refused, not misread.
    with pytest.raises(RuntimeError, match="Unexpected key"):
        tiny().load_state_dict(old.state_dict())
