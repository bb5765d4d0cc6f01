"""wav2vec 2.0 upstream: contract, padding, masking, loss, Gumbel schedule, sizes, state."""

import copy
import io
import math

import numpy as np
import pytest
import torch

from sslgrid.models.upstream import conv_output_lengths
from sslgrid.models.wav2vec2 import (
    MaskedGroupNorm,
    Wav2Vec2,
    Wav2Vec2Settings,
    wav2vec2_base,
    wav2vec2_tiny,
)

# Smaller than the tiny size, for tests of behaviour rather than of the size itself.
SMALL = {
    "conv_dim": [16] * 7,
    "hidden_size": 32,
    "num_heads": 2,
    "intermediate_size": 64,
    "num_codevectors_per_group": 32,
    "codevector_dim": 16,
    "proj_codevector_dim": 16,
    "num_negatives": 20,
}
NO_DROPOUT = {
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "feat_quantizer_dropout": 0.0,
    "layerdrop": 0.0,
}
XLSR_LIKE = {"feat_extract_norm": "layer", "conv_bias": True, "do_stable_layer_norm": True}


def small(**overrides) -> Wav2Vec2:
    return Wav2Vec2(wav2vec2_tiny(**{**SMALL, **overrides}))


def glides(lengths: list[int], seed: int = 0) -> torch.Tensor:
    """Zero-padded batch of pitch glides: masked frames are predictable from their context."""
    g = torch.Generator().manual_seed(seed)
    batch = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        f_start, f_end = 100 + 900 * torch.rand(2, generator=g)
        freq = f_start + (f_end - f_start) * torch.arange(n) / n
        batch[i, :n] = 0.5 * torch.sin(2 * math.pi * torch.cumsum(freq, 0) / 16000)
        batch[i, :n] += 0.01 * torch.randn(n, generator=g)
    return batch


@pytest.mark.parametrize("variant", [{}, XLSR_LIKE], ids=["base-like", "xlsr-like"])
def test_upstream_contract(variant):
    torch.manual_seed(0)
    model = Wav2Vec2(wav2vec2_tiny(**variant)).eval()
    lengths = torch.tensor([12000, 9000, 4000])
    out = model(torch.randn(3, 12000) * 0.1, lengths)
    assert len(out.hidden_states) == model.num_layers == model.settings.num_layers + 1
    assert {h.shape for h in out.hidden_states} == {(3, 37, model.output_dim)}
    assert out.lengths.tolist() == [37, 27, 12]
    layers = list(zip(model.settings.conv_kernel, model.settings.conv_stride, strict=True))
    expected = conv_output_lengths(lengths, layers)
    assert out.lengths.tolist() == expected.tolist()
    assert model.downsample_rate == 320 and model.receptive_field == 400


def test_forward_returns_every_layer_in_training_mode_despite_layerdrop():
    model = small(layerdrop=0.9).train()
    for _ in range(3):
        out = model(glides([4000]), torch.tensor([4000]))
        assert len(out.hidden_states) == model.num_layers
    assert model.model.config.layerdrop == 0.9


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("variant", [{}, XLSR_LIKE], ids=["group-norm", "layer-norm"])
def test_padding_does_not_change_valid_frames(variant, normalize):
    torch.manual_seed(0)
    model = Wav2Vec2(wav2vec2_tiny(**variant, normalize_waveform=normalize)).eval()
    wav = glides([9000])
    alone = model(wav, torch.tensor([9000])).hidden_states
    padded = torch.randn(2, 16000)  # the padding of the first row is noise, not zeros
    padded[0, :9000] = wav[0]
    batched = model(padded, torch.tensor([9000, 16000]))
    n = int(batched.lengths[0])
    for a, b in zip(alone, batched.hidden_states, strict=True):
        torch.testing.assert_close(a[0, :n], b[0, :n])


