"""Importing s3prl upstream checkpoints of APC, Mockingjay and TERA from local files.

s3prl saves each upstream as one ``torch.save``'d dict; two layouts are read here, from disk
only (nothing is ever downloaded):

- **APC** (e.g. ``apc_360hr.ckpt``): the run's configuration under ``config`` (s3prl's own
  pre-training runner writes ``Upstream_Config``) with the architecture in ``model.paras``
  (``hidden_size``, ``num_layers``, ``dropout``, ``residual``, optionally ``vq``), the fbank
  settings in ``data.audio`` and the prediction shift in ``task.n_future``; the weights under
  ``model``: one single-layer GRU per layer (``rnn_layers.<i>.weight_ih_l0`` ...) and the
  ``postnet``.
- **Mockingjay / TERA** (e.g. ``mockingjay_logMelBase_T_AdamW_b32_200k_100hr`` or
  ``tera_logMelBase_T_F_M_AdamW_b32_200k_100hr``): the upstream configuration under
  ``Upstream_Config`` (legacy checkpoints: ``Config``) with ``transformer`` (BERT-style
  settings), ``task`` (masking, ``sequence_length``) and ``audio`` (features); the encoder's
  weights under ``Transformer`` in BERT names and the reconstruction head under ``SpecHead``.

Both become our own :class:`APC` / :class:`Mockingjay`, so they answer the upstream interface
and can continue their pre-training. Differences that weights cannot express are refused with
the file, the key and what was expected; the ones that opt-in settings of our models express
are switched on: no residual connections (APC), LayerNorm epsilon, per-utterance CMVN and
s3prl's cutting of inputs longer than the pre-training sequence length into equal segments
(Mockingjay / TERA).

Like our Mockingjay, an imported Transformer exposes its layers' outputs, not the input
representation that s3prl lists as an extra first hidden state.

**Input features.** s3prl computes its own features from the waveform: Kaldi-style fbank
(torchaudio) for APC and some Transformers, or an STFT log-mel for the ``logMel`` Transformers;
both normalised per utterance. Our upstreams read our cached fbank. The feature dimension,
window length and frame shift must equal ``features`` in the configuration, deltas and
features other than log-mel filterbanks are refused, and so are checkpoints trained without
per-utterance CMVN (our global CMVN cannot reproduce un-normalised features). What remains
(window shape, mel range, pre-emphasis, edge frames) is approximated: per-utterance CMVN
removes gain and fixed per-bin offsets, but the frames are close to, not the same as, the
ones the checkpoint was trained on. The model's ``imported_from`` attribute records the
checkpoint's feature settings and these differences, and the import logs them.

s3prl checkpoints may pickle optimizer and scheduler objects of s3prl's own classes; they are
read with the same tolerant unpickler as fairseq checkpoints, which runs the pickle's code, so
import only files you trust.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sslgrid.features.fbank import SAMPLE_RATE, FbankConfig
from sslgrid.models.apc import APC, APCConfig
from sslgrid.models.mockingjay import Mockingjay, MockingjayConfig
from sslgrid.models.upstream import FbankUpstream

log = logging.getLogger(__name__)

APC_FORMAT = "s3prl-apc"
TRANSFORMER_FORMAT = "s3prl-transformer"
# Grid families (``imported.<name>.model``) each format can be.
FAMILIES = {APC_FORMAT: ("apc",), TRANSFORMER_FORMAT: ("mockingjay", "tera")}

APC_PARAS_REQUIRED = ("hidden_size", "num_layers", "dropout", "residual")
APC_PARAS_KNOWN = (*APC_PARAS_REQUIRED, "input_size", "vq")
GRU_WEIGHTS = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")

TRANSFORMER_REQUIRED = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
)
TRANSFORMER_KNOWN = (
    *TRANSFORMER_REQUIRED,
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "initializer_range",  # initialisation only
    "layer_norm_eps",
    "share_layer",
    "pre_layer_norm",
    "input_dim",  # for pre-extracted features; the weights say the input width
    "downsample_rate",
)

# torchaudio.compliance.kaldi.fbank's options and defaults (s3prl passes them through).
KALDI_FBANK_DEFAULTS: dict[str, Any] = {
    "blackman_coeff": 0.42,
    "dither": 0.0,
    "energy_floor": 1.0,
    "frame_length": 25.0,
    "frame_shift": 10.0,
    "high_freq": 0.0,
    "htk_compat": False,
    "low_freq": 20.0,
    "min_duration": 0.0,
    "num_mel_bins": 23,
    "preemphasis_coefficient": 0.97,
    "raw_energy": True,
    "remove_dc_offset": True,
    "round_to_power_of_two": True,
    "snip_edges": True,
    "subtract_mean": False,
    "use_energy": False,
    "use_log_fbank": True,
    "use_power": True,
    "vtln_high": -500.0,
    "vtln_low": 100.0,
    "vtln_warp": 1.0,
    "window_type": "povey",
}
# Options that change what the features are; only their defaults are accepted.
KALDI_FBANK_REFUSED = ("use_energy", "use_log_fbank", "use_power", "vtln_warp")
# What our frontend (lhotse's Wav2LogFilterBank as LogMelFbank builds it) does for the
# options that shape the filterbank; any other value is an approximation.
OUR_FBANK = {
    "window_type": "povey",
    "preemphasis_coefficient": 0.97,
    "remove_dc_offset": True,
    "round_to_power_of_two": True,
    "low_freq": 20.0,
    "high_freq": -400.0,
    "snip_edges": False,
    "dither": 0.0,
}


@dataclass
class FeatureSettings:
    """What a checkpoint's features are, as far as our fbank frontend can follow them."""

    num_mel_bins: int
    frame_length_ms: float
    frame_shift_ms: float
    source: dict[str, Any]  # the checkpoint's own feature settings, as stored
    approximations: list[str] = field(default_factory=list)

    def fbank(self) -> FbankConfig:
        return FbankConfig(self.num_mel_bins, self.frame_length_ms, self.frame_shift_ms)


