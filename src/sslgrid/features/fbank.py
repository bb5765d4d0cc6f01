"""Kaldi-compatible log-mel filterbanks with global mean/variance normalisation.

The same module computes the cached features of the ``features`` stage and the features that
fbank-based upstreams compute from waveforms at run time, so both paths agree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from lhotse.features.kaldi.layers import Wav2LogFilterBank
from torch import nn

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class FbankConfig:
    """Filterbank settings.

    Args:
        num_mel_bins: number of mel filters (feature dimension).
        frame_length_ms: analysis window length.
        frame_shift_ms: hop between frames; sets the frame rate of every fbank model.
    """

    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0

    @property
    def hop_samples(self) -> int:
        return int(round(SAMPLE_RATE * self.frame_shift_ms / 1000))

    def to_dict(self) -> dict:
        return asdict(self)


def num_frames(num_samples: torch.Tensor | int, hop: int) -> torch.Tensor | int:
    """Frames produced for a signal of ``num_samples`` (Kaldi with snip_edges=False)."""
    return (num_samples + hop // 2) // hop


class LogMelFbank(nn.Module):
    """Batched log-mel filterbank followed by global CMVN (statistics held as buffers)."""

    def __init__(self, config: FbankConfig = FbankConfig()) -> None:
        super().__init__()
        self.config = config
        self.extractor = Wav2LogFilterBank(
            sampling_rate=SAMPLE_RATE,
            frame_length=config.frame_length_ms / 1000,
            frame_shift=config.frame_shift_ms / 1000,
            num_filters=config.num_mel_bins,
        )
        self.register_buffer("mean", torch.zeros(config.num_mel_bins))
        self.register_buffer("std", torch.ones(config.num_mel_bins))

    @property
    def hop(self) -> int:
        return self.config.hop_samples

    def set_cmvn(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-5))

    @torch.no_grad()
    def raw(self, wav: torch.Tensor) -> torch.Tensor:
        """Un-normalised features of one waveform (S,) -> (T, D)."""
        return self.extractor(wav.unsqueeze(0)).squeeze(0)

    def normalise(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats - self.mean) / self.std

    def forward(
        self, wavs: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) waveforms and their lengths in samples -> (B, T, D) features and lengths."""
        feats = self.normalise(self.extractor(wavs))
        feat_lengths = num_frames(lengths, self.hop)
        return feats, feat_lengths


class CmvnAccumulator:
    """Running per-dimension mean and standard deviation over many utterances (float64)."""

    def __init__(self, dim: int) -> None:
        self.count = 0
        self.total = torch.zeros(dim, dtype=torch.float64)
        self.total_sq = torch.zeros(dim, dtype=torch.float64)

    def update(self, feats: torch.Tensor) -> None:
        feats = feats.double()
        self.count += feats.shape[0]
        self.total += feats.sum(0)
        self.total_sq += (feats**2).sum(0)

    def stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.count == 0:
            raise ValueError("no frames seen: cannot compute CMVN statistics")
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean**2).clamp_min(1e-10)
        return mean.float(), var.sqrt().float()