def test_masked_group_norm_is_group_norm_of_each_utterance_alone():
    torch.manual_seed(0)
    reference = torch.nn.GroupNorm(4, 8)
    with torch.no_grad():
        reference.weight.normal_()
        reference.bias.normal_()
    masked = MaskedGroupNorm(4, 8)
    masked.load_state_dict(reference.state_dict())
    x = torch.randn(3, 8, 50) * 3 + 1
    assert torch.equal(masked(x), reference(x))  # no lengths set: plain group norm
    masked.frame_lengths = torch.tensor([50, 31, 7])
    out = masked(x)
    for i, n in enumerate([50, 31, 7]):
        torch.testing.assert_close(out[i, :, :n], reference(x[i : i + 1, :, :n])[0])
    # The padding influences nothing: replace it and the valid frames stay as they were.
    noisy = x.clone()
    noisy[1, :, 31:] = 1e3
    torch.testing.assert_close(masked(noisy)[1, :, :31], out[1, :, :31])


def test_base_encoder_keeps_the_checkpoint_layout():
    model = Wav2Vec2(wav2vec2_tiny())
    norm = model.model.wav2vec2.feature_extractor.conv_layers[0].layer_norm
    assert isinstance(norm, MaskedGroupNorm) and norm.frame_lengths is None
    from transformers import Wav2Vec2ForPreTraining

    plain = Wav2Vec2ForPreTraining(model.settings.to_hf_config())
    assert set(plain.state_dict()) == set(model.model.state_dict())
    model(glides([4000, 3000]), torch.tensor([4000, 3000]))
    assert norm.frame_lengths is None  # the lengths do not outlive the call


def test_masks_cover_valid_frames_only_at_the_expected_rate():
    model = Wav2Vec2(wav2vec2_tiny())
    frame_lengths = torch.tensor([400, 300, 120, 12, 5])
    torch.manual_seed(0)
    numpy_state = np.random.get_state()[1].copy()
    masks = torch.stack([model.sample_time_mask(frame_lengths, 400) for _ in range(30)])
    valid = torch.arange(400)[None, :] < frame_lengths[:, None]
    assert not (masks & ~valid).any()
    assert not masks[:, 4].any()  # shorter than one span
    assert ((masks[:, 3].sum(-1) == 0) | (masks[:, 3].sum(-1) >= 2)).all()
    # Spans of 10 start at a fraction p / 10 of the frames and overlap: 1 - exp(-p) is covered.
    covered = masks[:, :3].sum() / (30 * frame_lengths[:3].sum())
    assert abs(covered.item() - (1 - math.exp(-0.65))) < 0.06
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    torch.manual_seed(0)
    again = torch.stack([model.sample_time_mask(frame_lengths, 400) for _ in range(30)])
    assert torch.equal(masks, again)


def test_negatives_are_other_masked_frames_of_the_same_utterance():
    model = small()
    torch.manual_seed(0)
    mask = model.sample_time_mask(torch.tensor([150, 90, 5]), 150)
    negatives = model.sample_negatives(mask)
    assert negatives.shape == (3, 150, 20)
    for b, t in mask.nonzero().tolist():
        rows, frames = negatives[b, t] // 150, negatives[b, t] % 150
        assert (rows == b).all()
        assert mask[b, frames].all()
        assert (frames != t).all()


def test_pretraining_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    model = small(**NO_DROPOUT).train()
    lengths = [16000, 14000, 12000, 10000]
    wavs = glides(lengths)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = model.pretrain_loss(wavs, torch.tensor(lengths))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5])
    # Clearly better than chance, log(1 + distractors): the context identifies its target.
    assert np.mean(losses[-5:]) < math.log(1 + SMALL["num_negatives"]) - 0.5


def test_pretraining_is_reproducible_from_torch_seed():
    model = small().train()
    twin = copy.deepcopy(model)
    wavs, lengths = glides([8000, 6000]), torch.tensor([8000, 6000])
    torch.manual_seed(3)
    a = model.pretrain_loss(wavs, lengths)
    torch.manual_seed(3)
    b = twin.pretrain_loss(wavs, lengths)
    assert torch.equal(a, b)


