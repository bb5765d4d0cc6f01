"""The comparison grid as paths: which cells config.yaml asks for, and where each lives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sslgrid.corpora.subsets import amount_label

NO_PRETRAIN = "none"  # pool and amount of the fbank baseline

# What each upstream reads from the features stage (its ``Upstream.input_kind``). Kept here,
# apart from the models, so the workflow can plan its inputs without importing torch; a test
# checks it against the models themselves.
INPUT_KINDS = {
    "fbank": "fbank",
    "apc": "fbank",
    "mockingjay": "fbank",
    "tera": "fbank",
    "cpc": "wav",
    "wav2vec": "wav",
    "wav2vec2": "wav",
}


def family(model: str, config: dict[str, Any] | None = None) -> str:
    """The architecture of grid model ``model``: itself, or that of an imported checkpoint."""
    imported = (config or {}).get("imported", {})
    return imported[model]["model"] if model in imported else model


def is_imported(model: str, config: dict[str, Any]) -> bool:
    return model in config.get("imported", {})


def input_kind(model: str, config: dict[str, Any] | None = None) -> str:
    try:
        return INPUT_KINDS[family(model, config)]
    except KeyError:
        raise ValueError(
            f"unknown upstream {model!r}; known upstreams: {list(INPUT_KINDS)}"
        ) from None


def cache_name(model: str, split: str, config: dict[str, Any] | None = None) -> str:
    """File name of the features-stage cache that ``model`` reads for one split."""
    return f"{input_kind(model, config)}_{split}.pt"


def cache_path(corpus: str, model: str, split: str, config: dict[str, Any] | None = None) -> str:
    return f"data/features/{corpus}/{cache_name(model, split, config)}"


def cache_kinds(config: dict[str, Any]) -> dict[str, set[str]]:
    """Which input caches each corpus of the grid needs: ``{corpus: {"fbank", "wav"}}``.

    Every corpus gets ``fbank`` (its CMVN also normalises the fbank upstreams); ``wav`` only
    where a waveform model pre-trains on it or is fine-tuned and tested on it.
    """
    ft_corpora = {config["finetune"]["corpus"], *(t.split("/")[0] for t in config["test_sets"])}
    pools = set(config["pretrain"]["pools"])
    kinds: dict[str, set[str]] = {c: {"fbank"} for c in ft_corpora | pools}
    for pool in config["pretrain"]["pools"]:
        kinds[pool] |= {input_kind(m, config) for m in config["pretrain"]["models"]}
    for corpus in ft_corpora:
        kinds[corpus] |= {input_kind(m, config) for m in config["finetune"]["upstreams"]}
    return kinds


@dataclass(frozen=True)
class UpstreamCell:
    """One pre-trained upstream (or the fbank baseline) of the grid."""

    model: str
    pool: str
    amount: str

    @property
    def path(self) -> str:
        return f"{self.model}/{self.pool}/{self.amount}"


def upstream_cells(config: dict[str, Any]) -> list[UpstreamCell]:
    """Every upstream the grid fine-tunes.

    ``fbank`` and imported checkpoints as they are have pool and amount ``none``; models in
    ``pretrain.models`` get one cell per pool and amount (for an imported checkpoint: continued
    pre-training from it).
    """
    cells = []
    for model in config["finetune"]["upstreams"]:
        if model == "fbank" or is_imported(model, config):
            cells.append(UpstreamCell(model, NO_PRETRAIN, NO_PRETRAIN))
        if model not in config["pretrain"]["models"]:
            continue
        for pool in config["pretrain"]["pools"]:
            for amount in config["pretrain"]["amounts"]:
                cells.append(UpstreamCell(model, pool, amount_label(amount)))
    return cells


def finetune_label(config: dict[str, Any]) -> str:
    """Path component naming the fine-tuning setting: mode and labelled corpus."""
    ft = config["finetune"]
    return f"{ft['mode']}-{ft['corpus']}"


def model_args(config: dict[str, Any], model: str) -> dict[str, Any]:
    entry = config["models"][model]
    return dict(entry["sizes"][entry["size"]])