def s3prl_format(checkpoint: Any) -> str | None:
    """``s3prl-apc``, ``s3prl-transformer`` or None for a loaded checkpoint."""
    if not isinstance(checkpoint, Mapping):
        return None
    if "Transformer" in checkpoint:
        return TRANSFORMER_FORMAT
    state = checkpoint.get("model")
    has_config = isinstance(checkpoint.get("config"), Mapping) or isinstance(
        checkpoint.get("Upstream_Config"), Mapping
    )
    if (
        has_config
        and isinstance(state, Mapping)
        and any(str(k).startswith("rnn_layers.") for k in state)
    ):
        return APC_FORMAT
    return None


def import_s3prl(
    path: str | Path, *, fbank: FbankConfig | None = None, family: str | None = None, **overrides
) -> tuple[FbankUpstream, dict]:
    """Import an s3prl APC, Mockingjay or TERA file; see :func:`import_s3prl_checkpoint`."""
    from sslgrid.models.importers import load_pickled_checkpoint

    path = Path(path)
    checkpoint = load_pickled_checkpoint(path)
    if s3prl_format(checkpoint) is None:
        raise ValueError(
            f"{path}: not an s3prl upstream checkpoint; expected a dict with 'Transformer' "
            "(Mockingjay / TERA) or with 'config' and 'model' holding rnn_layers.* (APC)"
        )
    return import_s3prl_checkpoint(checkpoint, path, fbank=fbank, family=family, **overrides)


