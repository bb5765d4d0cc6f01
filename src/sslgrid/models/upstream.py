"""The upstream contract every pre-trained model answers.

``forward(wavs, lengths)`` takes 16 kHz waveforms (B, S) in [-1, 1] and their lengths in
samples and returns an :class:`UpstreamOutput`: the hidden states of all layers, each (B, T, D)
with the same shape, and the number of valid frames per utterance. ``downsample_rate`` is the
frame hop in samples. Fbank-based models compute their own features, so a downstream never
needs to know which family it talks to.

Training does not go through ``forward``: it reads the ``features`` stage's cache of the
upstream's ``input_kind`` (``fbank``: raw log-mel frames; ``wav``: 16-bit samples), turns each
cached item into model input with :meth:`Upstream.prepare`, and calls :meth:`Upstream.encode`
(hidden states) or :meth:`Upstream.pretrain_loss` on padded batches of those inputs. For both
kinds, ``encode(prepare(cache item))`` equals ``forward(waveform)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from sslgrid.features.fbank import SAMPLE_RATE, FbankConfig, LogMelFbank

INPUT_KINDS = ("fbank", "wav")


@dataclass
class UpstreamOutput:
    hidden_states: list[torch.Tensor]
    lengths: torch.Tensor


class Upstream(nn.Module):
    """Base of every upstream.

    Subclasses set ``output_dim`` and ``num_layers`` (the number of hidden states returned)
    and implement :meth:`encode`; pre-trainable ones implement :meth:`pretrain_loss`.
    """

    input_kind: ClassVar[str]
    output_dim: int
    num_layers: int
    # Parameter-name prefixes of the waveform CNN, which full fine-tuning keeps frozen (as
    # wav2vec 2.0 fine-tuning does); fbank models have none.
    feature_encoder_prefixes: ClassVar[tuple[str, ...]] = ()

    @property
    def downsample_rate(self) -> int:
        """Samples of 16 kHz audio per output frame."""
        raise NotImplementedError

    @property
    def input_rate(self) -> float:
        """Input items (frames or samples) per second of audio: batches are sized with it."""
        raise NotImplementedError

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        raise NotImplementedError

    def prepare(self, item: torch.Tensor) -> torch.Tensor:
        """One cached item of ``input_kind`` -> float model input (T, ...)."""
        raise NotImplementedError

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        """Hidden states of a padded batch of prepared inputs with their lengths."""
        raise NotImplementedError

    def pretrain_loss(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The self-supervised objective on a padded batch of prepared inputs (a scalar)."""
        raise NotImplementedError(f"{type(self).__name__} has no pre-training objective")


class FbankUpstream(Upstream):
    """Base for upstreams whose input is the log-mel filterbank.

    Subclasses implement :meth:`forward_features` on normalised (B, T, num_mel_bins) frames.
    """

    input_kind = "fbank"

    def __init__(self, fbank: FbankConfig) -> None:
        super().__init__()
        self.frontend = LogMelFbank(fbank)

    @property
    def downsample_rate(self) -> int:
        return self.frontend.hop

    @property
    def input_rate(self) -> float:
        return SAMPLE_RATE / self.frontend.hop

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        feats, feat_lengths = self.frontend(wavs, lengths)
        return self.forward_features(feats, feat_lengths)

    def prepare(self, item: torch.Tensor) -> torch.Tensor:
        return self.frontend.normalise(item.float())

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        return self.forward_features(inputs, lengths)

    def forward_features(self, feats: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        raise NotImplementedError


class WaveformUpstream(Upstream):
    """Base for upstreams that read the waveform directly (CPC, wav2vec, wav2vec 2.0).

    Subclasses implement :meth:`forward` on (B, S) float waveforms. The ``fbank`` argument of
    the factory is accepted and ignored, so every upstream is built the same way.
    """

    input_kind = "wav"

    @property
    def input_rate(self) -> float:
        return float(SAMPLE_RATE)

    def prepare(self, item: torch.Tensor) -> torch.Tensor:
        return pcm_to_float(item)

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        return self.forward(inputs, lengths)


class Filterbank(FbankUpstream):
    """No pre-training: the normalised filterbank itself is the single "layer"."""

    def __init__(self, fbank: FbankConfig) -> None:
        super().__init__(fbank)
        self.output_dim = fbank.num_mel_bins
        self.num_layers = 1

    def forward_features(self, feats: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        return UpstreamOutput([feats], lengths)


def pcm_to_float(samples: torch.Tensor) -> torch.Tensor:
    """16-bit PCM samples (as stored in the waveform cache) -> float32 in [-1, 1)."""
    if samples.dtype == torch.int16:
        return samples.float() / 32768.0
    return samples.float()


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) boolean mask, True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def normalise_utterances(
    feats: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-10
) -> torch.Tensor:
    """Per-utterance CMVN of padded (B, T, D) frames over each utterance's valid frames.

    Zero mean and unit (unbiased) standard deviation per dimension, the standard deviation
    plus ``eps`` in the denominator; padding comes out as zeros. The result does not depend on
    a per-dimension affine normalisation applied before (such as the global CMVN of
    :class:`LogMelFbank`), so models trained on per-utterance CMVN can read our frames.
    """
    valid = padding_mask(lengths.to(feats.device), feats.shape[1]).unsqueeze(-1)
    count = lengths.to(feats.device, feats.dtype).clamp_min(1)[:, None, None]
    mean = (feats * valid).sum(1, keepdim=True) / count
    centred = (feats - mean) * valid
    var = (centred**2).sum(1, keepdim=True) / (count - 1).clamp_min(1)
    return centred / (var.sqrt() + eps)


def conv_output_lengths(
    lengths: torch.Tensor, layers: list[tuple[int, int]] | tuple[tuple[int, int], ...]
) -> torch.Tensor:
    """Valid output frames after unpadded 1-D convolutions given as (kernel, stride) pairs."""
    for kernel, stride in layers:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths.clamp_min(0)
