"""Normalisation of an utterance's frames over time, for the waveform encoders of CPC and wav2vec.

A per-frame normalisation (LayerNorm over channels) of a waveform CNN's layers divides out each
frame's energy, and with it much of how the signal changes over time; in wav2vec's encoder,
what was left made neighbouring frames at initialisation no more alike than any two frames of
the utterance, and contrastive pre-training found nothing to predict (see ``models.wav2vec``;
CPC's encoder got stuck the same way in part of the default grid, ``models.cpc``). Normalising
each channel over the utterance's valid frames keeps the changes over time.
"""

from __future__ import annotations

import torch
from torch import nn

from sslgrid.models.upstream import padding_mask


class UtteranceNorm(nn.Module):
    """Group normalisation of (B, T, C) frames over each utterance's valid frames.

    The channels fall into ``groups`` equal groups; every valid frame of an utterance is
    shifted and scaled, group by group, by that group's mean and variance over its channels and
    the utterance's valid frames, then a per-channel affine map follows. Changes of loudness
    over time survive, unlike with a per-frame normalisation. Padding frames are normalised
    with their utterance's statistics but do not enter them.
    """

    def __init__(self, channels: int, groups: int, eps: float = 1e-5) -> None:
        super().__init__()
        if groups < 1 or channels % groups:
            raise ValueError(f"{groups} normalisation groups do not divide {channels} channels")
        self.groups = groups
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, C) frames, (B,) valid frames per utterance -> (B, T, C)."""
        batch, frames, channels = x.shape
        grouped = x.view(batch, frames, self.groups, channels // self.groups)
        mask = padding_mask(lengths, frames).to(x.dtype)[:, :, None, None]
        count = (lengths.clamp_min(1) * (channels // self.groups)).to(x.dtype)
        count = count[:, None, None, None]
        mean = (grouped * mask).sum(dim=(1, 3), keepdim=True) / count
        centred = grouped - mean
        var = (centred.square() * mask).sum(dim=(1, 3), keepdim=True) / count
        normed = (centred * torch.rsqrt(var + self.eps)).view(batch, frames, channels)
        return normed * self.weight + self.bias
