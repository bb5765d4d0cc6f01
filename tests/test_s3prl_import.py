"""Importing s3prl APC / Mockingjay / TERA checkpoints that the tests write themselves.

Each checkpoint is a ``torch.save``'d dict laid out as s3prl writes it, holding the weights of
a tiny reference model built here from s3prl's equations (per-layer GRUs with residuals;
a BERT-style post-LN Transformer with separate query / key / value, TF-style LayerNorm, additive
-10000 attention masks and s3prl's sinusoid table), never from our own modules.
"""

import copy
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sslgrid.config import validate_config
from sslgrid.features.fbank import FbankConfig, LogMelFbank
from sslgrid.grid import cache_name
from sslgrid.models.factory import load_upstream, upstream_from_spec, upstream_spec
from sslgrid.models.importers import import_upstream
from sslgrid.models.s3prl_import import import_s3prl
from sslgrid.st.encoder import load_encoder

REPO = Path(__file__).resolve().parents[1]
MEL = 16
FBANK = FbankConfig(num_mel_bins=MEL, frame_length_ms=25.0, frame_shift_ms=10.0)
LENGTHS = torch.tensor([8000, 5600])  # samples: 50 and 35 frames


def waveforms() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    wavs = 0.1 * torch.randn(len(LENGTHS), int(LENGTHS.max()), generator=g)
    return wavs * (torch.arange(wavs.shape[1])[None] < LENGTHS[:, None])


def raw_features() -> list[torch.Tensor]:
    """Each utterance's un-normalised fbank, as the features stage caches it."""
    frontend = LogMelFbank(FBANK)
    return [frontend.raw(w[:n]) for w, n in zip(waveforms(), LENGTHS.tolist(), strict=True)]


def s3prl_cmvn(x: torch.Tensor) -> torch.Tensor:
    """s3prl's per-utterance CMVN of one (T, D) utterance."""
    return (x - x.mean(0, keepdim=True)) / (1e-10 + x.std(0, keepdim=True))


def padded(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(x) for x in items])
    out = torch.zeros(len(items), int(lengths.max()), items[0].shape[-1])
    for i, x in enumerate(items):
        out[i, : len(x)] = x
    return out, lengths


def ours(model, raws: list[torch.Tensor]) -> list[torch.Tensor]:
    """Our hidden states through the training path: cached item -> prepare -> encode."""
    inputs, lengths = padded([model.prepare(x) for x in raws])
    with torch.no_grad():
        return model.eval().encode(inputs, lengths).hidden_states


def assert_states_equal(theirs: list[list[torch.Tensor]], states: list[torch.Tensor]) -> None:
    """``theirs[i]``: utterance i's layers (T_i, H); ``states``: our padded layers."""
    for i, layers in enumerate(theirs):
        assert len(layers) == len(states)
        for a, b in zip(states, layers, strict=True):
            torch.testing.assert_close(a[i, : len(b)], b, atol=1e-5, rtol=1e-5)


def with_global_cmvn(model) -> None:
    """A non-trivial global CMVN, which per-utterance CMVN must make irrelevant."""
    g = torch.Generator().manual_seed(5)
    model.frontend.set_cmvn(torch.randn(MEL, generator=g), 0.5 + torch.rand(MEL, generator=g))


# --------------------------------------------------------------------------- APC reference