def import_s3prl_checkpoint(
    checkpoint: Mapping,
    path: Path,
    *,
    fbank: FbankConfig | None = None,
    family: str | None = None,
    **overrides: Any,
) -> tuple[FbankUpstream, dict]:
    """Our upstream from a loaded s3prl checkpoint, and its settings as constructor arguments.

    ``fbank`` is the grid's ``features`` configuration: the checkpoint's feature settings must
    agree with it (without it, the model is built with the checkpoint's own). ``family`` is the
    ``imported.<name>.model`` the configuration declares; it must fit the checkpoint.
    ``overrides`` replace settings of :class:`APCConfig` / :class:`MockingjayConfig`. Returns
    the model and ``config.to_dict()``, so ``APC(APCConfig(**settings), fbank)`` (or
    ``Mockingjay``) rebuilds it.
    """
    path = Path(path)
    kind = s3prl_format(checkpoint)
    if kind is None:
        raise ValueError(f"{path}: not an s3prl APC, Mockingjay or TERA checkpoint")
    if family is not None and family not in FAMILIES[kind]:
        raise ValueError(
            f"{path}: an {kind} checkpoint, but the configuration declares model {family!r}; "
            f"expected model: {' or '.join(FAMILIES[kind])}"
        )
    if kind == APC_FORMAT:
        return _import_apc(checkpoint, path, fbank, overrides)
    return _import_transformer(checkpoint, path, fbank, overrides)


# --------------------------------------------------------------------------- reading helpers


def _mapping(value: Any, path: Path, key: str) -> Mapping:
    if not isinstance(value, Mapping):
        found = "nothing" if value is None else f"a {type(value).__name__}"
        raise ValueError(f"{path}: {key} is {found}; expected a mapping")
    return value


def _require(section: Mapping, keys: tuple[str, ...], path: Path, where: str) -> None:
    missing = [k for k in keys if k not in section]
    if missing:
        raise ValueError(f"{path}: {where} lacks {', '.join(missing)}; expected keys {list(keys)}")


def _refuse_unknown(section: Mapping, known: tuple[str, ...], path: Path, where: str) -> None:
    unknown = sorted(str(k) for k in section if k not in known)
    if unknown:
        raise ValueError(
            f"{path}: unknown architecture option(s) {where}.{{{', '.join(unknown)}}}; "
            f"known options: {sorted(known)}"
        )


def _check_features(features: FeatureSettings, fbank: FbankConfig | None, path: Path) -> None:
    if fbank is None:
        return
    for what, name in (
        ("feature dimension", "num_mel_bins"),
        ("window length (ms)", "frame_length_ms"),
        ("frame shift (ms)", "frame_shift_ms"),
    ):
        theirs, ours = getattr(features, name), getattr(fbank, name)
        if not math.isclose(float(theirs), float(ours)):
            raise ValueError(
                f"{path}: the checkpoint's {what} is {theirs} but features.{name} is {ours}; "
                f"the model would be fed frames it was not trained on. Set features.{name}: "
                f"{theirs} or import another checkpoint"
            )


def _kaldi_fbank_options(
    options: Mapping, path: Path, where: str, fixed: Mapping[str, Any] | None = None
) -> tuple[float, float, list[str]]:
    """Frame length and shift of torchaudio Kaldi fbank ``options`` and what ours approximates.

    ``fixed``: options the s3prl extractor sets itself, whatever the configuration says.
    """
    unknown = sorted(str(k) for k in options if k not in KALDI_FBANK_DEFAULTS)
    if unknown:
        raise ValueError(
            f"{path}: unknown fbank option(s) {where}.{{{', '.join(unknown)}}}; known options: "
            f"{sorted(KALDI_FBANK_DEFAULTS)}"
        )
    settings = {**KALDI_FBANK_DEFAULTS, **options, **(fixed or {})}
    for key in KALDI_FBANK_REFUSED:
        if settings[key] != KALDI_FBANK_DEFAULTS[key]:
            raise ValueError(
                f"{path}: {where}.{key}={settings[key]!r} is not supported: our frontend "
                f"computes log power mel filterbanks only (expected {KALDI_FBANK_DEFAULTS[key]!r})"
            )

    def upper_edge(high_freq: float) -> float:  # Kaldi: <= 0 counts from the Nyquist frequency
        return high_freq if high_freq > 0 else SAMPLE_RATE / 2 + high_freq

    approximations = []
    for key, ours in OUR_FBANK.items():
        theirs = settings[key]
        same = (
            math.isclose(upper_edge(theirs), upper_edge(ours))
            if key == "high_freq"
            else theirs == ours
        )
        if not same:
            approximations.append(f"{key}: {theirs!r} (ours {ours!r})")
    return float(settings["frame_length"]), float(settings["frame_shift"]), approximations


