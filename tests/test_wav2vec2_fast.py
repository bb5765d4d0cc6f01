"""sslgrid's wav2vec 2.0 pre-training step computes transformers' loss, masks and distractors."""

import pytest
import torch
import torch.nn.functional as F

from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import FeatureCache
from sslgrid.models.factory import load_upstream, upstream_spec
from sslgrid.models.upstream import padding_mask
from sslgrid.models.wav2vec2 import Wav2Vec2, wav2vec2_tiny
from sslgrid.models.wav2vec2_fast import (
    POS_CONVS,
    FastPretrainer,
    _grouped_conv_fft,
    _grouped_conv_gemm,
    sample_distractors,
    span_mask,
    time_position_convs,
)
from sslgrid.train.pretrain import pretrain_upstream

ARCHITECTURES = {
    "base": {},
    "large": {"feat_extract_norm": "layer", "do_stable_layer_norm": True, "conv_bias": True},
    "grad-mult": {"feature_grad_mult": 0.1},
}


def fixed_gumbel(noise):
    """A hard Gumbel softmax with given noise, for both implementations alike."""

    def gumbel_softmax(logits, tau=1.0, hard=False, eps=1e-10, dim=-1):
        soft = ((logits + noise[: logits.shape[0]].to(logits)) / tau).softmax(dim)
        index = soft.argmax(dim, keepdim=True)
        hard_choice = torch.zeros_like(logits).scatter_(dim, index, 1.0)
        return hard_choice - soft.detach() + soft

    return gumbel_softmax


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("convs,pos_conv", [("gemm", "cudnn"), ("cudnn", "gemm"), ("gemm", "fft")])
def test_loss_and_gradients_match_transformers(arch, mode, convs, pos_conv, monkeypatch):
    torch.manual_seed(0)
    # Dropout off, so both implementations see the same network; the Gumbel noise is shared.
    model = Wav2Vec2(
        wav2vec2_tiny(hidden_dropout=0.0, feat_proj_dropout=0.0, **ARCHITECTURES[arch])
    )
    getattr(model, mode)()
    wavs = torch.randn(3, 16000)
    lengths = torch.tensor([16000, 12000, 9000])
    frames = int(model.output_lengths(torch.tensor([16000]))[0])
    mask = model.sample_time_mask(model.output_lengths(lengths), frames)
    negatives = model.sample_negatives(mask)
    noise = -torch.empty(3 * frames * 2, 64).exponential_().log()
    monkeypatch.setattr(F, "gumbel_softmax", fixed_gumbel(noise))

    model.model.set_gumbel_temperature(model.gumbel_temperature)
    with model.valid_frames(lengths):
        out = model.model(
            model._condition(wavs, lengths),
            attention_mask=padding_mask(lengths, wavs.shape[1]).long(),
            mask_time_indices=mask,
            sampled_negative_indices=negatives,
        )
    reference = out.loss / mask.sum()
    reference.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    per_utterance = negatives.view(3, frames, -1) - (torch.arange(3) * frames)[:, None, None]
    fast = FastPretrainer(model, convs=convs, pos_conv=pos_conv)
    loss = fast(wavs, lengths, mask=mask, negatives=per_utterance)
    loss.backward()

    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-5)
    got = {n for n, p in model.named_parameters() if p.grad is not None}
    assert got == set(expected)
    for name, grad in expected.items():
        if grad.norm() < 1e-8:  # e.g. the key bias, which softmax ignores
            continue
        param = dict(model.named_parameters())[name]
        error = (param.grad - grad).norm() / grad.norm()
        assert error < 1e-4, f"{name}: relative gradient error {error:.2e}"
    assert int(model.num_updates) == (1 if mode == "train" else 0)


def test_span_masks_have_transformers_statistics():
    torch.manual_seed(0)
    model = Wav2Vec2(wav2vec2_tiny())
    lengths = torch.tensor([749, 500, 300, 20, 13, 5])
    ours = torch.stack([span_mask(lengths, 749, 0.65, 10, 2) for _ in range(300)]).double()
    theirs = torch.stack([model.sample_time_mask(lengths, 749) for _ in range(300)]).double()
    share_ours = ours.sum((0, 2)) / (300 * lengths)
    share_theirs = theirs.sum((0, 2)) / (300 * lengths)
    assert torch.allclose(share_ours, share_theirs, atol=0.03), (share_ours, share_theirs)
    assert 0.45 < share_ours[0] < 0.53  # about 1 - exp(-0.65) of a long utterance
    valid = torch.arange(749)[None, :] < lengths[:, None]
    assert not (ours.bool() & ~valid).any()  # never a padded frame
    assert not ours[:, 5].any()  # 5 frames: no 10-frame span fits
    assert (ours.sum(2) != 1).all()  # a masked frame always has another one as distractor


def test_distractors_are_other_masked_frames_of_the_utterance_uniformly():
    torch.manual_seed(0)
    lengths = torch.tensor([749, 300, 20])
    mask = span_mask(lengths, 749, 0.65, 10, 2)
    draws = sample_distractors(mask, 100)
    assert draws.shape == (3, 749, 100)
    for i in range(3):
        masked = mask[i].nonzero().flatten()
        picks = draws[i][mask[i]]
        assert mask[i][picks].all()
        assert not (picks == masked[:, None]).any()
        counts = torch.bincount(picks.flatten(), minlength=749)[masked].double()
        # 100 draws per masked frame, spread over the masked frames: about 100 each.
        assert counts.sum() == 100 * len(masked)
        assert counts.std() < 2 * 100**0.5


