"""The feature cache of the ``features`` stage: one file per corpus split.

A cache file holds, in cut order, the cut ids and their raw (un-normalised) log-mel features
in float16; ``cmvn.pt`` beside it holds the training split's mean and standard deviation.
Upstreams normalise with the statistics they were built with, so one cache serves them all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from lhotse import CutSet
from tqdm import tqdm

from sslgrid.features.fbank import CmvnAccumulator, FbankConfig, LogMelFbank
from sslgrid.train.checkpoint import atomic_save

log = logging.getLogger(__name__)


@dataclass
class FeatureCache:
    ids: list[str]
    feats: list[torch.Tensor]
    config: FbankConfig

    def __len__(self) -> int:
        return len(self.ids)

    def frames(self) -> list[int]:
        return [f.shape[0] for f in self.feats]

    def subset(self, keep: list[str]) -> FeatureCache:
        index = {cut_id: i for i, cut_id in enumerate(self.ids)}
        missing = [k for k in keep if k not in index]
        if missing:
            raise KeyError(f"{len(missing)} ids not in the feature cache, e.g. {missing[:3]}")
        return FeatureCache(keep, [self.feats[index[k]] for k in keep], self.config)


def load_cut_audio(cut) -> torch.Tensor:
    """Mono waveform of a cut as a float tensor; errors name the audio file."""
    try:
        samples = cut.load_audio()
    except Exception as err:
        sources = [s.source for s in cut.recording.sources] if cut.has_recording else []
        raise OSError(f"cannot read audio of cut {cut.id} from {sources}: {err}") from err
    return torch.from_numpy(samples).float().mean(0)


def compute_cache(cuts: CutSet, config: FbankConfig, progress: bool = True) -> FeatureCache:
    frontend = LogMelFbank(config)
    ids, feats = [], []
    for cut in tqdm(cuts, desc="fbank", disable=not progress, mininterval=5):
        ids.append(cut.id)
        feats.append(frontend.raw(load_cut_audio(cut)).half())
    return FeatureCache(ids, feats, config)


def save_cache(cache: FeatureCache, path: str | Path) -> None:
    atomic_save({"ids": cache.ids, "feats": cache.feats, "config": cache.config.to_dict()}, path)


def load_cache(path: str | Path) -> FeatureCache:
    data = torch.load(path, map_location="cpu", weights_only=False)
    return FeatureCache(data["ids"], data["feats"], FbankConfig(**data["config"]))


def cmvn_of(cache: FeatureCache) -> dict[str, torch.Tensor]:
    acc = CmvnAccumulator(cache.config.num_mel_bins)
    for feats in cache.feats:
        acc.update(feats)
    mean, std = acc.stats()
    return {"mean": mean, "std": std, "frames": torch.tensor(acc.count)}