# --------------------------------------------------------------------------- APC


def _import_apc(
    checkpoint: Mapping, path: Path, fbank: FbankConfig | None, overrides: dict
) -> tuple[APC, dict]:
    key = "config" if isinstance(checkpoint.get("config"), Mapping) else "Upstream_Config"
    config = _mapping(checkpoint.get(key), path, key)
    _require(config, ("model", "data"), path, key)
    paras = _mapping(
        _mapping(config["model"], path, f"{key}.model").get("paras"), path, f"{key}.model.paras"
    )
    _require(paras, APC_PARAS_REQUIRED, path, f"{key}.model.paras")
    _refuse_unknown(paras, APC_PARAS_KNOWN, path, f"{key}.model.paras")
    if paras.get("vq") is not None:
        raise ValueError(
            f"{path}: {key}.model.paras.vq is set: VQ-APC (vector-quantised layers) is not "
            "supported; expected plain APC (vq absent or null)"
        )
    audio = _mapping(
        _mapping(config["data"], path, f"{key}.data").get("audio"), path, f"{key}.data.audio"
    )
    features = _apc_features(audio, path, f"{key}.data.audio")
    if "input_size" in paras and int(paras["input_size"]) != features.num_mel_bins:
        raise ValueError(
            f"{path}: {key}.model.paras.input_size={paras['input_size']} differs from "
            f"{key}.data.audio.feat_dim={features.num_mel_bins}"
        )
    _check_features(features, fbank, path)

    task = config.get("task") if isinstance(config.get("task"), Mapping) else {}
    settings: dict[str, Any] = {
        "num_layers": int(paras["num_layers"]),
        "hidden_size": int(paras["hidden_size"]),
        "dropout": float(paras["dropout"]),
        "residual": bool(paras["residual"]),
        "utterance_cmvn": True,
    }
    if "n_future" in task:
        settings["prediction_shift"] = int(task["n_future"])
    else:
        log.info(
            "%s: no %s.task.n_future; continued pre-training predicts %d frames ahead",
            path,
            key,
            APCConfig.prediction_shift,
        )
    arch = APCConfig(**{**settings, **overrides})
    model = APC(arch, fbank or features.fbank())
    state = _apc_state(_mapping(checkpoint.get("model"), path, "model"), arch, path)
    _load_strict(model, state, path)
    _record(model, path, APC_FORMAT, features)
    return model, arch.to_dict()


def _apc_features(audio: Mapping, path: Path, where: str) -> FeatureSettings:
    _require(audio, ("feat_type", "feat_dim"), path, where)
    if audio["feat_type"] != "fbank":
        raise ValueError(
            f"{path}: {where}.feat_type={audio['feat_type']!r} is not supported; expected 'fbank'"
        )
    if not audio.get("cmvn", True):
        raise ValueError(
            f"{path}: {where}.cmvn is false: the model was trained on un-normalised fbank, "
            "which our globally normalised features cannot reproduce; expected per-utterance "
            "CMVN (cmvn: true, s3prl's default)"
        )
    options = {
        k: v for k, v in audio.items() if k not in ("feat_type", "feat_dim", "cmvn", "decode_wav")
    }
    # s3prl's APC extractor always asks torchaudio for a Hamming window.
    length, shift, approximations = _kaldi_fbank_options(
        options, path, where, fixed={"window_type": "hamming"}
    )
    return FeatureSettings(
        num_mel_bins=int(audio["feat_dim"]),
        frame_length_ms=length,
        frame_shift_ms=shift,
        source={"extractor": "torchaudio kaldi fbank + per-utterance CMVN", **audio},
        approximations=approximations,
    )