def test_grouped_position_convolution_as_matrix_products_equals_conv1d():
    for kernel in (128, 7):
        x = torch.randn(2, 50, 64, dtype=torch.float64)
        w = torch.randn(64, 8, kernel, dtype=torch.float64)
        b = torch.randn(64, dtype=torch.float64)
        ref = F.conv1d(x.transpose(1, 2), w, b, padding=kernel // 2, groups=8)[:, :, :50]
        torch.testing.assert_close(_grouped_conv_gemm(x, w, b, 8), ref.transpose(1, 2))
        # The FFT route computes in float32.
        fft = _grouped_conv_fft(x, w, b, 8)
        torch.testing.assert_close(fft, ref.transpose(1, 2), rtol=1e-5, atol=1e-4)


def test_bad_implementation_name_is_refused():
    with pytest.raises(ValueError, match="pos_conv is 'winograd'"):
        FastPretrainer(Wav2Vec2(wav2vec2_tiny()), pos_conv="winograd")


def _fixed_draws(model, wavs, lengths):
    frames = model.output_lengths(lengths)
    mask = span_mask(frames, int(frames[0]), 0.65, 10, 2)
    return mask, sample_distractors(mask, 50)


def test_auto_position_convolution_is_conv1d_on_the_cpu():
    torch.manual_seed(0)
    model = Wav2Vec2(wav2vec2_tiny()).eval()
    fast = FastPretrainer(model)
    assert fast.pos_conv == "auto"
    wavs, lengths = torch.randn(2, 8000), torch.tensor([8000, 6000])
    fast(wavs, lengths, *_fixed_draws(model, wavs, lengths))
    assert fast.pos_conv == "cudnn"


def test_timed_position_convolution_keeps_the_fastest_and_the_loss(caplog):
    torch.manual_seed(0)
    model = Wav2Vec2(wav2vec2_tiny(hidden_dropout=0.0, feat_proj_dropout=0.0)).eval()
    wavs, lengths = torch.randn(2, 8000), torch.tensor([8000, 6000])
    draws = _fixed_draws(model, wavs, lengths)
    timed = FastPretrainer(model, pos_conv="timed")
    with caplog.at_level("INFO", logger="sslgrid.models.wav2vec2_fast"):
        loss = timed(wavs, lengths, *draws)
    assert timed.pos_conv in POS_CONVS
    assert f"position convolution: {timed.pos_conv} (" in caplog.text
    assert all(f"{impl} " in caplog.text for impl in POS_CONVS)  # every one was timed
    reference = FastPretrainer(model, pos_conv="cudnn")(wavs, lengths, *draws)
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-5)
    # Chosen once: later calls do not time again.
    caplog.clear()
    with caplog.at_level("INFO", logger="sslgrid.models.wav2vec2_fast"):
        timed(wavs, lengths, *draws)
    assert "position convolution" not in caplog.text


def test_position_convolution_timings_cover_every_implementation():
    x, w, b = torch.randn(2, 40, 32), torch.randn(32, 4, 16), torch.randn(32)
    seconds = time_position_convs(x, w, b, groups=8, repeats=2)
    assert set(seconds) == set(POS_CONVS)
    assert all(v > 0 for v in seconds.values())
    assert not x.requires_grad and w.grad is None  # the caller's tensors are left alone


def test_compiled_step_matches_eager():
    torch.manual_seed(0)
    model = Wav2Vec2(wav2vec2_tiny(hidden_dropout=0.0, feat_proj_dropout=0.0)).eval()
    wavs, lengths = torch.randn(2, 8000), torch.tensor([8000, 6000])
    frames = model.output_lengths(lengths)
    mask = span_mask(frames, int(frames[0]), 0.65, 10, 2)
    negatives = sample_distractors(mask, 50)
    eager = FastPretrainer(model)(wavs, lengths, mask, negatives)
    compiled = FastPretrainer(model, compile=True)(wavs, lengths, mask, negatives)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fast", [None, False], ids=["default", "transformers"])
def test_pretraining_with_the_fast_step_trains_checkpoints_and_reloads(tmp_path, fast):
    """The fast step is the default on every device (here the CPU); ``fast=False`` keeps
    ``transformers``' forward. Either trains, checkpoints and reloads."""
    torch.manual_seed(0)
    arch = {"num_layers": 1, "layerdrop": 0.5}
    model = Wav2Vec2(wav2vec2_tiny(**arch))
    g = torch.Generator().manual_seed(1)
    wavs = [0.1 * torch.randn(6000 + 1000 * i, generator=g) for i in range(6)]
    cache = FeatureCache([f"u{i}" for i in range(6)], wavs, FbankConfig(), kind="wav")
    config = {
        "upstream": upstream_spec("wav2vec2", {**wav2vec2_tiny(**arch).to_dict()}, FbankConfig())
    }
    out = tmp_path / "model.pt"
    state = pretrain_upstream(
        model,
        cache,
        config,
        out,
        epochs=2,
        batch_frames=24000,
        learning_rate=1e-3,
        seed=0,
        progress=False,
        **({} if fast is None else {"fast": fast}),
    )
    assert (getattr(model, "_fast_pretrainer", None) is not None) == (fast is None)
    assert len(state.history) == 2
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in state.history)
    # One Gumbel-schedule update per optimiser step.
    assert int(model.num_updates) == state.step > 0
    restored = load_upstream(out)
    for a, b in zip(model.state_dict().values(), restored.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
