"""The speech encoder of an ST run: the same upstream the ASR grid fine-tunes on, rebuilt the
same way (fbank with the corpus' CMVN, an imported checkpoint as it is, or a pre-trained one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sslgrid.features.fbank import FbankConfig
from sslgrid.grid import family, is_imported
from sslgrid.models.factory import build_upstream, load_upstream, upstream_spec
from sslgrid.models.upstream import Upstream


def load_encoder(
    name: str,
    pretrained: Path | None,
    config: dict[str, Any],
    cmvn_path: Path,
) -> tuple[Upstream, dict[str, Any]]:
    """The upstream ``name`` and the spec that rebuilds it (stored in the ST checkpoint).

    ``pretrained`` is the pretrain stage's checkpoint; None for ``fbank`` (normalised with
    ``cmvn_path``) and for an imported checkpoint used as it is.
    """
    fbank = FbankConfig(**config["features"])
    if name == "fbank":
        upstream = build_upstream("fbank", {}, fbank)
        cmvn = torch.load(cmvn_path, map_location="cpu")
        upstream.frontend.set_cmvn(cmvn["mean"], cmvn["std"])
        return upstream, upstream_spec("fbank", {}, fbank)
    if pretrained is None:
        if not is_imported(name, config):
            raise ValueError(f"upstream {name!r} needs its pre-trained checkpoint (--pretrained)")
        from sslgrid.models.importers import import_upstream

        upstream, arch = import_upstream(
            config["imported"][name]["path"], fbank=fbank, family=family(name, config)
        )
        return upstream, upstream_spec(family(name, config), arch, fbank)
    ckpt = torch.load(pretrained, map_location="cpu", weights_only=False)
    return load_upstream(pretrained), ckpt["config"]["upstream"]
