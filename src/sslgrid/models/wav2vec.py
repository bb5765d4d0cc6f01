"""wav2vec (Schneider et al., 2019), the convolutional predecessor of wav2vec 2.0.

A strided CNN encoder turns 16 kHz samples into 10 ms frames z_t (log-compressed, as in
fairseq), a causal CNN aggregator turns z_1..z_t into a context c_t, and for each step
k = 1..K a linear map h_k(c_t) has to tell z_{t+k} apart from distractors drawn from the same
utterance with a binary logistic loss. The "large" model of the reference study adds two
kernel-1 ("linear") layers to the encoder and uses twelve aggregator layers with kernel sizes
2, 3, ..., 13 and scaled residual connections.

Every encoder convolution is followed by group normalisation over time: one mean and variance
per utterance and group of channels, over the group's channels and the utterance's valid frames
(so batching never changes a valid frame; fairseq crops a batch to equal lengths instead). The
normalisation has to pool over time: normalising each frame over its channels (LayerNorm)
divides out the frame's energy, and what is left of a 10-sample window of a waveform is mostly
its phase, which changes from one 10 ms frame to the next; a randomly initialised encoder then
gives frames z_t no more like z_{t+1} than like any other frame of their utterance. By default
each channel is its own group (``encoder_norm_groups``). fairseq's single group (1) keeps the
information but not the variation over time: the variance may sit in a fixed pattern across
channels, and the quickest way down from the initial loss is to make every score alike, which
the encoder does by making z constant over time. The loss then rests at the base rate
ln(N + 1) + N ln((N + 1) / N), where the gradient vanishes, for hundreds of updates. With one
group per channel every channel keeps unit variance over time, so that way is closed.
The aggregator keeps a per-frame LayerNorm: its input z already varies smoothly, and a
per-frame normalisation keeps c_t a function of z_1..z_t only.

Checkpoints written before this normalisation (their architecture arguments have no
``encoder_norm``) were trained with a per-frame LayerNorm after every encoder convolution;
``sslgrid.models.factory.spec_args`` restores them with ``encoder_norm: frame``, which is
that module, so that they keep computing what they were trained to compute.

The downstream sees two hidden states: the encoder output z and the aggregator output c, both
of width ``hidden_size``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sslgrid.features.fbank import FbankConfig
from sslgrid.models.cpc import (
    ENCODER_NORMS,
    conv_channels_last,
    pad_to_receptive_field,
    receptive_field,
)
from sslgrid.models.upstream import (
    UpstreamOutput,
    WaveformUpstream,
    conv_output_lengths,
    padding_mask,
)
from sslgrid.models.utterance_norm import UtteranceNorm

# (kernel, stride) of the strided encoder convolutions: 160 samples = 10 ms per frame.
STRIDED_LAYERS = ((10, 5), (8, 4), (4, 2), (4, 2), (4, 2))
LARGE_AGGREGATOR_KERNELS = tuple(range(2, 14))


@dataclass(frozen=True)
class Wav2VecConfig:
    """wav2vec architecture and objective.

    Args:
        hidden_size: channels of every encoder and aggregator convolution (the output
            dimension).
        encoder_linear_layers: kernel-1 convolutions after the five strided encoder layers
            (the large model's two "additional linear transformations").
        aggregator_kernels: kernel size of each causal, stride-1 aggregator convolution; the
            large model uses 2, 3, ..., 13, the base model nine times 3.
        residual_scale: every aggregator layer adds its input and multiplies the sum by
            sqrt(residual_scale), as fairseq's ``--residual-scale``.
        prediction_steps: K, the number of future encoder frames predicted from each context.
        prediction_offset: the first step predicted: steps are offset .. offset + K - 1. The
            paper describes k = 1..K; fairseq's default ("auto") starts at 3, the first frame
            whose receptive field no longer overlaps the context's newest frame.
        num_negatives: distractors per target frame, drawn uniformly from the other valid
            frames of the same utterance.
        dropout: dropout after every aggregator convolution and on the step predictions
            during pre-training (0 in the fairseq recipe of the large model).
        encoder_norm: ``time``: the encoder's convolutions are normalised over each
            utterance's valid frames (:class:`UtteranceNorm`); ``frame``: each frame over its
            channels (LayerNorm), as checkpoints from before ``time`` were trained, on which
            pre-training collapses (see the module docstring).
        encoder_norm_groups: channel groups of the encoder's normalisation over time; each
            group is normalised with its own mean and variance per utterance. None: one group
            per channel; 1: fairseq's ``GroupNorm(1, C)`` (see the module docstring for why
            that is not the default). Must divide ``hidden_size``.
    """

    hidden_size: int = 512
    encoder_linear_layers: int = 2
    aggregator_kernels: tuple[int, ...] = LARGE_AGGREGATOR_KERNELS
    residual_scale: float = 0.5
    prediction_steps: int = 12
    prediction_offset: int = 1
    num_negatives: int = 10
    dropout: float = 0.0
    encoder_norm: str = "time"
    encoder_norm_groups: int | None = None

    def __post_init__(self) -> None:
        # YAML gives a list; a tuple keeps the frozen config hashable.
        object.__setattr__(self, "aggregator_kernels", tuple(self.aggregator_kernels))
        if self.encoder_norm not in ENCODER_NORMS:
            raise ValueError(
                f"encoder_norm: {self.encoder_norm!r}; expected one of {list(ENCODER_NORMS)}"
            )
        groups = self.encoder_norm_groups
        if groups is not None and (groups < 1 or self.hidden_size % groups):
            raise ValueError(
                f"encoder_norm_groups: {groups} does not divide hidden_size {self.hidden_size}"
            )

    def to_dict(self) -> dict:
        return {**asdict(self), "aggregator_kernels": list(self.aggregator_kernels)}


def wav2vec_paper(**overrides) -> Wav2VecConfig:
    """wav2vec large: 512 channels, 7-layer encoder, 12-layer aggregator, 32.5 M parameters.

    The count includes the K = 12 step predictors (3.15 M, used only in pre-training): that is
    what matches the table's 32.5 M; encoder and aggregator alone have 29.4 M.
    """
    return Wav2VecConfig(
        **{
            "hidden_size": 512,
            "encoder_linear_layers": 2,
            "aggregator_kernels": LARGE_AGGREGATOR_KERNELS,
            "residual_scale": 0.5,
            "prediction_steps": 12,
            "prediction_offset": 1,
            "num_negatives": 10,
            "dropout": 0.0,
            **overrides,
        }
    )


class Wav2VecEncoder(nn.Module):
    """Unpadded convolutions, each followed by :class:`UtteranceNorm` (``norm="time"``) or a
    per-frame LayerNorm (``norm="frame"``, older checkpoints) and a ReLU."""

    def __init__(self, channels: int, linear_layers: int, norm_groups: int, norm: str) -> None:
        super().__init__()
        self.layers = STRIDED_LAYERS + ((1, 1),) * linear_layers
        dims = [1] + [channels] * len(self.layers)
        self.convs = nn.ModuleList(
            nn.Conv1d(dims[i], dims[i + 1], kernel, stride=stride, bias=False)
            for i, (kernel, stride) in enumerate(self.layers)
        )
        self.over_time = norm == "time"
        self.norms = nn.ModuleList(
            UtteranceNorm(channels, norm_groups) if self.over_time else nn.LayerNorm(channels)
            for _ in self.layers
        )

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, S) samples with (B,) valid samples -> (B, T, C) frames."""
        x = wavs.unsqueeze(-1)
        for conv, norm, layer in zip(self.convs, self.norms, self.layers, strict=True):
            # A valid output frame reads valid input frames only (unpadded convolutions).
            lengths = conv_output_lengths(lengths, (layer,))
            y = conv_channels_last(x, conv)
            x = F.relu(norm(y, lengths) if self.over_time else norm(y))
        # fairseq's log compression; the ReLU output is already non-negative.
        return torch.log1p(x)


