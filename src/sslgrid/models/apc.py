"""Autoregressive Predictive Coding (Chung et al., 2019).

A unidirectional GRU stack reads filterbank frames and, at every frame t, predicts frame
t + n with an L1 loss; n > 1 keeps the model from exploiting the smoothness of adjacent
frames. Layers are separate GRUs so that each layer's output is exposed to the downstream.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from sslgrid.features.fbank import FbankConfig
from sslgrid.models.upstream import (
    FbankUpstream,
    UpstreamOutput,
    normalise_utterances,
    padding_mask,
)


@dataclass(frozen=True)
class APCConfig:
    """APC architecture.

    Args:
        num_layers: GRU layers; each is one hidden state for the downstream.
        hidden_size: units per GRU layer (the output dimension).
        prediction_shift: how many frames ahead the model predicts.
        dropout: dropout between GRU layers during pre-training.
        residual: add each layer's input to its output from the second layer on.
        utterance_cmvn: normalise each utterance's frames to zero mean and unit variance
            before the GRUs (what checkpoints trained on per-utterance CMVN expect, such as
            s3prl's); off, the model reads the frontend's globally normalised frames as they are.
    """

    num_layers: int = 3
    hidden_size: int = 512
    prediction_shift: int = 3
    dropout: float = 0.1
    residual: bool = True
    utterance_cmvn: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def apc_paper(**overrides) -> APCConfig:
    """The reference study's APC: 3 x 512 GRU, about 4.1 M parameters."""
    return APCConfig(**{"num_layers": 3, "hidden_size": 512, "prediction_shift": 3, **overrides})


class APC(FbankUpstream):
    def __init__(self, config: APCConfig, fbank: FbankConfig) -> None:
        super().__init__(fbank)
        self.config = config
        dims = [fbank.num_mel_bins] + [config.hidden_size] * config.num_layers
        self.layers = nn.ModuleList(
            nn.GRU(dims[i], dims[i + 1], batch_first=True) for i in range(config.num_layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.postnet = nn.Linear(config.hidden_size, fbank.num_mel_bins)
        self.output_dim = config.hidden_size
        self.num_layers = config.num_layers

    def forward_features(self, feats: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        # The GRUs are causal, so padding at the end never changes the valid frames' states.
        hidden_states = []
        x = self.model_input(feats, lengths)
        for i, gru in enumerate(self.layers):
            out, _ = gru(x)
            if i > 0 and self.config.residual:
                out = out + x  # residual between equal-width layers, as in the APC paper
            hidden_states.append(out)
            x = self.dropout(out) if i < len(self.layers) - 1 else out
        return UpstreamOutput(hidden_states, lengths)

    def model_input(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The frames the GRUs read (and the postnet predicts)."""
        return normalise_utterances(feats, lengths) if self.config.utterance_cmvn else feats

    def pretrain_loss(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean L1 error of predicting frame t + n from frames up to t, over valid frames."""
        n = self.config.prediction_shift
        if feats.shape[1] <= n:
            raise ValueError(f"batch of {feats.shape[1]} frames is too short to predict {n} ahead")
        last = self.forward_features(feats, lengths).hidden_states[-1]
        predicted = self.postnet(last[:, :-n])
        target = self.model_input(feats, lengths)[:, n:]
        mask = padding_mask(lengths - n, target.shape[1]).unsqueeze(-1)
        err = (predicted - target).abs() * mask
        return err.sum() / (mask.sum() * target.shape[-1]).clamp_min(1)
