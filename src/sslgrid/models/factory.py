"""Building upstreams by name and restoring them from checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sslgrid.features.fbank import FbankConfig
from sslgrid.models.apc import APC, APCConfig
from sslgrid.models.upstream import FbankUpstream, Filterbank

UPSTREAMS = ("fbank", "apc")


def build_upstream(name: str, args: dict[str, Any], fbank: FbankConfig) -> FbankUpstream:
    """A freshly initialised upstream ``name`` with architecture arguments ``args``."""
    if name == "fbank":
        return Filterbank(fbank)
    if name == "apc":
        return APC(APCConfig(**args), fbank)
    raise ValueError(f"unknown upstream {name!r}; known upstreams: {list(UPSTREAMS)}")


def upstream_spec(name: str, args: dict[str, Any], fbank: FbankConfig) -> dict[str, Any]:
    """What is needed to rebuild an upstream: stored in every checkpoint as ``config``."""
    return {"name": name, "args": dict(args), "fbank": fbank.to_dict()}


def upstream_from_spec(spec: dict[str, Any]) -> FbankUpstream:
    return build_upstream(spec["name"], spec["args"], FbankConfig(**spec["fbank"]))


def load_upstream(path: str | Path) -> FbankUpstream:
    """Restore a pre-trained upstream from a checkpoint written by the pretrain stage."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = upstream_from_spec(ckpt["config"]["upstream"])
    model.load_state_dict(ckpt["model"])
    return model