def _apc_state(state: Mapping, arch: APCConfig, path: Path) -> dict[str, torch.Tensor]:
    expected = [f"rnn_layers.{i}.{w}" for i in range(arch.num_layers) for w in GRU_WEIGHTS]
    expected += ["postnet.weight", "postnet.bias"]
    missing = [k for k in expected if k not in state]
    if missing:
        raise ValueError(
            f"{path}: model lacks weights {missing}; expected {len(expected)} "
            f"weights of a {arch.num_layers}-layer GRU APC"
        )
    unexpected = sorted(str(k) for k in state if k not in expected)
    if unexpected:
        raise ValueError(
            f"{path}: model has weights that a {arch.num_layers}-layer GRU APC does not: "
            f"{unexpected}"
        )
    first = state["rnn_layers.0.weight_ih_l0"]
    if first.shape[0] != 3 * arch.hidden_size:
        raise ValueError(
            f"{path}: model.rnn_layers.0.weight_ih_l0 has shape {tuple(first.shape)}; expected "
            f"({3 * arch.hidden_size}, input size) for GRU layers of {arch.hidden_size} units "
            "(LSTM layers are not supported)"
        )
    return {k.replace("rnn_layers.", "layers.", 1): v for k, v in state.items()}


# --------------------------------------------------------------------------- Mockingjay / TERA

_W = r"(weight|bias)"
_LAYER = r"encoder\.layer\.(\d+)\."
# s3prl Transformer name (full match) -> our Mockingjay name; query / key / value are fused.
TRANSFORMER_TO_OURS = (
    (rf"input_representations\.spec_transform\.{_W}", r"input_projection.\1"),
    (rf"input_representations\.LayerNorm\.{_W}", r"input_norm.\1"),
    (rf"{_LAYER}attention\.output\.dense\.{_W}", r"layers.\1.attention_output.\2"),
    (rf"{_LAYER}attention\.output\.LayerNorm\.{_W}", r"layers.\1.attention_norm.\2"),
    (rf"{_LAYER}intermediate\.dense\.{_W}", r"layers.\1.feed_forward.0.\2"),
    (rf"{_LAYER}output\.dense\.{_W}", r"layers.\1.feed_forward.2.\2"),
    (rf"{_LAYER}output\.LayerNorm\.{_W}", r"layers.\1.feed_forward_norm.\2"),
)
QKV = rf"{_LAYER}attention\.self\.(query|key|value)\.{_W}"
SPEC_HEAD_TO_OURS = {
    "dense.weight": "prediction_head.0.weight",
    "dense.bias": "prediction_head.0.bias",
    "LayerNorm.weight": "prediction_head.2.weight",
    "LayerNorm.bias": "prediction_head.2.bias",
    "output.weight": "prediction_head.3.weight",
    "output.bias": "prediction_head.3.bias",
}


