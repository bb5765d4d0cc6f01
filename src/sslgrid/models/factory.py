"""Building upstreams by name and restoring them from checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sslgrid.features.fbank import FbankConfig
from sslgrid.models.apc import APC, APCConfig
from sslgrid.models.cpc import CPC, CPCConfig
from sslgrid.models.mockingjay import Mockingjay, MockingjayConfig
from sslgrid.models.upstream import Filterbank, Upstream
from sslgrid.models.wav2vec import Wav2Vec, Wav2VecConfig
from sslgrid.models.wav2vec2 import Wav2Vec2, Wav2Vec2Settings

# name -> (model class, its architecture dataclass). Mockingjay and TERA share one class:
# TERA is Mockingjay with frequency masking switched on in its sizes.
ARCHITECTURES: dict[str, tuple[type[Upstream], type]] = {
    "apc": (APC, APCConfig),
    "mockingjay": (Mockingjay, MockingjayConfig),
    "tera": (Mockingjay, MockingjayConfig),
    "cpc": (CPC, CPCConfig),
    "wav2vec": (Wav2Vec, Wav2VecConfig),
    "wav2vec2": (Wav2Vec2, Wav2Vec2Settings),
}
UPSTREAMS = ("fbank", *ARCHITECTURES)
# Upstreams whose encoder normalisation is a setting, and its default. Their checkpoints from
# before the setting existed were trained with per-frame LayerNorms and store no
# ``encoder_norm``.
ENCODER_NORM_DEFAULTS: dict[str, str] = {
    "wav2vec": Wav2VecConfig().encoder_norm,
    "cpc": CPCConfig().encoder_norm,
}


def architecture(name: str, args: dict[str, Any]) -> Any:
    """The architecture dataclass of upstream ``name`` built from config arguments."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown upstream {name!r}; known upstreams: {list(UPSTREAMS)}")
    config_cls = ARCHITECTURES[name][1]
    # YAML and JSON give lists where the dataclasses hold tuples (conv layouts).
    return config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})


def build_upstream(name: str, args: dict[str, Any], fbank: FbankConfig) -> Upstream:
    """A freshly initialised upstream ``name`` with architecture arguments ``args``."""
    if name == "fbank":
        return Filterbank(fbank)
    arch = architecture(name, args)
    return ARCHITECTURES[name][0](arch, fbank)


def upstream_spec(name: str, args: dict[str, Any], fbank: FbankConfig) -> dict[str, Any]:
    """What is needed to rebuild an upstream: stored in every checkpoint as ``config``.

    A wav2vec or CPC spec names its encoder normalisation even where the config leaves it to
    the default, so that a checkpoint keeps its meaning when the default changes (a spec
    without it is from before the normalisation over time; see :func:`spec_args`).
    """
    args = dict(args)
    if name in ENCODER_NORM_DEFAULTS:
        args.setdefault("encoder_norm", ENCODER_NORM_DEFAULTS[name])
    return {"name": name, "args": args, "fbank": fbank.to_dict()}


def spec_args(spec: dict[str, Any]) -> dict[str, Any]:
    """The architecture arguments a checkpoint's spec is rebuilt with.

    A wav2vec or CPC spec without ``encoder_norm`` is from a checkpoint trained with per-frame
    LayerNorms in the encoder, before the normalisation over time: it gets ``frame``, which
    rebuilds those (a wav2vec checkpoint's weights would even load into the new default, under
    the same names, and compute something else).
    """
    args = dict(spec["args"])
    if spec["name"] in ENCODER_NORM_DEFAULTS:
        args.setdefault("encoder_norm", "frame")
    return args


def upstream_from_spec(spec: dict[str, Any]) -> Upstream:
    return build_upstream(spec["name"], spec_args(spec), FbankConfig(**spec["fbank"]))


def load_upstream(path: str | Path) -> Upstream:
    """Restore a pre-trained upstream from a checkpoint written by the pretrain stage."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = upstream_from_spec(ckpt["config"]["upstream"])
    model.load_state_dict(ckpt["model"])
    return model
