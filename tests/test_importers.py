"""Importing wav2vec 2.0 checkpoints that the tests write themselves (random tiny weights)."""

import argparse
import json
import logging
import pickle
import sys
import types

import pytest
import torch
from torch.nn.functional import pad
from transformers import Wav2Vec2ForPreTraining, Wav2Vec2Model

from sslgrid.models.importers import import_upstream
from sslgrid.models.wav2vec2 import Wav2Vec2, Wav2Vec2Settings, wav2vec2_tiny

SMALL = {
    "conv_dim": [16] * 7,
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 2,
    "intermediate_size": 64,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "num_codevectors_per_group": 8,
    "codevector_dim": 16,
    "proj_codevector_dim": 16,
}
XLSR_LIKE = {
    "feat_extract_norm": "layer",
    "conv_bias": True,
    "do_stable_layer_norm": True,
    "codevector_dim": 24,  # != proj_codevector_dim, as fairseq's latent_dim allows
}
VARIANTS = pytest.mark.parametrize("variant", [{}, XLSR_LIKE], ids=["base-like", "xlsr-like"])
LENGTHS = torch.tensor([8000, 5600])


def waveforms() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    wavs = 0.1 * torch.randn(len(LENGTHS), int(LENGTHS.max()), generator=g)
    return wavs * (torch.arange(wavs.shape[1])[None] < LENGTHS[:, None])


def normalised(wavs: torch.Tensor) -> torch.Tensor:
    """What XLSR's feature extractor does: zero mean, unit variance over the valid samples."""
    out = torch.zeros_like(wavs)
    for i, n in enumerate(LENGTHS.tolist()):
        x = wavs[i, :n]
        out[i, :n] = (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)
    return out


def hidden_states(model: Wav2Vec2, wavs: torch.Tensor = None) -> list[torch.Tensor]:
    return model.eval()(waveforms() if wavs is None else wavs, LENGTHS).hidden_states


def one_by_one(run, wavs: torch.Tensor) -> list[torch.Tensor]:
    """``run`` (an unpadded (1, N) waveform -> its layers (1, T, D)) on each utterance alone,
    the results padded into batches. Alone, no implementation depends on how padding is
    handled (group norm takes statistics over the padded row in transformers and torchaudio;
    fairseq never pads such models), so this is what the weights mean."""
    per_utterance = [run(wavs[i : i + 1, :n]) for i, n in enumerate(LENGTHS.tolist())]
    frames = max(layers[0].shape[1] for layers in per_utterance)
    return [
        torch.cat(
            [pad(layers[k], (0, 0, 0, frames - layers[k].shape[1])) for layers in per_utterance]
        )
        for k in range(len(per_utterance[0]))
    ]


def reference_states(hf_model: Wav2Vec2Model, wavs: torch.Tensor) -> list[torch.Tensor]:
    """Hidden states straight from transformers, the last one after the final layer norm."""

    def run(wav: torch.Tensor) -> list[torch.Tensor]:
        out = hf_model.eval()(wav, output_hidden_states=True)
        return [*out.hidden_states[:-1], out.last_hidden_state]

    return one_by_one(run, wavs)