class ReferenceAPC(nn.Module):
    """s3prl's APC equations: one GRU per layer, dropout, residual from the second layer."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, residual: bool):
        super().__init__()
        sizes = [input_size] + [hidden_size] * num_layers
        self.rnn_layers = nn.ModuleList(
            nn.GRU(sizes[i], sizes[i + 1], batch_first=True) for i in range(num_layers)
        )
        self.postnet = nn.Linear(hidden_size, input_size)
        self.residual = residual

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        total = frames.shape[1]
        packed = pack_padded_sequence(frames, lengths, batch_first=True, enforce_sorted=False)
        hiddens = []
        for i, rnn in enumerate(self.rnn_layers):
            out, _ = pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=total)
            if self.residual and i > 0:
                out = out + pad_packed_sequence(packed, batch_first=True, total_length=total)[0]
            hiddens.append(out)
            packed = pack_padded_sequence(out, lengths, batch_first=True, enforce_sorted=False)
        return hiddens


def apc_checkpoint(residual: bool = True, layers: int = 3, hidden: int = 24):
    torch.manual_seed(3)
    reference = ReferenceAPC(MEL, hidden, layers, residual).eval()
    checkpoint = {
        "config": {
            "model": {
                "paras": {
                    "num_layers": layers,
                    "hidden_size": hidden,
                    "dropout": 0.1,
                    "residual": residual,
                }
            },
            "task": {"sequence_length": 1500, "n_future": 5},
            "data": {
                "audio": {
                    "feat_type": "fbank",
                    "feat_dim": MEL,
                    "frame_length": 25,
                    "frame_shift": 10,
                    "decode_wav": False,
                }
            },
        },
        "model": copy.deepcopy(reference.state_dict()),
        "optimizer": {"state": {}, "param_groups": []},
        "global_step": 100000,
    }
    return reference, checkpoint


def reference_apc_states(reference: ReferenceAPC, raws: list[torch.Tensor]):
    frames, lengths = padded([s3prl_cmvn(x) for x in raws])
    with torch.no_grad():
        states = reference(frames, lengths)
    return [[s[i, :n] for s in states] for i, n in enumerate(lengths.tolist())]


@pytest.mark.parametrize("residual", [True, False], ids=["residual", "plain"])
def test_apc_checkpoint_gives_the_reference_hidden_states(tmp_path, residual):
    reference, checkpoint = apc_checkpoint(residual)
    path = tmp_path / "apc_360hr.ckpt"
    torch.save(checkpoint, path)
    model, settings = import_upstream(path, fbank=FBANK, family="apc")

    assert settings == {
        "num_layers": 3,
        "hidden_size": 24,
        "prediction_shift": 5,
        "dropout": 0.1,
        "residual": residual,
        "utterance_cmvn": True,
    }
    with_global_cmvn(model)
    raws = raw_features()
    assert_states_equal(reference_apc_states(reference, raws), ours(model, raws))

    # The upstream interface on the waveform agrees with the cached-feature path.
    wav = waveforms()[:1, : LENGTHS[0]]
    with torch.no_grad():
        from_wav = model(wav, LENGTHS[:1]).hidden_states
    for a, b in zip(from_wav, ours(model, raws[:1]), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

    meta = model.imported_from
    assert meta["format"] == "s3prl-apc" and meta["path"] == str(path)
    assert meta["features"]["feat_dim"] == MEL
    assert "window_type: 'hamming' (ours 'povey')" in meta["feature_approximations"]


def test_apc_round_trips_through_the_upstream_spec_and_keeps_pre_training(tmp_path):
    _, checkpoint = apc_checkpoint()
    # s3prl's own pre-training runner stores the configuration as Upstream_Config.
    checkpoint["Upstream_Config"] = checkpoint.pop("config")
    torch.save(checkpoint, tmp_path / "states-1000.ckpt")
    model, settings = import_upstream(tmp_path / "states-1000.ckpt", fbank=FBANK)
    with_global_cmvn(model)

    spec = upstream_spec("apc", settings, FBANK)
    torch.save({"model": model.state_dict(), "config": {"upstream": spec}}, tmp_path / "ours.pt")
    rebuilt = load_upstream(tmp_path / "ours.pt")
    raws = raw_features()
    for a, b in zip(ours(rebuilt, raws), ours(model, raws), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)

    inputs, lengths = padded([model.prepare(x) for x in raws])
    loss = model.train().pretrain_loss(inputs, lengths)
    assert torch.isfinite(loss) and loss.requires_grad


# --------------------------------------------------------------------------- Transformer reference


class TFLayerNorm(nn.Module):
    def __init__(self, size: int, eps: float = 1e-12):
        super().__init__()
        g = torch.Generator().manual_seed(size)
        self.weight = nn.Parameter(1 + 0.1 * torch.randn(size, generator=g))
        self.bias = nn.Parameter(0.1 * torch.randn(size, generator=g))
        self.eps = eps

    def forward(self, x):
        u = x.mean(-1, keepdim=True)
        s = (x - u).pow(2).mean(-1, keepdim=True)
        return self.weight * (x - u) / torch.sqrt(s + self.eps) + self.bias


def gelu(x):
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def sinusoid_table(length: int, size: int) -> torch.Tensor:
    angles = np.array(
        [[p / np.power(10000, 2 * (j // 2) / size) for j in range(size)] for p in range(length)]
    )
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return torch.FloatTensor(angles)


class Dense(nn.Module):
    """A Linear and, when ``norm``, a LayerNorm: BERT's ``output`` blocks."""

    def __init__(self, n_in: int, n_out: int, norm: bool):
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)
        if norm:
            self.LayerNorm = TFLayerNorm(n_out)