class CausalConvBlock(nn.Module):
    """Stride-1 convolution that sees only the current and past frames.

    The left edge is padded by repeating the first frame (fairseq's default), so output frame
    t depends on input frames <= t and the output is as long as the input.
    """

    def __init__(self, channels: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(channels, channels, kernel)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        y = F.pad(x.transpose(1, 2), (self.kernel - 1, 0), mode="replicate")
        y = self.dropout(self.conv(y)).transpose(1, 2)
        return F.relu(self.norm(y))


class Wav2Vec(WaveformUpstream):
    """wav2vec upstream; hidden states: encoder output z, aggregator output c."""

    feature_encoder_prefixes = ("encoder.",)

    def __init__(self, config: Wav2VecConfig, fbank: FbankConfig | None = None) -> None:
        super().__init__()
        if config.prediction_offset < 1:
            raise ValueError("prediction_offset must be >= 1: a context cannot predict itself")
        self.config = config
        size = config.hidden_size
        groups = config.encoder_norm_groups
        self.encoder = Wav2VecEncoder(
            size,
            config.encoder_linear_layers,
            size if groups is None else groups,
            config.encoder_norm,
        )
        self.aggregator = nn.ModuleList(
            CausalConvBlock(size, kernel, config.dropout) for kernel in config.aggregator_kernels
        )
        self.residual_scale = math.sqrt(config.residual_scale)
        # One Linear(size, K * size) holds the K step-specific maps h_k.
        self.predictor = nn.Linear(size, config.prediction_steps * size)
        self.dropout = nn.Dropout(config.dropout)
        self.output_dim = size
        self.num_layers = 2
        self._field = receptive_field(self.encoder.layers)

    @property
    def downsample_rate(self) -> int:
        return math.prod(stride for _, stride in self.encoder.layers)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        # Unpadded encoder convolutions, normalisation statistics over valid frames and a
        # causal aggregator: padding after an utterance never reaches its valid frames.
        z = self.encoder(pad_to_receptive_field(wavs, self._field), lengths)
        return UpstreamOutput(
            [z, self.aggregate(z)], conv_output_lengths(lengths, self.encoder.layers)
        )

    def aggregate(self, z: torch.Tensor) -> torch.Tensor:
        """(B, T, C) encoder frames -> (B, T, C) contexts; c_t depends on z_1..z_t only."""
        c = z
        for block in self.aggregator:
            c = (block(c) + c) * self.residual_scale
        return c

    def pretrain_loss(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Binary logistic loss of z_{t+k} against distractors, per valid prediction.

        Each prediction (utterance, t, k) with t + k inside the utterance contributes
        -log sigmoid(h_k(c_t) . z_{t+k}) plus -log sigmoid(-h_k(c_t) . d) summed over its
        distractors d (the paper's lambda equal to the number of distractors); the result is
        the mean over predictions.
        """
        out = self(wavs, lengths)
        z, c, frames = out.hidden_states[0], out.hidden_states[1], out.lengths
        batch, max_len, size = z.shape
        steps, offset = self.config.prediction_steps, self.config.prediction_offset
        if int((frames - offset).clamp_min(0).sum()) == 0:
            raise ValueError(f"no utterance has more than {offset} encoder frames: nothing to do")
        pool = z[padding_mask(frames, max_len)]
        distractor_idx = sample_distractor_indices(frames, max_len, self.config.num_negatives)
        distractors = pool[distractor_idx]  # (B, T, N, C), per target frame
        predictions = self.dropout(self.predictor(c)).view(batch, max_len, steps, size)
        ahead = range(offset, offset + steps)
        # Re-index predictions by their target frame: aligned[b, j, i] = h_k(c_{j-k}), k =
        # offset + i (zeros where j < k), so that all steps meet their target frame's
        # distractors in one batched product.
        aligned = torch.stack(
            [
                F.pad(pred, (0, 0, k, -k)) if k < max_len else torch.zeros_like(pred)
                for pred, k in zip(predictions.unbind(2), ahead, strict=True)
            ],
            dim=2,
        )
        positive = (aligned * z[:, :, None, :]).sum(-1)  # (B, T, K)
        negative = torch.einsum("bjkc,bjnc->bjkn", aligned, distractors)
        loss = F.softplus(-positive) + F.softplus(negative).sum(-1)
        frame = torch.arange(max_len, device=z.device)[None, :, None]
        first = torch.tensor(list(ahead), device=z.device)
        valid = (frame >= first) & (frame < frames[:, None, None])
        return loss[valid].sum() / valid.sum()


def sample_distractor_indices(lengths: torch.Tensor, max_len: int, num: int) -> torch.Tensor:
    """(B, max_len, num) indices of distractors into the pool of valid frames.

    The pool is ``frames[padding_mask(lengths, max_len)]``: valid frames, utterance by
    utterance. Frame t of utterance b gets distractors drawn uniformly from the other valid
    frames of b. Draws come from torch's global RNG in time-major order, so a valid frame gets
    the same distractors however much padding the batch carries.
    """
    draws = torch.rand(max_len, lengths.shape[0], num, device=lengths.device).transpose(0, 1)
    others = (lengths - 1).clamp_min(0)[:, None, None]
    offset = torch.minimum((draws * others).long(), (others - 1).clamp_min(0))
    # Skip over the target frame itself: 0..t-1 stay, t..len-2 shift to t+1..len-1.
    position = torch.arange(max_len, device=lengths.device)[None, :, None]
    offset = offset + (offset >= position).long()
    start = (torch.cumsum(lengths, 0) - lengths)[:, None, None]
    total = int(lengths.sum())
    return (start + offset).clamp(0, max(total - 1, 0))
