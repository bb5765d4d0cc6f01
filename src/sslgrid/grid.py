"""The comparison grid as paths: which cells config.yaml asks for, and where each lives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sslgrid.corpora.subsets import amount_label

NO_PRETRAIN = "none"  # pool and amount of the fbank baseline


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
    cells = []
    for model in config["finetune"]["upstreams"]:
        if model == "fbank":
            cells.append(UpstreamCell("fbank", NO_PRETRAIN, NO_PRETRAIN))
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
