"""Mockingjay and TERA: upstream contract, input alteration, pre-training loss, paper sizes."""

import pytest
import torch

from sslgrid.features.fbank import FbankConfig
from sslgrid.models.mockingjay import (
    Mockingjay,
    MockingjayConfig,
    choose_span_starts,
    mask_frames,
    mockingjay_paper,
    tera_paper,
)

FBANK = FbankConfig()
TERA_ALTERATION = {"freq_mask_max_bins": 16, "noise_probability": 0.15}


def tiny(**overrides) -> MockingjayConfig:
    return MockingjayConfig(
        **{
            "num_layers": 2,
            "hidden_size": 32,
            "num_heads": 4,
            "ffn_size": 64,
            "dropout": 0.0,
            **overrides,
        }
    )


def masked_runs(scored: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of each maximal run of True in a 1-D boolean tensor."""
    edges = torch.diff(torch.cat([torch.tensor([0]), scored.int(), torch.tensor([0])]))
    starts = (edges == 1).nonzero().flatten()
    ends = (edges == -1).nonzero().flatten()
    return [(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)]


@pytest.mark.parametrize("downsample,frames", [(1, [100, 75, 25]), (3, [33, 25, 8])])
def test_upstream_contract(downsample, frames):
    model = Mockingjay(tiny(downsample=downsample), FBANK).eval()
    out = model(torch.randn(3, 16000) * 0.1, torch.tensor([16000, 12000, 4000]))
    assert len(out.hidden_states) == model.num_layers == 2
    assert {h.shape for h in out.hidden_states} == {(3, frames[0], model.output_dim)}
    assert out.lengths.tolist() == frames
    assert model.downsample_rate == 160 * downsample
    assert model.input_rate == 100.0  # batches are still sized in filterbank frames


def test_cached_features_match_the_waveform_path():
    torch.manual_seed(0)
    model = Mockingjay(tiny(downsample=2), FBANK).eval()
    model.frontend.set_cmvn(torch.full((80,), -5.0), torch.full((80,), 2.0))
    wav = torch.randn(16000) * 0.1
    from_wav = model(wav[None], torch.tensor([16000]))
    raw = model.frontend.raw(wav).half()  # the feature cache stores float16
    inputs = model.prepare(raw)[None]
    from_cache = model.encode(inputs, torch.tensor([inputs.shape[1]]))
    assert from_cache.lengths.tolist() == from_wav.lengths.tolist() == [50]
    for a, b in zip(from_wav.hidden_states, from_cache.hidden_states, strict=True):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("downsample", [1, 2])
def test_padding_does_not_change_valid_outputs(downsample):
    torch.manual_seed(0)
    model = Mockingjay(tiny(downsample=downsample), FBANK).eval()
    x = torch.randn(1, 41, 80)
    batch = torch.randn(2, 60, 80)
    batch[0, :41] = x[0]
    batch[0, 41:] = 100 * torch.randn(19, 80)
    alone = model.forward_features(x, torch.tensor([41]))
    padded = model.forward_features(batch, torch.tensor([41, 60]))
    valid = 41 // downsample
    assert padded.lengths.tolist() == [valid, 60 // downsample]
    for a, b in zip(alone.hidden_states, padded.hidden_states, strict=True):
        torch.testing.assert_close(a[0, :valid], b[0, :valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("alteration", [{}, TERA_ALTERATION], ids=["mockingjay", "tera"])
@pytest.mark.parametrize("downsample", [1, 2])
def test_loss_ignores_padding(alteration, downsample):
    torch.manual_seed(0)
    model = Mockingjay(tiny(downsample=downsample, **alteration), FBANK).eval()
    x = torch.randn(2, 50, 80)
    lengths = torch.tensor([50, 37])
    padded = torch.cat([x, 100 * torch.randn(2, 30, 80)], dim=1)
    padded[1, 37:] = 100 * torch.randn(43, 80)
    torch.manual_seed(1)
    a = model.pretrain_loss(x, lengths)
    torch.manual_seed(1)
    b = model.pretrain_loss(padded, lengths)
    torch.testing.assert_close(a, b)


def test_utterances_shorter_than_a_span_are_not_scored():
    model = Mockingjay(tiny(), FBANK)
    masked = mask_frames(torch.randn(2, 30, 80), torch.tensor([5, 30]), model.config)
    assert not masked.loss_mask[0].any() and masked.loss_mask[1].any()
    loss = model.pretrain_loss(torch.randn(2, 30, 80), torch.tensor([5, 30]))
    loss.backward()
    assert torch.isfinite(loss)


def test_time_masking_chooses_15_percent_in_spans_of_7():
    torch.manual_seed(0)
    lengths = torch.tensor([1000, 800, 600, 450])
    frames = torch.randn(4, 1000, 80)
    masked = mask_frames(frames, lengths, tiny())
    scored = masked.loss_mask.any(-1)
    assert torch.equal(scored, masked.loss_mask.all(-1)), "Mockingjay scores whole frames"
    for i, length in enumerate(lengths.tolist()):
        assert not scored[i, length:].any()
        assert abs(scored[i].sum().item() / length - 0.15) < 0.01
        assert all(run % 7 == 0 for _, run in masked_runs(scored[i]))
    starts = choose_span_starts(300, 0.15, 7)
    assert len(starts) == 6 and (torch.diff(starts) >= 7).all() and starts.max() <= 293


def test_chosen_spans_are_zeroed_replaced_or_kept_80_10_10():
    torch.manual_seed(0)
    frames = torch.randn(8, 2000, 80)
    masked = mask_frames(frames, torch.full((8,), 2000), tiny())
    outcomes = {"zeroed": 0, "replaced": 0, "kept": 0}
    for i in range(8):
        for start, run in masked_runs(masked.loss_mask[i].any(-1)):
            for s in range(start, start + run, 7):
                span = masked.inputs[i, s : s + 7]
                if not span.any():
                    outcomes["zeroed"] += 1
                elif torch.equal(span, frames[i, s : s + 7]):
                    outcomes["kept"] += 1
                else:
                    outcomes["replaced"] += 1
                    source = (frames[i] - span[0]).abs().sum(-1).argmin()
                    torch.testing.assert_close(span, frames[i, source : source + 7])
    total = sum(outcomes.values())
    assert total == 8 * round(2000 * 0.15 / 7)
    assert abs(outcomes["zeroed"] / total - 0.8) < 0.06
    assert 0.05 < outcomes["replaced"] / total < 0.15
    assert 0.05 < outcomes["kept"] / total < 0.15


def test_tera_masks_frequency_bins_and_mockingjay_does_not():
    frames = torch.randn(16, 200, 80)
    lengths = torch.full((16,), 200)
    lengths[0] = 150
    torch.manual_seed(0)
    tera = mask_frames(frames, lengths, tiny(freq_mask_max_bins=16))
    widths = []
    for i, length in enumerate(lengths.tolist()):
        bins = tera.loss_mask[i, :length].all(0).nonzero().flatten()
        widths.append(len(bins))
        if len(bins):
            assert torch.equal(bins, torch.arange(bins[0], bins[0] + len(bins)))  # one block
            assert not tera.inputs[i, :length, bins].any()
        assert not tera.loss_mask[i, length:].any()
    assert max(widths) <= 16 and sum(w > 0 for w in widths) >= 12 and len(set(widths)) > 4
    torch.manual_seed(0)
    mockingjay = mask_frames(frames, lengths, tiny())
    assert torch.equal(mockingjay.loss_mask.any(-1), mockingjay.loss_mask.all(-1))


def test_tera_noise_touches_valid_frames_only():
    torch.manual_seed(0)
    frames = torch.randn(2, 100, 80)
    frames[1, 60:] = 0
    config = tiny(mask_proportion=0.0, noise_probability=1.0)
    masked = mask_frames(frames, torch.tensor([100, 60]), config)
    noise = masked.inputs - frames
    assert not masked.loss_mask.any()
    assert 0.15 < noise[:, :60].std().item() < 0.25
    assert not noise[1, 60:].any()


@pytest.mark.parametrize("alteration", [{}, TERA_ALTERATION], ids=["mockingjay", "tera"])
def test_loss_falls_on_a_fixed_batch(alteration):
    torch.manual_seed(0)
    model = Mockingjay(tiny(hidden_size=64, ffn_size=128, **alteration), FBANK)
    t = torch.arange(120).float()
    # Slow sinusoids: a masked span can be interpolated from the frames around it.
    x = torch.stack([torch.sin(0.05 * t[:, None] + torch.linspace(0, 3, 80) + k) for k in range(4)])
    lengths = torch.tensor([120, 100, 80, 60])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = model.pretrain_loss(x, lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


@pytest.mark.parametrize("paper", [mockingjay_paper, tera_paper])
def test_paper_sizes_match_the_reference_table(paper):
    model = Mockingjay(paper(), FBANK)
    params = sum(p.numel() for p in model.parameters())  # prediction head included
    assert model.output_dim == 768 and model.num_layers == 3
    assert abs(params - 21e6) / 21e6 < 0.10


def test_paper_configs_differ_only_in_alteration():
    mockingjay, tera = mockingjay_paper().to_dict(), tera_paper().to_dict()
    assert {k for k in mockingjay if mockingjay[k] != tera[k]} == set(TERA_ALTERATION)
    assert tera_paper(num_layers=2).num_layers == 2
    assert MockingjayConfig(**tera) == tera_paper()
    with pytest.raises(ValueError, match="num_heads"):
        MockingjayConfig(hidden_size=100, num_heads=12)
    with pytest.raises(ValueError, match="mel bins"):
        Mockingjay(tiny(freq_mask_max_bins=81), FBANK)


def test_state_dict_round_trip_gives_identical_outputs():
    torch.manual_seed(0)
    model = Mockingjay(tiny(downsample=2, **TERA_ALTERATION), FBANK)
    model.frontend.set_cmvn(torch.randn(80), torch.rand(80) + 0.5)
    torch.manual_seed(1)
    restored = Mockingjay(tiny(downsample=2, **TERA_ALTERATION), FBANK)
    restored.load_state_dict(model.state_dict())
    wavs, lengths = torch.randn(2, 8000) * 0.1, torch.tensor([8000, 6000])
    a = model.eval()(wavs, lengths)
    b = restored.eval()(wavs, lengths)
    for x, y in zip(a.hidden_states, b.hidden_states, strict=True):
        assert torch.equal(x, y)