def _import_transformer(
    checkpoint: Mapping, path: Path, fbank: FbankConfig | None, overrides: dict
) -> tuple[Mockingjay, dict]:
    key, config = _transformer_config(checkpoint, path)
    t = _mapping(config["transformer"], path, f"{key}.transformer")
    where = f"{key}.transformer"
    _require(t, TRANSFORMER_REQUIRED, path, where)
    _refuse_unknown(t, TRANSFORMER_KNOWN, path, where)
    if str(t["hidden_act"]) != "gelu":
        raise ValueError(
            f"{path}: {where}.hidden_act={t['hidden_act']!r} is not supported; expected 'gelu'"
        )
    if t.get("pre_layer_norm", False):
        raise ValueError(
            f"{path}: {where}.pre_layer_norm is true: pre-LN Transformers (with a LayerNorm per "
            "exposed layer) are not supported; expected false (post-LN, BERT style)"
        )
    if int(t.get("downsample_rate", 1)) != 1:
        raise ValueError(
            f"{path}: {where}.downsample_rate={t['downsample_rate']} is not supported; expected "
            "1 (s3prl's upstream feeds every 10 ms frame)"
        )
    hidden_dropout = float(t.get("hidden_dropout_prob", 0.1))
    attention_dropout = float(t.get("attention_probs_dropout_prob", hidden_dropout))
    if attention_dropout != hidden_dropout:
        log.warning(
            "%s: attention dropout %g differs from hidden dropout %g; our model uses %g for both",
            path,
            attention_dropout,
            hidden_dropout,
            hidden_dropout,
        )
    features = _transformer_features(config.get("audio"), path, f"{key}.audio")
    _check_features(features, fbank, path)

    task = config.get("task") if isinstance(config.get("task"), Mapping) else {}
    num_bins = features.num_mel_bins
    settings: dict[str, Any] = {
        "num_layers": int(t["num_hidden_layers"]),
        "hidden_size": int(t["hidden_size"]),
        "num_heads": int(t["num_attention_heads"]),
        "ffn_size": int(t["intermediate_size"]),
        "dropout": hidden_dropout,
        "downsample": 1,
        "mask_proportion": float(task.get("mask_proportion", 0.15)),
        "mask_span": int(task.get("mask_consecutive_max", 7)),
        "freq_mask_max_bins": int(num_bins * float(task.get("mask_frequency", 0.0))),
        "noise_probability": float(task.get("noise_proportion", 0.0)),
        "layer_norm_eps": float(t.get("layer_norm_eps", 1e-12)),
        "utterance_cmvn": True,
        "max_segment_frames": int(task.get("sequence_length", 0)),
    }
    if task.get("mask_consecutive_min", settings["mask_span"]) != settings["mask_span"]:
        log.info(
            "%s: masked spans of %s to %s frames; continued pre-training masks spans of %d",
            path,
            task["mask_consecutive_min"],
            task["mask_consecutive_max"],
            settings["mask_span"],
        )
    try:
        arch = MockingjayConfig(**{**settings, **overrides})
    except ValueError as e:
        raise ValueError(f"{path}: {where} describes an unsupported model: {e}") from e
    model = Mockingjay(arch, fbank or features.fbank())

    state = _transformer_state(
        _mapping(checkpoint["Transformer"], path, "Transformer"),
        arch,
        bool(t.get("share_layer")),
        num_bins,
        path,
    )
    state.update(_spec_head_state(checkpoint.get("SpecHead"), model, path))
    _load_strict(model, state, path, may_lack=("prediction_head.",))
    _record(model, path, TRANSFORMER_FORMAT, features)
    return model, arch.to_dict()


def _transformer_config(checkpoint: Mapping, path: Path) -> tuple[str, Mapping]:
    # Legacy checkpoints keep the upstream configuration under 'Config', newer ones under
    # 'Upstream_Config' (with the runner's configuration under 'Config').
    for key in ("Config", "Upstream_Config"):
        section = checkpoint.get(key)
        if isinstance(section, Mapping) and "transformer" in section:
            return key, section
    raise ValueError(
        f"{path}: no Transformer configuration; expected 'Upstream_Config' (or legacy "
        "'Config') with a 'transformer' section"
    )


def _transformer_features(audio: Any, path: Path, where: str) -> FeatureSettings:
    if audio is None:
        raise ValueError(
            f"{path}: {where} is missing: the model was trained on pre-extracted features that "
            "the checkpoint does not describe; expected s3prl's on-the-fly feature settings"
        )
    audio = _mapping(audio, path, where)
    if "kaldi" in audio:
        return _transformer_kaldi_features(audio, path, where)
    return _transformer_log_mel_features(audio, path, where)


