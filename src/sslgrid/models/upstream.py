"""The upstream contract every pre-trained model answers.

``forward(wavs, lengths)`` takes 16 kHz waveforms (B, S) and their lengths in samples and
returns an :class:`UpstreamOutput`: the hidden states of all layers, each (B, T, D) with the
same shape, and the number of valid frames per utterance. ``downsample_rate`` is the frame hop
in samples. Fbank-based models compute their own features, so a downstream never needs to know
which family it talks to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sslgrid.features.fbank import FbankConfig, LogMelFbank


@dataclass
class UpstreamOutput:
    hidden_states: list[torch.Tensor]
    lengths: torch.Tensor


class FbankUpstream(nn.Module):
    """Base for upstreams whose input is the log-mel filterbank.

    Subclasses implement :meth:`forward_features`; cached features (the ``features`` stage)
    can be fed to it directly, skipping the front end.
    """

    def __init__(self, fbank: FbankConfig) -> None:
        super().__init__()
        self.frontend = LogMelFbank(fbank)

    @property
    def downsample_rate(self) -> int:
        return self.frontend.hop

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        feats, feat_lengths = self.frontend(wavs, lengths)
        return self.forward_features(feats, feat_lengths)

    def forward_features(self, feats: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        raise NotImplementedError


class Filterbank(FbankUpstream):
    """No pre-training: the normalised filterbank itself is the single "layer"."""

    def __init__(self, fbank: FbankConfig) -> None:
        super().__init__(fbank)
        self.output_dim = fbank.num_mel_bins
        self.num_layers = 1

    def forward_features(self, feats: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        return UpstreamOutput([feats], lengths)


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) boolean mask, True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
