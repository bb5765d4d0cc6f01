"""Importing off-the-shelf wav2vec 2.0 checkpoints from local paths into :class:`Wav2Vec2`.

:func:`import_upstream` also recognises s3prl's APC / Mockingjay / TERA checkpoints and hands
them to :mod:`sslgrid.models.s3prl_import`. The wav2vec 2.0 formats, both read from disk only
(nothing is ever downloaded):

- a Hugging Face model directory (``config.json`` plus ``model.safetensors`` or
  ``pytorch_model.bin``, possibly sharded), e.g. wav2vec 2.0 English BASE or XLSR-53;
- a fairseq wav2vec 2.0 checkpoint (``.pt``): a pickled dict with the configuration under
  ``cfg["model"]`` (or a legacy ``args`` namespace) and the fairseq-named weights under
  ``model``; fine-tuned fairseq checkpoints (``w2v_encoder.w2v_model.*``) are accepted too.

The quantiser, its projection and the context projection (``project_q`` / ``project_hid``) and
the mask embedding are kept when the checkpoint has them, so pre-training can continue. A
checkpoint without them (``Wav2Vec2Model`` / ``Wav2Vec2ForCTC`` / fine-tuned fairseq) still
imports, with fresh ones and a warning: such a model is for fine-tuning or frozen features.
Task heads (CTC ``lm_head``, fairseq ``w2v_encoder.proj``) are dropped.

fairseq checkpoints are pickles that may reference fairseq classes (meters, enums): they are
unpickled with stand-ins for classes that are not installed, which runs the pickle's code, so
import only files you trust.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import pickle
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import Wav2Vec2Config

from sslgrid.features.fbank import FbankConfig
from sslgrid.models.s3prl_import import import_s3prl_checkpoint, s3prl_format
from sslgrid.models.upstream import Upstream
from sslgrid.models.wav2vec2 import Wav2Vec2, Wav2Vec2Settings

log = logging.getLogger(__name__)

# Parameters only pre-training needs; a checkpoint may lack them, see the module docstring.
PRETRAINING_ONLY = ("quantizer.", "project_q.", "project_hid.", "wav2vec2.masked_spec_embed")

HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# Heads of fine-tuned Hugging Face checkpoints that have no place in an upstream.
HF_TASK_HEADS = ("lm_head.", "projector.", "classifier.")
FAIRSEQ_FINETUNED_PREFIX = "w2v_encoder.w2v_model."
FAIRSEQ_TASK_HEADS = ("w2v_encoder.proj.",)

_W = r"(weight|bias)"
_LAYER = r"encoder\.layers\.(\d+)\."
# fairseq name (full match) -> name in Wav2Vec2ForPreTraining.
FAIRSEQ_TO_HF = (
    (
        rf"feature_extractor\.conv_layers\.(\d+)\.0\.{_W}",
        r"feature_extractor.conv_layers.\1.conv.\2",
    ),
    # extractor_mode "default": a group norm after the first convolution only.
    (
        rf"feature_extractor\.conv_layers\.0\.2\.{_W}",
        r"feature_extractor.conv_layers.0.layer_norm.\1",
    ),
    # extractor_mode "layer_norm": Sequential(TransposeLast, LayerNorm, TransposeLast) per block.
    (
        rf"feature_extractor\.conv_layers\.(\d+)\.2\.1\.{_W}",
        r"feature_extractor.conv_layers.\1.layer_norm.\2",
    ),
    (rf"layer_norm\.{_W}", r"feature_projection.layer_norm.\1"),
    (rf"post_extract_proj\.{_W}", r"feature_projection.projection.\1"),
    (r"mask_emb", r"masked_spec_embed"),
    (r"encoder\.pos_conv\.0\.bias", r"encoder.pos_conv_embed.conv.bias"),
    (
        r"encoder\.pos_conv\.0\.(weight_g|parametrizations\.weight\.original0)",
        r"encoder.pos_conv_embed.conv.parametrizations.weight.original0",
    ),
    (
        r"encoder\.pos_conv\.0\.(weight_v|parametrizations\.weight\.original1)",
        r"encoder.pos_conv_embed.conv.parametrizations.weight.original1",
    ),
    (rf"encoder\.layer_norm\.{_W}", r"encoder.layer_norm.\1"),
    (rf"{_LAYER}self_attn\.(k|v|q|out)_proj\.{_W}", r"encoder.layers.\1.attention.\2_proj.\3"),
    (rf"{_LAYER}self_attn_layer_norm\.{_W}", r"encoder.layers.\1.layer_norm.\2"),
    (rf"{_LAYER}fc1\.{_W}", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (rf"{_LAYER}fc2\.{_W}", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (rf"{_LAYER}final_layer_norm\.{_W}", r"encoder.layers.\1.final_layer_norm.\2"),
)
# These live on Wav2Vec2ForPreTraining itself, not on its ``wav2vec2`` submodule.
FAIRSEQ_HEAD_TO_HF = (
    (r"quantizer\.vars", r"quantizer.codevectors"),
    (rf"quantizer\.weight_proj\.{_W}", r"quantizer.weight_proj.\1"),
    (rf"project_q\.{_W}", r"project_q.\1"),
    (rf"final_proj\.{_W}", r"project_hid.\1"),
)
# Defaults of fairseq's Wav2Vec2Config for the fields read here (a checkpoint may omit them).
FAIRSEQ_DEFAULTS: dict[str, Any] = {
    "extractor_mode": "default",
    "conv_feature_layers": "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2",
    "conv_bias": False,
    "encoder_layers": 12,
    "encoder_embed_dim": 768,
    "encoder_ffn_embed_dim": 3072,
    "encoder_attention_heads": 12,
    "activation_fn": "gelu",
    "layer_norm_first": False,
    "conv_pos": 128,
    "conv_pos_groups": 16,
    "pos_conv_depth": 1,
    "layer_type": "transformer",
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "encoder_layerdrop": 0.0,
    "dropout_input": 0.0,
    "dropout_features": 0.0,
    "final_dim": 0,
    "latent_dim": 0,
    "latent_vars": 320,
    "latent_groups": 2,
    "latent_temp": (2.0, 0.5, 0.999995),
    "quantize_targets": False,
    "quantize_input": False,
    "target_glu": False,
    "logit_temp": 0.1,
    "mask_prob": 0.65,
    "mask_length": 10,
    "num_negatives": 100,
    "feature_grad_mult": 1.0,
}


def import_upstream(
    path: str | Path,
    *,
    fbank: FbankConfig | None = None,
    family: str | None = None,
    **overrides: Any,
) -> tuple[Upstream, dict]:
    """Import an off-the-shelf checkpoint, detecting its format.

    A directory with ``config.json`` is read as Hugging Face wav2vec 2.0; a file as an s3prl
    APC / Mockingjay / TERA checkpoint when it has that layout, else as fairseq wav2vec 2.0.
    ``fbank`` (the grid's ``features``) is what an s3prl checkpoint's feature settings must
    match; ``family`` (``imported.<name>.model``) must fit the checkpoint's architecture.
    ``overrides`` replace settings (e.g. ``layerdrop`` or ``mask_time_prob`` for continued
    pre-training). Returns the model and its settings as JSON-compatible constructor arguments
    of its architecture dataclass (:class:`Wav2Vec2Settings`, or ``APCConfig`` /
    ``MockingjayConfig``), so ``upstream_spec(family, settings, fbank)`` rebuilds it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file or directory; expected a Hugging Face wav2vec 2.0 directory "
            "(config.json + model.safetensors or pytorch_model.bin), a fairseq .pt checkpoint "
            "or an s3prl APC / Mockingjay / TERA checkpoint"
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(
                f"{path}: directory without config.json; expected a Hugging Face wav2vec 2.0 "
                f"directory with config.json and one of {list(HF_WEIGHT_FILES)}"
            )
        _expect_wav2vec2(family, path)
        return import_huggingface(path, **overrides)
    checkpoint = load_pickled_checkpoint(path)
    if s3prl_format(checkpoint) is not None:
        return import_s3prl_checkpoint(checkpoint, path, fbank=fbank, family=family, **overrides)
    _expect_wav2vec2(family, path)
    return _import_fairseq_checkpoint(checkpoint, path, **overrides)


def _expect_wav2vec2(family: str | None, path: Path) -> None:
    if family is not None and family != "wav2vec2":
        raise ValueError(
            f"{path}: the configuration declares model {family!r}, but this is not an s3prl "
            "APC / Mockingjay / TERA checkpoint; Hugging Face and fairseq checkpoints are "
            "imported as model: wav2vec2"
        )


# --------------------------------------------------------------------------- Hugging Face


def import_huggingface(directory: str | Path, **overrides: Any) -> tuple[Wav2Vec2, dict]:
    """Import a local Hugging Face wav2vec 2.0 directory.

    Architecture and dropouts come from ``config.json``. The pre-training objective (masking,
    negatives, temperatures, loss weight) is the paper's, because ``config.json``'s
    ``mask_time_prob`` is a fine-tuning SpecAugment setting (0.05 in Facebook's releases).
    The directory does not say how far the Gumbel schedule got, so it starts again at update 0;
    for continued pre-training pass e.g. ``gumbel_temperature_max=0.5`` (where the paper's
    schedule ends) to keep the trained quantiser from being reheated.
    Waveform normalisation follows ``preprocessor_config.json``'s ``do_normalize`` when present,
    else is on for layer-norm feature encoders (XLSR / LARGE).
    """
    directory = Path(directory)
    config = _read_json(directory / "config.json")
    settings = Wav2Vec2Settings(**{**_settings_from_hf_config(config, directory), **overrides})
    state = _hf_state_to_pretraining_names(_read_hf_weights(directory), directory)
    model = Wav2Vec2(settings)
    _load_weights(model, state, directory)
    return model, settings.to_dict()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def _settings_from_hf_config(config: dict, directory: Path) -> dict[str, Any]:
    model_type = config.get("model_type")
    if model_type != "wav2vec2":
        raise ValueError(
            f"{directory}/config.json: model_type is {model_type!r}; only 'wav2vec2' is supported"
        )
    defaults = Wav2Vec2Config()

    def get(key: str) -> Any:
        return config.get(key, getattr(defaults, key))

    unsupported = {
        "add_adapter": (get("add_adapter"), False),
        "adapter_attn_dim": (get("adapter_attn_dim"), None),
        "hidden_act": (get("hidden_act"), "gelu"),
        "feat_extract_activation": (get("feat_extract_activation"), "gelu"),
    }
    for key, (value, expected) in unsupported.items():
        if value != expected:
            raise ValueError(
                f"{directory}/config.json: {key}={value!r} is not supported (expected {expected!r})"
            )
    preprocessor = directory / "preprocessor_config.json"
    if preprocessor.is_file():
        normalize = bool(_read_json(preprocessor).get("do_normalize", False))
    else:
        normalize = get("feat_extract_norm") == "layer"
    return {
        "conv_dim": list(get("conv_dim")),
        "conv_kernel": list(get("conv_kernel")),
        "conv_stride": list(get("conv_stride")),
        "conv_bias": bool(get("conv_bias")),
        "feat_extract_norm": get("feat_extract_norm"),
        "hidden_size": get("hidden_size"),
        "num_layers": get("num_hidden_layers"),
        "num_heads": get("num_attention_heads"),
        "intermediate_size": get("intermediate_size"),
        "num_conv_pos_embeddings": get("num_conv_pos_embeddings"),
        "num_conv_pos_embedding_groups": get("num_conv_pos_embedding_groups"),
        "do_stable_layer_norm": bool(get("do_stable_layer_norm")),
        "hidden_dropout": float(get("hidden_dropout")),
        "attention_dropout": float(get("attention_dropout")),
        "activation_dropout": float(get("activation_dropout")),
        "feat_proj_dropout": float(get("feat_proj_dropout")),
        "feat_quantizer_dropout": float(get("feat_quantizer_dropout")),
        "layerdrop": float(get("layerdrop")),
        "num_codevector_groups": get("num_codevector_groups"),
        "num_codevectors_per_group": get("num_codevectors_per_group"),
        "codevector_dim": get("codevector_dim"),
        "proj_codevector_dim": get("proj_codevector_dim"),
        "normalize_waveform": normalize,
    }


def _read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    if (directory / "model.safetensors").is_file():
        return _read_weight_file(directory / "model.safetensors")
    if (directory / "pytorch_model.bin").is_file():
        return _read_weight_file(directory / "pytorch_model.bin")
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.is_file():
            shards = sorted(set(_read_json(index)["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(_read_weight_file(directory / shard))
            return state
    raise ValueError(f"{directory}: no weights; expected one of {list(HF_WEIGHT_FILES)}")


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


def _hf_state_to_pretraining_names(
    state: dict[str, torch.Tensor], source: Path
) -> dict[str, torch.Tensor]:
    """Keys as in Wav2Vec2ForPreTraining, whichever head class the checkpoint was saved from."""
    renamed = {}
    dropped = []
    for key, value in state.items():
        if key.startswith(HF_TASK_HEADS):
            dropped.append(key)
            continue
        if not key.startswith(("wav2vec2.", "quantizer.", "project_q.", "project_hid.")):
            key = "wav2vec2." + key  # saved from a bare Wav2Vec2Model
        renamed[_new_weight_norm_name(key)] = value
    if dropped:
        log.info("%s: dropped task-head weights %s", source, sorted(dropped))
    return renamed


def _new_weight_norm_name(key: str) -> str:
    # Checkpoints written before torch's parametrized weight norm call its halves g and v.
    if key.endswith("pos_conv_embed.conv.weight_g"):
        return key.removesuffix("weight_g") + "parametrizations.weight.original0"
    if key.endswith("pos_conv_embed.conv.weight_v"):
        return key.removesuffix("weight_v") + "parametrizations.weight.original1"
    return key


# --------------------------------------------------------------------------- fairseq


def import_fairseq(path: str | Path, **overrides: Any) -> tuple[Wav2Vec2, dict]:
    """Import a fairseq wav2vec 2.0 checkpoint (pre-trained or fine-tuned).

    Architecture, dropouts, objective and Gumbel schedule come from the checkpoint's model
    configuration, the diversity weight from ``criterion.loss_weights[0]``, waveform
    normalisation from ``task.normalize`` and the update count of the Gumbel schedule from the
    last ``optimizer_history`` entry.
    """
    path = Path(path)
    return _import_fairseq_checkpoint(load_pickled_checkpoint(path), path, **overrides)


def _import_fairseq_checkpoint(
    checkpoint: Any, path: Path, **overrides: Any
) -> tuple[Wav2Vec2, dict]:
    state = _fairseq_state(checkpoint, path)
    model_cfg, task_cfg, criterion_cfg = _fairseq_configs(checkpoint, path)
    settings = Wav2Vec2Settings(
        **{**_settings_from_fairseq(model_cfg, task_cfg, criterion_cfg, path), **overrides}
    )
    model = Wav2Vec2(settings)
    _load_weights(model, _fairseq_state_to_hf_names(state, path), path)
    history = checkpoint.get("optimizer_history") or [{}]
    if "quantizer.vars" in state and "num_updates" in history[-1]:
        # Continued pre-training resumes the Gumbel schedule instead of reheating the quantiser.
        model.num_updates.fill_(int(history[-1]["num_updates"]))
    return model, settings.to_dict()


class _Unresolved:
    """Stands in for a pickled object whose class cannot be imported here."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _TolerantUnpickler(pickle.Unpickler):
    # fairseq checkpoints carry training state (meters, enums) of classes we do not install.
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Unresolved,), {"__module__": module})


_tolerant_pickle = types.SimpleNamespace(
    __name__="sslgrid_tolerant_pickle",
    Unpickler=_TolerantUnpickler,
    load=lambda file, **kwargs: _TolerantUnpickler(file, **kwargs).load(),
)


def load_pickled_checkpoint(path: str | Path) -> Any:
    """``torch.load`` a trusted checkpoint, tolerating classes of packages not installed."""
    try:
        return torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=_tolerant_pickle
        )
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise ValueError(
            f"{path}: not a readable torch checkpoint ({e}); expected a fairseq wav2vec 2.0 "
            "checkpoint, an s3prl APC / Mockingjay / TERA checkpoint or a Hugging Face directory"
        ) from e


def _fairseq_state(checkpoint: Any, path: Path) -> Mapping[str, torch.Tensor]:
    is_dict = isinstance(checkpoint, Mapping)
    state = checkpoint.get("model") if is_dict else None
    keys = (
        {k.removeprefix(FAIRSEQ_FINETUNED_PREFIX) for k in state}
        if isinstance(state, Mapping)
        else set()
    )
    has_config = is_dict and (
        checkpoint.get("cfg") is not None or checkpoint.get("args") is not None
    )
    if not (has_config and {"encoder.pos_conv.0.bias", "post_extract_proj.bias"} <= keys):
        raise ValueError(
            f"{path}: not a fairseq wav2vec 2.0 checkpoint; expected a dict with 'cfg' (or "
            "'args') and 'model' holding fairseq weights such as post_extract_proj.weight and "
            "encoder.pos_conv.0.weight_g"
        )
    return state


def _as_dict(value: Any, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, argparse.Namespace):
        return vars(value)
    if isinstance(value, Mapping):
        return dict(value)
    try:
        from omegaconf import DictConfig, OmegaConf
    except ImportError:
        DictConfig = None
    if DictConfig is not None and isinstance(value, DictConfig):
        return OmegaConf.to_container(value, resolve=False)
    raise ValueError(f"{path}: cannot read a {type(value).__name__} as a configuration")


def _fairseq_configs(checkpoint: Mapping, path: Path) -> tuple[dict, dict, dict]:
    """(model, task, criterion) configurations of the pre-training run."""
    if checkpoint.get("cfg") is not None:
        cfg = _as_dict(checkpoint["cfg"], path)
        model, task = _as_dict(cfg.get("model"), path), _as_dict(cfg.get("task"), path)
        criterion = _as_dict(cfg.get("criterion"), path)
    else:
        # Before fairseq moved to hydra, one argparse namespace held every option.
        model = task = criterion = _as_dict(checkpoint["args"], path)
    if "w2v_args" in model or "w2v_path" in model:
        # Fine-tuned: the pre-training configuration is nested inside.
        if model.get("w2v_args") is None:
            raise ValueError(
                f"{path}: fine-tuned fairseq checkpoint without its pre-training configuration "
                f"(w2v_args); import the pre-trained checkpoint {model.get('w2v_path')!r} instead"
            )
        inner = _as_dict(model["w2v_args"], path)
        if "model" in inner:
            model, task = _as_dict(inner["model"], path), _as_dict(inner.get("task"), path)
        else:
            model = task = inner
        criterion = {}
    name = model.get("_name") or model.get("arch")
    if name is not None and not str(name).startswith("wav2vec2"):
        raise ValueError(f"{path}: a fairseq {name!r} model; only wav2vec 2.0 is supported")
    return model, task, criterion


def _literal(text: str) -> Any:
    """Evaluate fairseq's layer / tuple strings: literals joined by ``+`` and ``*`` only."""

    def evaluate(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return evaluate(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            return [evaluate(e) for e in node.elts]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -evaluate(node.operand)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = evaluate(node.left), evaluate(node.right)
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise ValueError(f"unsupported expression {ast.dump(node)}")

    return evaluate(ast.parse(text, mode="eval"))


def _settings_from_fairseq(model: dict, task: dict, criterion: dict, path: Path) -> dict:
    def get(key: str) -> Any:
        value = model.get(key)
        return FAIRSEQ_DEFAULTS[key] if value is None else value

    required = {
        "quantize_targets": True,
        "quantize_input": False,
        "target_glu": False,
        "pos_conv_depth": 1,
        "layer_type": "transformer",
        "activation_fn": "gelu",
    }
    for key, expected in required.items():
        if get(key) != expected:
            raise ValueError(
                f"{path}: {key}={get(key)!r} is not supported by the transformers model "
                f"(expected {expected!r})"
            )
    for key in ("negatives_from_everywhere", "cross_sample_negatives", "codebook_negatives"):
        if model.get(key):
            log.warning(
                "%s: %s=%r is not reproduced in continued pre-training", path, key, model[key]
            )

    layers = get("conv_feature_layers")
    layers = _literal(layers) if isinstance(layers, str) else layers
    latent_temp = get("latent_temp")
    latent_temp = _literal(latent_temp) if isinstance(latent_temp, str) else latent_temp
    final_dim = get("final_dim") or get("encoder_embed_dim")
    loss_weights = criterion.get("loss_weights")
    loss_weights = _literal(loss_weights) if isinstance(loss_weights, str) else loss_weights
    mode = get("extractor_mode")
    if mode not in ("default", "layer_norm"):
        raise ValueError(f"{path}: extractor_mode={mode!r} is not supported")
    return {
        "conv_dim": [int(d) for d, _, _ in layers],
        "conv_kernel": [int(k) for _, k, _ in layers],
        "conv_stride": [int(s) for _, _, s in layers],
        "conv_bias": bool(get("conv_bias")),
        "feat_extract_norm": "group" if mode == "default" else "layer",
        "hidden_size": int(get("encoder_embed_dim")),
        "num_layers": int(get("encoder_layers")),
        "num_heads": int(get("encoder_attention_heads")),
        "intermediate_size": int(get("encoder_ffn_embed_dim")),
        "num_conv_pos_embeddings": int(get("conv_pos")),
        "num_conv_pos_embedding_groups": int(get("conv_pos_groups")),
        "do_stable_layer_norm": bool(get("layer_norm_first")),
        "hidden_dropout": float(get("dropout")),
        "attention_dropout": float(get("attention_dropout")),
        "activation_dropout": float(get("activation_dropout")),
        "feat_proj_dropout": float(get("dropout_input")),
        "feat_quantizer_dropout": float(get("dropout_features")),
        "layerdrop": float(get("encoder_layerdrop")),
        "num_codevector_groups": int(get("latent_groups")),
        "num_codevectors_per_group": int(get("latent_vars")),
        "codevector_dim": int(get("latent_dim") or final_dim),
        "proj_codevector_dim": int(final_dim),
        "mask_time_prob": float(get("mask_prob")),
        "mask_time_length": int(get("mask_length")),
        "num_negatives": int(get("num_negatives")),
        "contrastive_logits_temperature": float(get("logit_temp")),
        "diversity_loss_weight": float(loss_weights[0]) if loss_weights else 0.1,
        "gumbel_temperature_max": float(latent_temp[0]),
        "gumbel_temperature_min": float(latent_temp[1]),
        "gumbel_temperature_decay": float(latent_temp[2]),
        "feature_grad_mult": float(get("feature_grad_mult")),
        "normalize_waveform": bool(task.get("normalize", False)),
    }


def _fairseq_state_to_hf_names(
    state: Mapping[str, torch.Tensor], path: Path
) -> dict[str, torch.Tensor]:
    renamed: dict[str, torch.Tensor] = {}
    unknown, dropped = [], []
    for key, value in state.items():
        if key.startswith(FAIRSEQ_TASK_HEADS):
            dropped.append(key)
            continue
        name = key.removeprefix(FAIRSEQ_FINETUNED_PREFIX)
        target = _rename(name, FAIRSEQ_TO_HF)
        if target is not None:
            target = "wav2vec2." + target
        else:
            target = _rename(name, FAIRSEQ_HEAD_TO_HF)
        if target is None:
            unknown.append(key)
        else:
            renamed[target] = value
    if unknown:
        raise ValueError(f"{path}: fairseq weights with no wav2vec 2.0 counterpart: {unknown}")
    if dropped:
        log.info("%s: dropped task-head weights %s", path, dropped)
    return renamed


def _rename(name: str, table: tuple[tuple[str, str], ...]) -> str | None:
    for pattern, replacement in table:
        match = re.fullmatch(pattern, name)
        if match:
            return match.expand(replacement)
    return None


# --------------------------------------------------------------------------- loading


def _load_weights(model: Wav2Vec2, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load into ``model.model`` strictly, except that pre-training-only weights may be absent."""
    own = model.model.state_dict()
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise ValueError(
            f"{source}: weights that this wav2vec 2.0 model does not have: {unexpected}"
        )
    missing = sorted(set(own) - set(state))
    fresh = [k for k in missing if k.startswith(PRETRAINING_ONLY)]
    absent = [k for k in missing if not k.startswith(PRETRAINING_ONLY)]
    if absent:
        raise ValueError(f"{source}: checkpoint lacks weights {absent}")
    try:
        model.model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise ValueError(f"{source}: weights do not fit the configured architecture: {e}") from e
    if fresh:
        heads = [p.rstrip(".") for p in PRETRAINING_ONLY if any(k.startswith(p) for k in fresh)]
        log.warning(
            "%s has no pre-training head: %s freshly initialised (quantiser untrained). The "
            "model is fit for fine-tuning or frozen features, not for continued pre-training.",
            source,
            ", ".join(heads),
        )