def _transformer_kaldi_features(audio: Mapping, path: Path, where: str) -> FeatureSettings:
    kaldi = _mapping(audio["kaldi"], path, f"{where}.kaldi")
    feat_type = kaldi.get("feat_type", "fbank")
    if feat_type != "fbank":
        raise ValueError(
            f"{path}: {where}.kaldi.feat_type={feat_type!r} is not supported; expected 'fbank'"
        )
    options = _mapping(kaldi.get("fbank", {}), path, f"{where}.kaldi.fbank")
    length, shift, approximations = _kaldi_fbank_options(options, path, f"{where}.kaldi.fbank")
    # s3prl appends deltas unless told otherwise (order 2 by default).
    order = int(_mapping(audio.get("delta", {}), path, f"{where}.delta").get("order", 2))
    if order != 0:
        raise ValueError(
            f"{path}: {where}.delta.order={order}: delta features are not supported; "
            "expected order 0"
        )
    cmvn = audio.get("cmvn")
    if not isinstance(cmvn, Mapping) or not cmvn.get("use_cmvn", False):
        raise ValueError(
            f"{path}: {where}.cmvn.use_cmvn is not true: the model was trained on "
            "un-normalised fbank, which our globally normalised features cannot reproduce; "
            "expected per-utterance CMVN"
        )
    return FeatureSettings(
        num_mel_bins=int(options.get("num_mel_bins", KALDI_FBANK_DEFAULTS["num_mel_bins"])),
        frame_length_ms=length,
        frame_shift_ms=shift,
        source={"extractor": "torchaudio kaldi fbank + per-utterance CMVN", **audio},
        approximations=approximations,
    )


def _transformer_log_mel_features(audio: Mapping, path: Path, where: str) -> FeatureSettings:
    feat = _mapping(audio.get("input"), path, f"{where}.input")
    checks = (
        ("feat_type", feat.get("feat_type"), "mel"),
        ("log", bool(feat.get("log", False)), True),
        ("delta", int(feat.get("delta", 0)), 0),
        ("cmvn", bool(feat.get("cmvn", False)), True),
    )
    for name, value, expected in checks:
        if value != expected:
            raise ValueError(
                f"{path}: {where}.input.{name}={value!r} is not supported; expected "
                f"{expected!r} (per-utterance normalised log-mel frames without deltas)"
            )
    if int(audio.get("sample_rate", SAMPLE_RATE)) != SAMPLE_RATE:
        raise ValueError(
            f"{path}: {where}.sample_rate={audio['sample_rate']} is not supported; expected "
            f"{SAMPLE_RATE}"
        )
    n_fft = (int(audio.get("n_freq", 201)) - 1) * 2
    approximations = [
        "features: torch.stft log-mel (Hann window, centred frames, HTK mel 0-8000 Hz, "
        f"{n_fft}-point FFT, no pre-emphasis) instead of Kaldi-style fbank",
    ]
    if "target_level" in audio:
        approximations.append(
            f"waveforms scaled to {audio['target_level']} dB (per-utterance CMVN removes gain)"
        )
    return FeatureSettings(
        num_mel_bins=int(audio.get("n_mels", 40)),
        frame_length_ms=float(audio.get("win_ms", 25)),
        frame_shift_ms=float(audio.get("hop_ms", 10)),
        source={"extractor": "s3prl OnlinePreprocessor (torch.stft log-mel)", **audio},
        approximations=approximations,
    )


def _rename(name: str) -> str | None:
    for pattern, replacement in TRANSFORMER_TO_OURS:
        match = re.fullmatch(pattern, name)
        if match:
            return match.expand(replacement)
    return None