def test_gumbel_temperature_follows_updates_and_is_checkpointed():
    settings = wav2vec2_tiny(
        **SMALL,
        gumbel_temperature_max=2.0,
        gumbel_temperature_min=0.5,
        gumbel_temperature_decay=0.8,
    )
    model = Wav2Vec2(settings).train()
    wavs, lengths = glides([8000, 8000]), torch.tensor([8000, 8000])
    used = []
    for _ in range(8):
        assert model.gumbel_temperature == max(2.0 * 0.8 ** int(model.num_updates), 0.5)
        model.pretrain_loss(wavs, lengths)
        used.append(model.model.quantizer.temperature)
    assert used[:3] == pytest.approx([2.0, 1.6, 1.28])
    assert used[-1] == 0.5 and all(a >= b for a, b in zip(used, used[1:], strict=False))
    model.eval()
    model.pretrain_loss(wavs, lengths)
    assert int(model.num_updates) == 8  # evaluation does not advance the schedule

    restored = Wav2Vec2(settings)
    restored.load_state_dict(model.state_dict())
    assert int(restored.num_updates) == 8
    assert restored.gumbel_temperature == model.gumbel_temperature


def test_feature_grad_mult_scales_only_the_feature_encoder_gradient():
    grads = {}
    for mult in (1.0, 0.25):
        torch.manual_seed(0)
        model = small(feature_grad_mult=mult).eval()
        model(glides([8000]), torch.tensor([8000])).hidden_states[-1].sum().backward()
        conv = model.model.wav2vec2.feature_extractor.conv_layers[0].conv.weight.grad
        proj = model.model.wav2vec2.feature_projection.projection.weight.grad
        grads[mult] = conv.clone(), proj.clone()
    torch.testing.assert_close(grads[0.25][0], 0.25 * grads[1.0][0])
    torch.testing.assert_close(grads[0.25][1], grads[1.0][1])


def test_base_size_matches_the_reference_table():
    model = Wav2Vec2(wav2vec2_base())
    params = sum(p.numel() for p in model.parameters())
    assert model.output_dim == 768
    assert model.num_layers == 13
    assert model.downsample_rate == 320
    assert abs(params - 95e6) / 95e6 < 0.10


def test_state_dict_round_trip_gives_identical_outputs():
    torch.manual_seed(0)
    settings = wav2vec2_tiny(**SMALL, **XLSR_LIKE)
    model = Wav2Vec2(settings).train()
    wavs, lengths = glides([8000, 6000]), torch.tensor([8000, 6000])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.pretrain_loss(wavs, lengths).backward()
    opt.step()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "args": settings.to_dict()}, buffer)
    buffer.seek(0)
    ckpt = torch.load(buffer, weights_only=True)
    restored = Wav2Vec2(Wav2Vec2Settings(**ckpt["args"]))
    restored.load_state_dict(ckpt["model"])
    assert restored.settings == settings and int(restored.num_updates) == 1
    a = model.eval()(wavs, lengths).hidden_states
    b = restored.eval()(wavs, lengths).hidden_states
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_settings_reject_inconsistent_layouts():
    with pytest.raises(ValueError, match="feat_extract_norm.*'group', 'layer'"):
        Wav2Vec2Settings(feat_extract_norm="batch")
    with pytest.raises(ValueError, match="one entry per convolution"):
        Wav2Vec2Settings(conv_dim=[512] * 6)
    assert Wav2Vec2Settings(conv_dim=[64] * 7).conv_dim == (64,) * 7


def test_too_short_inputs_are_rejected():
    model = Wav2Vec2(wav2vec2_tiny())
    with pytest.raises(ValueError, match="shorter than one frame"):
        model(torch.zeros(1, 1000), torch.tensor([300]))
    with pytest.raises(ValueError, match="shorter than one mask span"):
        model.pretrain_loss(torch.zeros(1, 2000), torch.tensor([2000]))
