"""The input caches of the ``features`` stage: one file per corpus split and input kind.

A cache file holds, in cut order, the cut ids and what an upstream reads: ``fbank`` caches
hold raw (un-normalised) log-mel features in float16, with ``cmvn.pt`` beside them holding the
training split's mean and standard deviation; ``wav`` caches hold the 16 kHz waveform as
16-bit PCM, exactly the samples of the corpus' FLAC files. Upstreams turn an item into model
input themselves (``Upstream.prepare``), so one cache serves every model of its kind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lhotse import CutSet
from tqdm import tqdm

from sslgrid.corpora.validate import AudioLimits, CutValidator, summary_line
from sslgrid.features.fbank import SAMPLE_RATE, CmvnAccumulator, FbankConfig, LogMelFbank
from sslgrid.train.checkpoint import atomic_save

log = logging.getLogger(__name__)


KINDS = ("fbank", "wav")


@dataclass
class FeatureCache:
    """Per-utterance model inputs of one split: ``feats[i]`` is (T_i, D) fbank or (S_i,) PCM."""

    ids: list[str]
    feats: list[torch.Tensor]
    config: FbankConfig
    kind: str = "fbank"
    # Cuts of the split left out under the ``skip`` validation policy: id -> why.
    dropped: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown cache kind {self.kind!r}; known kinds: {list(KINDS)}")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def rate(self) -> float:
        """Items (frames or samples) per second of audio."""
        if self.kind == "wav":
            return float(SAMPLE_RATE)
        return SAMPLE_RATE / self.config.hop_samples

    def frames(self) -> list[int]:
        """Length of each entry in items (frames or samples)."""
        return [f.shape[0] for f in self.feats]

    def hours(self) -> float:
        return sum(self.frames()) / self.rate / 3600

    def subset(self, keep: list[str]) -> FeatureCache:
        index = {cut_id: i for i, cut_id in enumerate(self.ids)}
        missing = [k for k in keep if k not in index]
        if missing:
            raise KeyError(f"{len(missing)} ids not in the feature cache, e.g. {missing[:3]}")
        return FeatureCache(keep, [self.feats[index[k]] for k in keep], self.config, self.kind)


def load_cut_audio(cut) -> torch.Tensor:
    """Mono waveform of a cut as a float tensor; errors name the audio file."""
    try:
        samples = cut.load_audio()
    except Exception as err:
        sources = [s.source for s in cut.recording.sources] if cut.has_recording else []
        raise OSError(f"cannot read audio of cut {cut.id} from {sources}: {err}") from err
    return torch.from_numpy(samples).float().mean(0)


def float_to_pcm(samples: torch.Tensor) -> torch.Tensor:
    """Float samples in [-1, 1] -> 16-bit PCM (the FLAC files hold 16-bit audio already)."""
    return (samples.clamp(-1.0, 1.0 - 1.0 / 32768) * 32768).round().to(torch.int16)


def compute_cache(
    cuts: CutSet,
    config: FbankConfig,
    kind: str = "fbank",
    progress: bool = True,
    policy: str | None = None,
    limits: AudioLimits | None = None,
) -> FeatureCache:
    """The cache of ``cuts``; with a ``policy``, each clip's audio is validated as it is read.

    Without a policy every clip must load (errors name the file). With ``policy`` ``strict`` or
    ``skip`` the audio checks of ``sslgrid.corpora.validate`` run on the samples read for the
    cache: repairs are applied, and a bad clip stops the stage naming its file (``strict``) or
    is left out and listed in ``FeatureCache.dropped`` (``skip``).
    """
    frontend = LogMelFbank(config)
    validator = None if policy is None else CutValidator(policy, limits, check_text=False)
    ids, items, dropped = [], [], {}
    for cut in tqdm(cuts, desc=kind, disable=not progress, mininterval=5):
        if validator is None:
            wav = load_cut_audio(cut)
        else:
            checked = validator.check(cut)
            if checked.problem is not None:
                dropped[cut.id] = checked.problem
                continue
            wav = torch.from_numpy(checked.audio)
        ids.append(cut.id)
        items.append(float_to_pcm(wav) if kind == "wav" else frontend.raw(wav).half())
    if validator is not None:
        log.info("%s validation: %s", kind, summary_line(validator.report()))
    return FeatureCache(ids, items, config, kind, dropped)


def save_cache(cache: FeatureCache, path: str | Path) -> None:
    atomic_save(
        {
            "ids": cache.ids,
            "feats": cache.feats,
            "config": cache.config.to_dict(),
            "kind": cache.kind,
            "dropped": cache.dropped,
        },
        path,
    )


def load_cache(path: str | Path) -> FeatureCache:
    data = torch.load(path, map_location="cpu", weights_only=False)
    return FeatureCache(
        data["ids"],
        data["feats"],
        FbankConfig(**data["config"]),
        data.get("kind", "fbank"),
        data.get("dropped", {}),
    )


def cmvn_of(cache: FeatureCache) -> dict[str, torch.Tensor]:
    acc = CmvnAccumulator(cache.config.num_mel_bins)
    for feats in cache.feats:
        acc.update(feats)
    mean, std = acc.stats()
    return {"mean": mean, "std": std, "frames": torch.tensor(acc.count)}


def pool_cache(data_dir: str | Path, corpora: list[str], file_name: str) -> FeatureCache:
    """The training caches of several corpora as one (a mixed pre-training pool).

    With several corpora, ids become ``<corpus>/<id>`` (:func:`pool_id`): two tracks of one
    game share utterance ids, and the nested subsets are drawn by id.
    """
    caches = [load_cache(Path(data_dir) / "features" / c / file_name) for c in corpora]
    if len(caches) == 1:
        return caches[0]
    first = caches[0]
    for corpus, cache in zip(corpora, caches, strict=True):
        if cache.kind != first.kind or cache.config != first.config:
            raise ValueError(
                f"data/features/{corpus}/{file_name} was computed with other settings than "
                f"data/features/{corpora[0]}/{file_name}"
            )
    return FeatureCache(
        [pool_id(corpus, i) for corpus, c in zip(corpora, caches, strict=True) for i in c.ids],
        [f for c in caches for f in c.feats],
        first.config,
        first.kind,
    )


def pool_id(corpus: str, cut_id: str) -> str:
    return f"{corpus}/{cut_id}"


def pooled_cmvn(stats: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean and standard deviation over the frames of several corpora, from each one's CMVN."""
    if len(stats) == 1:
        return stats[0]
    counts = torch.stack([s["frames"].double() for s in stats])
    means = torch.stack([s["mean"].double() for s in stats])
    second = torch.stack([s["std"].double() ** 2 + s["mean"].double() ** 2 for s in stats])
    weights = (counts / counts.sum()).unsqueeze(-1)
    mean = (weights * means).sum(0)
    var = (weights * second).sum(0) - mean**2
    return {
        "mean": mean.float(),
        "std": var.clamp_min(0).sqrt().float(),
        "frames": counts.sum().long(),
    }