def _transformer_state(
    state: Mapping, arch: MockingjayConfig, shared: bool, num_bins: int, path: Path
) -> dict[str, torch.Tensor]:
    # Old checkpoints call LayerNorm parameters gamma / beta.
    state = {
        re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", str(k))): v
        for k, v in state.items()
    }
    renamed: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for name, value in state.items():
        match = re.fullmatch(QKV, name)
        if match:
            qkv.setdefault((int(match[1]), match[3]), {})[match[2]] = value
            continue
        target = _rename(name)
        if target is None:
            unknown.append(name)
        else:
            renamed[target] = value
    if unknown:
        raise ValueError(f"{path}: Transformer weights with no Mockingjay counterpart: {unknown}")
    for (layer, kind), parts in sorted(qkv.items()):
        absent = [p for p in ("query", "key", "value") if p not in parts]
        if absent:
            names = [f"encoder.layer.{layer}.attention.self.{p}.{kind}" for p in absent]
            raise ValueError(f"{path}: Transformer lacks weights {names}")
        renamed[f"layers.{layer}.qkv.{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0
        )
    layers = {int(k.split(".")[1]) for k in renamed if k.startswith("layers.")}
    if layers and max(layers) >= arch.num_layers:
        raise ValueError(
            f"{path}: Transformer has weights of layer {max(layers)} but the configuration "
            f"says num_hidden_layers={arch.num_layers}"
        )
    projection = renamed.get("input_projection.weight")
    if projection is not None and projection.shape[1] != num_bins * arch.downsample:
        raise ValueError(
            f"{path}: Transformer.input_representations.spec_transform.weight reads "
            f"{projection.shape[1]} features per frame but the checkpoint's feature settings "
            f"give {num_bins}"
        )
    if shared:
        log.warning(
            "%s: share_layer is true (one set of weights for every layer); they are copied "
            "into independent layers, so continued pre-training unties them",
            path,
        )
    return renamed


def _spec_head_state(head: Any, model: Mockingjay, path: Path) -> dict[str, torch.Tensor]:
    """The reconstruction head under our names, or nothing (with a warning) if it cannot fit."""
    if head is None:
        log.warning(
            "%s has no SpecHead: the reconstruction head is freshly initialised. The model is "
            "fit for fine-tuning or frozen features, not for continued pre-training.",
            path,
        )
        return {}
    head = _mapping(head, path, "SpecHead")
    head = {
        re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", str(k))): v
        for k, v in head.items()
    }
    unknown = sorted(k for k in head if k not in SPEC_HEAD_TO_OURS)
    missing = sorted(k for k in SPEC_HEAD_TO_OURS if k not in head)
    if unknown or missing:
        raise ValueError(
            f"{path}: SpecHead does not have the expected weights (missing {missing}, "
            f"unknown {unknown}); expected {sorted(SPEC_HEAD_TO_OURS)}"
        )
    ours = model.prediction_head[3].weight.shape
    if tuple(head["output.weight"].shape) != tuple(ours):
        log.warning(
            "%s: SpecHead predicts %d values per frame, not the %d input features (a different "
            "reconstruction target): the head is freshly initialised, so the model is fit for "
            "fine-tuning or frozen features, not for continued pre-training.",
            path,
            head["output.weight"].shape[0],
            ours[0],
        )
        return {}
    return {SPEC_HEAD_TO_OURS[k]: v for k, v in head.items()}


# --------------------------------------------------------------------------- loading


def _load_strict(
    model: FbankUpstream, state: dict[str, torch.Tensor], path: Path, may_lack: tuple = ()
) -> None:
    """Load every weight except the frontend's buffers; ``may_lack`` prefixes may stay fresh."""
    own = {k for k in model.state_dict() if not k.startswith("frontend.")}
    absent = sorted(k for k in own - set(state) if not k.startswith(may_lack))
    if absent:
        raise ValueError(f"{path}: checkpoint lacks weights for {absent}")
    extra = sorted(set(state) - own)
    if extra:
        raise ValueError(f"{path}: weights that this model does not have: {extra}")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the configured architecture: {e}") from e


def _record(model: FbankUpstream, path: Path, kind: str, features: FeatureSettings) -> None:
    model.imported_from = {
        "path": str(path),
        "format": kind,
        "features": features.source,
        "feature_approximations": features.approximations,
    }
    log.warning(
        "%s: s3prl features approximated by our fbank with per-utterance CMVN; differences: %s",
        path,
        "; ".join(features.approximations) or "none known",
    )