def assert_states_equal(ours: list[torch.Tensor], theirs: list[torch.Tensor], lengths) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        for i, n in enumerate(lengths.tolist()):
            torch.testing.assert_close(a[i, :n], b[i, :n], atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- Hugging Face


@VARIANTS
def test_hugging_face_pretraining_directory_keeps_everything(tmp_path, variant):
    settings = wav2vec2_tiny(**{**SMALL, **variant})
    torch.manual_seed(1)
    source = Wav2Vec2ForPreTraining(settings.to_hf_config()).eval()
    source.save_pretrained(tmp_path)

    model, args = import_upstream(tmp_path)

    layer_norm = variant.get("feat_extract_norm") == "layer"
    assert args["normalize_waveform"] is layer_norm  # no preprocessor_config.json: by encoder
    assert Wav2Vec2Settings(**args) == model.settings
    wavs = normalised(waveforms()) if layer_norm else waveforms()
    frames = model.output_lengths(LENGTHS)
    assert_states_equal(hidden_states(model), reference_states(source.wav2vec2, wavs), frames)
    ours, theirs = model.model.state_dict(), source.state_dict()
    for key in ("quantizer.codevectors", "quantizer.weight_proj.weight", "project_q.weight"):
        assert torch.equal(ours[key], theirs[key])
    assert torch.equal(ours["project_hid.weight"], theirs["project_hid.weight"])
    assert torch.equal(ours["wav2vec2.masked_spec_embed"], theirs["wav2vec2.masked_spec_embed"])

    # torchaudio's own wav2vec 2.0 implementation, fed the same weights, agrees.
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    torchaudio_model = import_huggingface_model(source.wav2vec2).eval()
    final = one_by_one(lambda wav: [torchaudio_model(wav)[0]], wavs)
    assert_states_equal(hidden_states(model)[-1:], final, frames)


def test_hugging_face_model_without_quantiser_imports_with_a_warning(tmp_path, caplog):
    settings = wav2vec2_tiny(**SMALL)
    torch.manual_seed(2)
    source = Wav2Vec2Model(settings.to_hf_config()).eval()
    source.save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": False}))

    with caplog.at_level(logging.WARNING, logger="sslgrid.models.importers"):
        model, args = import_upstream(tmp_path)

    assert "quantizer" in caplog.text and "freshly initialised" in caplog.text
    assert str(tmp_path) in caplog.text
    assert args["normalize_waveform"] is False
    frames = model.output_lengths(LENGTHS)
    assert_states_equal(hidden_states(model), reference_states(source, waveforms()), frames)


def test_hugging_face_legacy_bin_with_ctc_head(tmp_path):
    """pytorch_model.bin, weight-norm halves named g / v, and a CTC head that is dropped."""
    settings = wav2vec2_tiny(**SMALL)
    torch.manual_seed(3)
    source = Wav2Vec2ForPreTraining(settings.to_hf_config()).eval()
    state = {}
    for key, value in source.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        state[key.replace("parametrizations.weight.original1", "weight_v")] = value
    state["lm_head.weight"] = torch.zeros(5, SMALL["hidden_size"])
    torch.save(state, tmp_path / "pytorch_model.bin")
    source.config.to_json_file(tmp_path / "config.json")

    model, _ = import_upstream(tmp_path, layerdrop=0.2)

    assert model.settings.layerdrop == 0.2
    frames = model.output_lengths(LENGTHS)
    assert_states_equal(
        hidden_states(model), reference_states(source.wav2vec2, waveforms()), frames
    )


# --------------------------------------------------------------------------- fairseq


def fairseq_state(model: Wav2Vec2) -> dict[str, torch.Tensor]:
    """The model's weights under the names fairseq's Wav2Vec2Model gives them."""
    s, hf = model.settings, model.model.state_dict()
    w2v, out = "wav2vec2.", {}
    for i in range(len(s.conv_dim)):
        conv = f"{w2v}feature_extractor.conv_layers.{i}."
        for p in ("weight", "bias") if s.conv_bias else ("weight",):
            out[f"feature_extractor.conv_layers.{i}.0.{p}"] = hf[f"{conv}conv.{p}"]
        if s.feat_extract_norm == "layer" or i == 0:
            norm = "2.1" if s.feat_extract_norm == "layer" else "2"
            for p in ("weight", "bias"):
                out[f"feature_extractor.conv_layers.{i}.{norm}.{p}"] = hf[f"{conv}layer_norm.{p}"]
    pos = f"{w2v}encoder.pos_conv_embed.conv."
    out["encoder.pos_conv.0.weight_g"] = hf[pos + "parametrizations.weight.original0"]
    out["encoder.pos_conv.0.weight_v"] = hf[pos + "parametrizations.weight.original1"]
    out["encoder.pos_conv.0.bias"] = hf[pos + "bias"]
    out["mask_emb"] = hf[w2v + "masked_spec_embed"]
    out["quantizer.vars"] = hf["quantizer.codevectors"]
    for p in ("weight", "bias"):
        out[f"layer_norm.{p}"] = hf[f"{w2v}feature_projection.layer_norm.{p}"]
        out[f"post_extract_proj.{p}"] = hf[f"{w2v}feature_projection.projection.{p}"]
        out[f"encoder.layer_norm.{p}"] = hf[f"{w2v}encoder.layer_norm.{p}"]
        out[f"quantizer.weight_proj.{p}"] = hf[f"quantizer.weight_proj.{p}"]
        out[f"project_q.{p}"] = hf[f"project_q.{p}"]
        out[f"final_proj.{p}"] = hf[f"project_hid.{p}"]
        for n in range(s.num_layers):
            ours, theirs = f"encoder.layers.{n}.", f"{w2v}encoder.layers.{n}."
            for proj in ("q", "k", "v", "out"):
                out[f"{ours}self_attn.{proj}_proj.{p}"] = hf[f"{theirs}attention.{proj}_proj.{p}"]
            out[f"{ours}self_attn_layer_norm.{p}"] = hf[f"{theirs}layer_norm.{p}"]
            out[f"{ours}fc1.{p}"] = hf[f"{theirs}feed_forward.intermediate_dense.{p}"]
            out[f"{ours}fc2.{p}"] = hf[f"{theirs}feed_forward.output_dense.{p}"]
            out[f"{ours}final_layer_norm.{p}"] = hf[f"{theirs}final_layer_norm.{p}"]
    return {k: v.clone() for k, v in out.items()}


def fairseq_model_cfg(s: Wav2Vec2Settings) -> dict:
    dim = s.conv_dim[0]
    assert s.conv_dim == (dim,) * 7 and s.conv_kernel == (10, 3, 3, 3, 3, 2, 2)
    return {
        "_name": "wav2vec2",
        "extractor_mode": "layer_norm" if s.feat_extract_norm == "layer" else "default",
        "conv_feature_layers": f"[({dim}, 10, 5)] + [({dim}, 3, 2)] * 4 + [({dim}, 2, 2)] * 2",
        "conv_bias": s.conv_bias,
        "encoder_layers": s.num_layers,
        "encoder_embed_dim": s.hidden_size,
        "encoder_ffn_embed_dim": s.intermediate_size,
        "encoder_attention_heads": s.num_heads,
        "layer_norm_first": s.do_stable_layer_norm,
        "conv_pos": s.num_conv_pos_embeddings,
        "conv_pos_groups": s.num_conv_pos_embedding_groups,
        "quantize_targets": True,
        "latent_vars": s.num_codevectors_per_group,
        "latent_groups": s.num_codevector_groups,
        "latent_dim": s.codevector_dim if s.codevector_dim != s.proj_codevector_dim else 0,
        "final_dim": s.proj_codevector_dim,
        "latent_temp": [2.0, 0.5, 0.999995],
        "mask_prob": 0.65,
        "mask_length": 10,
        "num_negatives": 100,
        "logit_temp": 0.1,
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "encoder_layerdrop": 0.05,
        "dropout_input": 0.1,
        "dropout_features": 0.1,
        "feature_grad_mult": 0.1,
    }


def torchaudio_output(
    checkpoint: dict, s: Wav2Vec2Settings, wavs: torch.Tensor
) -> list[torch.Tensor]:
    """The file read by torchaudio's fairseq key mapping into torchaudio's own model."""
    from torchaudio.models import wav2vec2_model
    from torchaudio.models.wav2vec2.utils import import_fairseq

    model = wav2vec2_model(
        extractor_mode="layer_norm" if s.feat_extract_norm == "layer" else "group_norm",
        extractor_conv_layer_config=list(
            zip(s.conv_dim, s.conv_kernel, s.conv_stride, strict=True)
        ),
        extractor_conv_bias=s.conv_bias,
        encoder_embed_dim=s.hidden_size,
        encoder_projection_dropout=0.0,
        encoder_pos_conv_kernel=s.num_conv_pos_embeddings,
        encoder_pos_conv_groups=s.num_conv_pos_embedding_groups,
        encoder_num_layers=s.num_layers,
        encoder_num_heads=s.num_heads,
        encoder_attention_dropout=0.0,
        encoder_ff_interm_features=s.intermediate_size,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.0,
        encoder_layer_norm_first=s.do_stable_layer_norm,
        encoder_layer_drop=0.0,
        aux_num_out=None,
    )
    # _convert_state_dict is what import_fairseq_model applies to a fairseq model's weights; it
    # rejects any key that is not fairseq's, and the load below is strict.
    model.load_state_dict(import_fairseq._convert_state_dict(checkpoint["model"]))
    return one_by_one(lambda wav: [model.eval()(wav)[0]], wavs)


@VARIANTS
def test_fairseq_checkpoint_keeps_quantiser_and_projections(tmp_path, variant):
    torch.manual_seed(4)
    source = Wav2Vec2(wav2vec2_tiny(**{**SMALL, **variant})).eval()
    s = source.settings
    layer_norm = s.feat_extract_norm == "layer"
    checkpoint = {
        "cfg": {
            "model": fairseq_model_cfg(s),
            "task": {"_name": "audio_pretraining", "normalize": layer_norm},
            "criterion": {"_name": "wav2vec", "loss_weights": [0.2, 10.0]},
        },
        "model": fairseq_state(source),
        "optimizer_history": [{"criterion_name": "Wav2vecCriterion", "num_updates": 400000}],
    }
    path = tmp_path / "checkpoint_best.pt"
    torch.save(checkpoint, path)

    model, args = import_upstream(path)

    expected = {
        **s.to_dict(),
        **{"hidden_dropout": 0.1, "attention_dropout": 0.1, "activation_dropout": 0.0},
        **{"layerdrop": 0.05, "feat_proj_dropout": 0.1, "feat_quantizer_dropout": 0.1},
        **{"num_negatives": 100, "diversity_loss_weight": 0.2, "feature_grad_mult": 0.1},
        "normalize_waveform": layer_norm,
    }
    assert args == expected
    assert int(model.num_updates) == 400000 and model.gumbel_temperature == 0.5
    ours, theirs = model.model.state_dict(), source.model.state_dict()
    for key in (
        "quantizer.codevectors",
        "quantizer.weight_proj.weight",
        "quantizer.weight_proj.bias",
        "project_q.weight",
        "project_q.bias",
        "project_hid.weight",
        "project_hid.bias",
        "wav2vec2.masked_spec_embed",
    ):
        assert torch.equal(ours[key], theirs[key]), key
    wavs = normalised(waveforms()) if layer_norm else waveforms()
    frames = model.output_lengths(LENGTHS)
    assert_states_equal(hidden_states(model), reference_states(source.model.wav2vec2, wavs), frames)
    final = torchaudio_output(torch.load(path, weights_only=True), s, wavs)
    assert_states_equal(hidden_states(model)[-1:], final, frames)


def test_legacy_fairseq_args_and_unimportable_training_state(tmp_path):
    torch.manual_seed(5)
    source = Wav2Vec2(wav2vec2_tiny(**SMALL)).eval()
    fields = {k: v for k, v in fairseq_model_cfg(source.settings).items() if k != "_name"}
    fields["conv_feature_layers"] = str(fields["conv_feature_layers"])
    fields["latent_temp"] = "(2, 0.5, 0.999995)"
    args = argparse.Namespace(arch="wav2vec2", normalize=False, loss_weights="[0.1, 10]", **fields)
    # fairseq pickles its own classes (meters, ...) into the training state; we lack them.
    meters = types.ModuleType("fake_fairseq_meters")
    meters.AverageMeter = type("AverageMeter", (), {"__module__": "fake_fairseq_meters"})
    sys.modules["fake_fairseq_meters"] = meters
    try:
        extra = {"metrics": {"loss": meters.AverageMeter()}}
        checkpoint = {"args": args, "model": fairseq_state(source), "extra_state": extra}
        torch.save(checkpoint, tmp_path / "wav2vec_small.pt")
    finally:
        del sys.modules["fake_fairseq_meters"]
    with pytest.raises((ModuleNotFoundError, pickle.UnpicklingError)):
        torch.load(tmp_path / "wav2vec_small.pt", weights_only=False)

    model, settings = import_upstream(tmp_path / "wav2vec_small.pt")

    assert settings["gumbel_temperature_decay"] == 0.999995
    assert torch.equal(model.model.quantizer.codevectors, source.model.quantizer.codevectors)
    frames = model.output_lengths(LENGTHS)
    wavs = waveforms()
    assert_states_equal(hidden_states(model), reference_states(source.model.wav2vec2, wavs), frames)


def test_fine_tuned_fairseq_checkpoint_imports_without_quantiser(tmp_path, caplog):
    torch.manual_seed(6)
    source = Wav2Vec2(wav2vec2_tiny(**SMALL)).eval()
    pretraining_only = ("quantizer.", "project_q.", "final_proj.")
    state = {
        "w2v_encoder.w2v_model." + k: v
        for k, v in fairseq_state(source).items()
        if not k.startswith(pretraining_only)
    }
    state["w2v_encoder.proj.weight"] = torch.zeros(5, SMALL["hidden_size"])
    state["w2v_encoder.proj.bias"] = torch.zeros(5)
    w2v_args = {"model": fairseq_model_cfg(source.settings), "task": {"normalize": False}}
    cfg = {"model": {"_name": "wav2vec_ctc", "w2v_path": "/nowhere.pt", "w2v_args": w2v_args}}
    torch.save({"cfg": cfg, "model": state}, tmp_path / "wav2vec_small_960h.pt")

    with caplog.at_level(logging.WARNING, logger="sslgrid.models.importers"):
        model, _ = import_upstream(tmp_path / "wav2vec_small_960h.pt")

    assert "quantizer" in caplog.text and "freshly initialised" in caplog.text
    frames = model.output_lengths(LENGTHS)
    wavs = waveforms()
    assert_states_equal(hidden_states(model), reference_states(source.model.wav2vec2, wavs), frames)


# --------------------------------------------------------------------------- errors


def test_errors_name_the_path_and_what_was_expected(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model.*Hugging Face.*fairseq"):
        import_upstream(missing)

    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty_dir.*config.json"):
        import_upstream(empty)

    hubert = tmp_path / "hubert"
    hubert.mkdir()
    (hubert / "config.json").write_text(json.dumps({"model_type": "hubert"}))
    with pytest.raises(ValueError, match="hubert.*model_type.*'hubert'"):
        import_upstream(hubert)

    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    wav2vec2_tiny(**SMALL).to_hf_config().to_json_file(no_weights / "config.json")
    with pytest.raises(ValueError, match="no_weights.*model.safetensors"):
        import_upstream(no_weights)

    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match="notes.txt.*not a readable torch checkpoint"):
        import_upstream(text)

    other = tmp_path / "other.pt"
    torch.save({"model": {"linear.weight": torch.zeros(2, 2)}, "config": {}}, other)
    with pytest.raises(ValueError, match="other.pt.*not a fairseq wav2vec 2.0 checkpoint"):
        import_upstream(other)