class SelfAttention(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)


class Attention(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.self = SelfAttention(hidden)
        self.output = Dense(hidden, hidden, norm=True)


class Layer(nn.Module):
    def __init__(self, hidden: int, ffn: int):
        super().__init__()
        self.attention = Attention(hidden)
        self.intermediate = Dense(hidden, ffn, norm=False)
        self.output = Dense(ffn, hidden, norm=True)


class InputRepresentations(nn.Module):
    def __init__(self, n_in: int, hidden: int):
        super().__init__()
        self.spec_transform = nn.Linear(n_in, hidden)
        self.LayerNorm = TFLayerNorm(hidden)


class Encoder(nn.Module):
    def __init__(self, hidden: int, ffn: int, layers: int):
        super().__init__()
        self.layer = nn.ModuleList(Layer(hidden, ffn) for _ in range(layers))


class ReferenceTransformer(nn.Module):
    """s3prl's post-LN TransformerModel, all encoded layers (the input representation first)."""

    def __init__(self, n_in: int, hidden: int, heads: int, ffn: int, layers: int):
        super().__init__()
        self.heads = heads
        self.input_representations = InputRepresentations(n_in, hidden)
        self.encoder = Encoder(hidden, ffn, layers)

    def forward(self, spec: torch.Tensor) -> list[torch.Tensor]:
        batch, length, _ = spec.shape
        hidden = self.input_representations.spec_transform.out_features
        size = hidden // self.heads
        mask = (spec.sum(-1) != 0).float()  # s3prl reads lengths off non-zero frames
        additive = ((1.0 - mask) * -10000.0)[:, None, None, :]
        rep = self.input_representations
        x = rep.LayerNorm(rep.spec_transform(spec) + sinusoid_table(length, hidden))
        states = [x]
        for layer in self.encoder.layer:
            att = layer.attention

            def heads(t):
                return t.view(batch, length, self.heads, size).permute(0, 2, 1, 3)

            q, k, v = (heads(m(x)) for m in (att.self.query, att.self.key, att.self.value))
            scores = q @ k.transpose(-1, -2) / math.sqrt(size) + additive
            context = (scores.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(batch, length, hidden)
            attended = att.output.LayerNorm(att.output.dense(context) + x)
            inner = gelu(layer.intermediate.dense(attended))
            x = layer.output.LayerNorm(layer.output.dense(inner) + attended)
            states.append(x)
        return states


class ReferenceSpecHead(nn.Module):
    def __init__(self, hidden: int, n_out: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.LayerNorm = TFLayerNorm(hidden)
        self.output = nn.Linear(hidden, n_out)


TRANSFORMER = {
    "input_dim": -1,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1.0e-12,
    "share_layer": False,
    "pre_layer_norm": False,
}
TASK = {
    "loss": "L1",
    "sequence_length": 1500,
    "position_encoding_size": 32,
    "mask_proportion": 0.15,
    "mask_consecutive_min": 7,
    "mask_consecutive_max": 7,
    "mask_allow_overlap": True,
    "mask_bucket_ratio": 1.5,
    "mask_frequency": 0.2,
    "noise_proportion": 0.15,
}
LOG_MEL_AUDIO = {
    "target_level": -25,
    "win_ms": 25,
    "hop_ms": 10,
    "n_freq": 201,
    "n_mels": MEL,
    "n_mfcc": 13,
    "input": {"feat_type": "mel", "channel": 0, "log": True, "delta": 0, "cmvn": True},
    "target": {"feat_type": "mel", "channel": 1, "log": True, "delta": 0, "cmvn": True},
}
KALDI_AUDIO = {
    "kaldi": {
        "feat_type": "fbank",
        "fbank": {
            "num_mel_bins": MEL,
            "frame_length": 25.0,
            "frame_shift": 10.0,
            "use_log_fbank": True,
        },
    },
    "delta": {"order": 0},
    "cmvn": {"use_cmvn": True},
}


def transformer_checkpoint(legacy: bool = False, audio=LOG_MEL_AUDIO, sequence_length=1500):
    """A TERA-like checkpoint; ``legacy``: 'Config' placement and gamma / beta names."""
    torch.manual_seed(4)
    reference = ReferenceTransformer(MEL, 32, 4, 64, 2).eval()
    head = ReferenceSpecHead(32, MEL)
    state = copy.deepcopy(reference.state_dict())
    if legacy:
        state = {
            k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
                "LayerNorm.bias", "LayerNorm.beta"
            ): v
            for k, v in state.items()
        }
    upstream_config = {
        "transformer": dict(TRANSFORMER),
        "task": {**TASK, "sequence_length": sequence_length},
        "audio": copy.deepcopy(audio),
    }
    runner = {"runner": {"total_steps": 200000}, "optimizer": {"name": "AdamW", "lr": 2e-4}}
    checkpoint = {
        "SpecHead": copy.deepcopy(head.state_dict()),
        "Transformer": state,
        "Optimizer": {"state": {}, "param_groups": []},
        "Global_step": 200000,
        "Settings": {"Config": "tera.yaml"},
    }
    if legacy:
        checkpoint["Config"] = upstream_config
    else:
        checkpoint["Config"] = runner
        checkpoint["Upstream_Config"] = upstream_config
    return reference, head, checkpoint


def reference_transformer_states(reference, raws, sequence_length):
    """Each utterance alone, cut into torch.chunk pieces as s3prl's upstream does."""
    out = []
    for raw in raws:
        frames = s3prl_cmvn(raw)[None]
        pieces = [frames]
        if 0 < sequence_length < frames.shape[1]:
            pieces = torch.chunk(frames, math.ceil(frames.shape[1] / sequence_length), dim=1)
        with torch.no_grad():
            layers = [reference(p) for p in pieces]
        # Our hidden states are the layer outputs, not the input representation.
        out.append([torch.cat([ls[j][0] for ls in layers]) for j in range(1, 3)])
    return out


@pytest.mark.parametrize(
    "legacy, audio, sequence_length",
    [(False, LOG_MEL_AUDIO, 1500), (True, KALDI_AUDIO, 20)],
    ids=["tera-log-mel", "legacy-kaldi-segmented"],
)
def test_transformer_checkpoint_gives_the_reference_hidden_states(
    tmp_path, legacy, audio, sequence_length
):
    reference, _, checkpoint = transformer_checkpoint(legacy, audio, sequence_length)
    path = tmp_path / "states-200000.ckpt"
    torch.save(checkpoint, path)
    model, settings = import_upstream(path, fbank=FBANK, family="tera")

    assert settings == {
        "num_layers": 2,
        "hidden_size": 32,
        "num_heads": 4,
        "ffn_size": 64,
        "dropout": 0.1,
        "downsample": 1,
        "mask_proportion": 0.15,
        "mask_span": 7,
        "freq_mask_max_bins": 3,  # 20% of 16 bins
        "noise_probability": 0.15,
        "layer_norm_eps": 1e-12,
        "utterance_cmvn": True,
        "max_segment_frames": sequence_length,
    }
    with_global_cmvn(model)
    raws = raw_features()
    expected = reference_transformer_states(reference, raws, sequence_length)
    assert_states_equal(expected, ours(model, raws))

    wav = waveforms()[:1, : LENGTHS[0]]
    with torch.no_grad():
        from_wav = model(wav, LENGTHS[:1]).hidden_states
    for a, b in zip(from_wav, ours(model, raws[:1]), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert model.imported_from["format"] == "s3prl-transformer"


def test_transformer_round_trips_and_keeps_the_spec_head(tmp_path):
    reference, head, checkpoint = transformer_checkpoint()
    torch.save(checkpoint, tmp_path / "tera.ckpt")
    model, settings = import_upstream(tmp_path / "tera.ckpt", fbank=FBANK, family="mockingjay")

    # The reconstruction head is s3prl's SpecHead: dense, GELU, LayerNorm, output.
    x = torch.randn(5, 32)
    with torch.no_grad():
        theirs = head.output(head.LayerNorm(gelu(head.dense(x))))
        torch.testing.assert_close(model.prediction_head(x), theirs, atol=1e-5, rtol=1e-5)

    rebuilt = upstream_from_spec(upstream_spec("tera", settings, FBANK))
    rebuilt.load_state_dict(model.state_dict())
    raws = raw_features()
    for a, b in zip(ours(rebuilt, raws), ours(model, raws), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)

    inputs, lengths = padded([model.prepare(x) for x in raws])
    torch.manual_seed(0)
    loss = model.train().pretrain_loss(inputs, lengths)
    assert torch.isfinite(loss) and loss.requires_grad


def test_transformer_without_spec_head_imports_with_a_warning(tmp_path, caplog):
    _, _, checkpoint = transformer_checkpoint()
    del checkpoint["SpecHead"]
    torch.save(checkpoint, tmp_path / "no_head.ckpt")
    with caplog.at_level(logging.WARNING):
        model, _ = import_s3prl(tmp_path / "no_head.ckpt", fbank=FBANK)
    assert "no SpecHead" in caplog.text
    assert model.imported_from["features"]["n_mels"] == MEL


def test_an_imported_s3prl_entry_goes_through_the_grid(tmp_path):
    _, checkpoint = apc_checkpoint()
    torch.save(checkpoint, tmp_path / "apc.ckpt")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["features"] = FBANK.to_dict()
    config["imported"] = {"apc360": {"path": str(tmp_path / "apc.ckpt"), "model": "apc"}}
    config["finetune"]["upstreams"].append("apc360")
    config = validate_config(config)

    assert cache_name("apc360", "train", config) == "fbank_train.pt"
    upstream, spec = load_encoder("apc360", None, config, tmp_path / "unused_cmvn.pt")
    assert spec["name"] == "apc" and spec["args"]["utterance_cmvn"] is True
    assert upstream.input_kind == "fbank" and upstream.num_layers == 3


# --------------------------------------------------------------------------- errors


def save(tmp_path: Path, checkpoint: dict, name: str = "model.ckpt") -> Path:
    torch.save(checkpoint, tmp_path / name)
    return tmp_path / name


def test_missing_keys_are_named(tmp_path):
    _, checkpoint = apc_checkpoint()
    del checkpoint["model"]["rnn_layers.1.weight_hh_l0"]
    path = save(tmp_path, checkpoint, "no_weight.ckpt")
    with pytest.raises(ValueError, match=r"no_weight.ckpt: model lacks weights.*rnn_layers\.1"):
        import_upstream(path, fbank=FBANK)

    _, checkpoint = apc_checkpoint()
    del checkpoint["config"]["model"]["paras"]["residual"]
    path = save(tmp_path, checkpoint, "no_residual.ckpt")
    with pytest.raises(ValueError, match="no_residual.ckpt: config.model.paras lacks residual"):
        import_upstream(path, fbank=FBANK)

    _, _, checkpoint = transformer_checkpoint()
    del checkpoint["Transformer"]["encoder.layer.1.attention.self.key.weight"]
    path = save(tmp_path, checkpoint, "no_key.ckpt")
    with pytest.raises(ValueError, match=r"no_key.ckpt.*encoder\.layer\.1\.attention\.self\.key"):
        import_upstream(path, fbank=FBANK)

    _, _, checkpoint = transformer_checkpoint()
    del checkpoint["Upstream_Config"]["transformer"]["intermediate_size"]
    path = save(tmp_path, checkpoint, "no_ffn.ckpt")
    with pytest.raises(ValueError, match="no_ffn.ckpt: Upstream_Config.transformer lacks inter"):
        import_upstream(path, fbank=FBANK)


def test_unknown_or_unsupported_architecture_options_are_refused(tmp_path):
    _, checkpoint = apc_checkpoint()
    checkpoint["config"]["model"]["paras"]["bidirectional"] = True
    path = save(tmp_path, checkpoint, "bi.ckpt")
    with pytest.raises(ValueError, match=r"bi.ckpt: unknown architecture option.*bidirectional"):
        import_upstream(path, fbank=FBANK)

    _, checkpoint = apc_checkpoint()
    checkpoint["config"]["model"]["paras"]["vq"] = {"codebook_size": [64], "code_dim": [24]}
    path = save(tmp_path, checkpoint, "vq.ckpt")
    with pytest.raises(ValueError, match="vq.ckpt: config.model.paras.vq is set: VQ-APC"):
        import_upstream(path, fbank=FBANK)

    for key, value, message in (
        ("pre_layer_norm", True, "pre_layer_norm is true"),
        ("hidden_act", "relu", "hidden_act='relu' is not supported"),
        ("position_embedding", "learned", "unknown architecture option.*position_embedding"),
    ):
        _, _, checkpoint = transformer_checkpoint()
        checkpoint["Upstream_Config"]["transformer"][key] = value
        path = save(tmp_path, checkpoint, f"{key}.ckpt")
        with pytest.raises(ValueError, match=f"{key}.ckpt: .*{message}"):
            import_upstream(path, fbank=FBANK)


def test_feature_settings_that_ours_cannot_match_are_refused(tmp_path):
    _, checkpoint = apc_checkpoint()
    path = save(tmp_path, checkpoint, "apc80.ckpt")
    message = "apc80.ckpt: the checkpoint's feature dimension is 16 but features.num_mel_bins is 80"
    with pytest.raises(ValueError, match=message):
        import_upstream(path, fbank=FbankConfig(num_mel_bins=80))

    _, _, checkpoint = transformer_checkpoint()
    path = save(tmp_path, checkpoint, "hop.ckpt")
    with pytest.raises(ValueError, match="hop.ckpt: the checkpoint's frame shift .ms. is 10.0"):
        import_upstream(path, fbank=FbankConfig(num_mel_bins=MEL, frame_shift_ms=20.0))

    # s3prl appends order-2 deltas when the Kaldi settings do not say otherwise.
    audio = {k: v for k, v in KALDI_AUDIO.items() if k != "delta"}
    _, _, checkpoint = transformer_checkpoint(audio=audio)
    path = save(tmp_path, checkpoint, "deltas.ckpt")
    with pytest.raises(ValueError, match="deltas.ckpt: Upstream_Config.audio.delta.order=2"):
        import_upstream(path, fbank=FBANK)

    _, checkpoint = apc_checkpoint()
    checkpoint["config"]["data"]["audio"]["cmvn"] = False
    path = save(tmp_path, checkpoint, "raw.ckpt")
    with pytest.raises(ValueError, match="raw.ckpt: config.data.audio.cmvn is false"):
        import_upstream(path, fbank=FBANK)

    _, _, checkpoint = transformer_checkpoint()
    checkpoint["Upstream_Config"]["audio"]["input"]["feat_type"] = "linear"
    path = save(tmp_path, checkpoint, "linear.ckpt")
    with pytest.raises(ValueError, match="linear.ckpt: Upstream_Config.audio.input.feat_type="):
        import_upstream(path, fbank=FBANK)


def test_the_declared_model_must_fit_the_checkpoint(tmp_path):
    _, checkpoint = apc_checkpoint()
    path = save(tmp_path, checkpoint, "apc.ckpt")
    with pytest.raises(ValueError, match="apc.ckpt: an s3prl-apc checkpoint.*'wav2vec2'"):
        import_upstream(path, fbank=FBANK, family="wav2vec2")
    _, _, checkpoint = transformer_checkpoint()
    path = save(tmp_path, checkpoint, "tera.ckpt")
    with pytest.raises(ValueError, match="expected model: mockingjay or tera"):
        import_upstream(path, fbank=FBANK, family="apc")
    other = save(tmp_path, {"model": {"linear.weight": torch.zeros(2, 2)}, "config": {}}, "o.pt")
    with pytest.raises(ValueError, match="o.pt: the configuration declares model 'apc'"):
        import_upstream(other, family="apc")
