"""Contrastive Predictive Coding (van den Oord et al., 2018) on the raw waveform.

A strided CNN turns 16 kHz samples into 10 ms encoder frames z_t, a unidirectional LSTM
summarises z_1..z_t into a context c_t, and for each k = 1..K a linear predictor W_k c_t has to
pick z_{t+k} out of a set of negatives (InfoNCE). The paper size is the reference study's small
CPC (1.8 M parameters), laid out like CPC_audio (Rivière et al., 2020): 256 channels, a
normalisation after every convolution and one LSTM layer. Unlike CPC_audio the convolutions are
unpadded, so that a valid frame never reads past the end of its utterance.

CPC_audio normalises each encoder frame over its channels (``encoder_norm: frame``). With that,
the tiny model's pre-training on the default grid's small pools stayed at the InfoNCE loss of
chance, ln(1 + num_negatives), where every candidate scores alike and the gradient vanishes, in 6
of its 13 cells (README, "Results"). The default (``time``) normalises each channel over the
utterance's valid frames instead, as our wav2vec does (``sslgrid.models.utterance_norm``), and
left chance in all 13. Its statistics span the whole utterance, so every z_t (and the context
built from z_1..z_t) carries one summary of the future, the utterance's mean and spread per
channel, the same for every frame; what is to be predicted, the frames themselves, stays
unseen.

The downstream sees the encoder output z and the output of every LSTM layer, all of width
``hidden_size``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sslgrid.features.fbank import FbankConfig
from sslgrid.models.upstream import (
    UpstreamOutput,
    WaveformUpstream,
    conv_output_lengths,
    padding_mask,
)
from sslgrid.models.utterance_norm import UtteranceNorm

# (kernel, stride) of the encoder convolutions: 5 * 4 * 2 * 2 * 2 = 160 samples = 10 ms per frame.
ENCODER_LAYERS = ((10, 5), (8, 4), (4, 2), (4, 2), (4, 2))
NEGATIVE_SOURCES = ("batch", "same_utterance")
ENCODER_NORMS = ("time", "frame")


@dataclass(frozen=True)
class CPCConfig:
    """CPC architecture and objective.

    Args:
        hidden_size: channels of every encoder convolution and units of every LSTM layer, so
            the encoder and the autoregressor states have the same width (the output
            dimension).
        ar_layers: unidirectional LSTM layers of the autoregressor; each is one hidden state.
        prediction_steps: K, the number of future encoder frames predicted from every context
            (k = 1..K), each by its own linear predictor.
        num_negatives: negatives per context frame, shared by its K predictions.
        negatives: where negatives come from: ``batch`` (valid encoder frames of every
            utterance in the batch) or ``same_utterance`` (valid frames of the context's own
            utterance; the waveform-only stand-in for CPC_audio's same-speaker sampling).
        encoder_norm: ``time``: every encoder convolution is normalised per channel over
            the utterance's valid frames (:class:`UtteranceNorm`, convolutions without bias);
            ``frame``: each frame over its channels (LayerNorm, CPC_audio's ChannelNorm), as
            checkpoints from before ``time`` were trained (see the module docstring).
    """

    hidden_size: int = 256
    ar_layers: int = 1
    prediction_steps: int = 12
    num_negatives: int = 128
    negatives: str = "batch"
    encoder_norm: str = "time"

    def __post_init__(self) -> None:
        if self.negatives not in NEGATIVE_SOURCES:
            raise ValueError(
                f"negatives must be one of {list(NEGATIVE_SOURCES)}, not {self.negatives!r}"
            )
        if self.encoder_norm not in ENCODER_NORMS:
            raise ValueError(
                f"encoder_norm: {self.encoder_norm!r}; expected one of {list(ENCODER_NORMS)}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def cpc_paper(**overrides) -> CPCConfig:
    """The reference study's small CPC: 256-channel CNN and one 256-unit LSTM.

    Encoder and LSTM have about 1.84 M parameters, the table's 1.8 M. The K = 12 linear
    predictors (0.79 M more) are used only in pre-training and are not counted.
    """
    return CPCConfig(
        **{
            "hidden_size": 256,
            "ar_layers": 1,
            "prediction_steps": 12,
            "num_negatives": 128,
            "negatives": "batch",
            **overrides,
        }
    )


def conv_channels_last(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """``conv`` (no padding or dilation, kernel a multiple of the stride) on (B, T, C) frames.

    Gives (B, T', C'), with the same weights and result as ``conv`` on (B, C, T). Channel-last
    frames let the per-frame LayerNorm run without layout copies, and this form trains faster
    on CPU than a strided 1-D convolution (1.5x for the tiny encoders): with stride s and
    kernel r * s, the
    input regrouped into blocks of s frames is a free view X, one matmul gives each block's
    contribution to the r outputs that read it, and output t sums block t + j's part j. A
    single input channel makes that matmul too thin, so the waveform layer unfolds its
    windows instead (a copy of only kernel / stride times the waveform).
    """
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    if kernel % stride or conv.padding != (0,) or conv.dilation != (1,):
        raise ValueError(f"{conv} is not an unpadded convolution with kernel = r * stride")
    if conv.in_channels == 1:
        windows = x.unfold(1, kernel, stride).flatten(2)  # (B, T', kernel)
        return F.linear(windows, conv.weight.flatten(1), conv.bias)
    parts = kernel // stride
    batch, frames, channels = x.shape
    blocks = frames // stride
    x = x[:, : blocks * stride].reshape(batch, blocks, stride * channels)
    # weight[o, c, j * s + i] -> row j * C' + o, column i * C + c, to match the blocks.
    out_channels = conv.out_channels
    weight = conv.weight.view(out_channels, channels, parts, stride).permute(2, 0, 3, 1)
    y = F.linear(x, weight.reshape(parts * out_channels, stride * channels))
    out_frames = blocks - parts + 1
    out = y[:, :out_frames, :out_channels]
    for j in range(1, parts):
        out = out + y[:, j : j + out_frames, j * out_channels : (j + 1) * out_channels]
    return out if conv.bias is None else out + conv.bias


class CPCEncoder(nn.Module):
    """Strided convolutions without padding, so a valid frame sees only valid samples.

    Each convolution is followed by a normalisation that never mixes utterances or lets padding
    in (batch normalisation would): per channel over the utterance's valid frames
    (:class:`UtteranceNorm`, ``norm="time"``), or per frame over its channels (LayerNorm,
    ``norm="frame"``), then a ReLU. Under ``time`` the convolutions have no bias, which the
    normalisation would subtract again.
    """

    def __init__(self, channels: int, norm: str = "time") -> None:
        super().__init__()
        dims = [1] + [channels] * len(ENCODER_LAYERS)
        self.over_time = norm == "time"
        self.convs = nn.ModuleList(
            nn.Conv1d(dims[i], dims[i + 1], kernel, stride=stride, bias=not self.over_time)
            for i, (kernel, stride) in enumerate(ENCODER_LAYERS)
        )
        self.norms = nn.ModuleList(
            UtteranceNorm(channels, channels) if self.over_time else nn.LayerNorm(channels)
            for _ in ENCODER_LAYERS
        )

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, S) samples with (B,) valid samples -> (B, T, C) frames."""
        x = wavs.unsqueeze(-1)
        for conv, norm, layer in zip(self.convs, self.norms, ENCODER_LAYERS, strict=True):
            y = conv_channels_last(x, conv)
            if self.over_time:
                lengths = conv_output_lengths(lengths, (layer,))
                x = F.relu(norm(y, lengths))
            else:
                x = F.relu(norm(y))
        return x


def receptive_field(layers: tuple[tuple[int, int], ...]) -> int:
    """Samples that one output frame of the (kernel, stride) convolution stack depends on."""
    field, hop = 1, 1
    for kernel, stride in layers:
        field += (kernel - 1) * hop
        hop *= stride
    return field


def pad_to_receptive_field(wavs: torch.Tensor, field: int) -> torch.Tensor:
    """Zero-pads a batch shorter than one frame so the convolutions run (giving 0 valid frames)."""
    if wavs.shape[1] >= field:
        return wavs
    return F.pad(wavs, (0, field - wavs.shape[1]))


def sample_negative_indices(
    lengths: torch.Tensor, max_len: int, num: int, same_utterance: bool
) -> torch.Tensor:
    """(B, max_len, num) indices of negatives into the pool of valid frames.

    The pool is ``frames[padding_mask(lengths, max_len)]``: valid frames, utterance by
    utterance. ``same_utterance`` restricts utterance b's negatives to its own frames. Uniform
    draws come from torch's global RNG in time-major order, so a valid frame gets the same
    negatives however much padding the batch carries.
    """
    draws = torch.rand(max_len, lengths.shape[0], num, device=lengths.device).transpose(0, 1)
    total = int(lengths.sum())
    if same_utterance:
        start = (torch.cumsum(lengths, 0) - lengths)[:, None, None]
        size = lengths[:, None, None]
        offset = torch.minimum((draws * size).long(), (size - 1).clamp_min(0))
        indices = start + offset
    else:
        indices = (draws * total).long()
    return indices.clamp(0, max(total - 1, 0))


class CPC(WaveformUpstream):
    """CPC upstream; hidden states: encoder output, then each LSTM layer's output."""

    feature_encoder_prefixes = ("encoder.",)

    def __init__(self, config: CPCConfig, fbank: FbankConfig | None = None) -> None:
        super().__init__()
        self.config = config
        size = config.hidden_size
        self.encoder = CPCEncoder(size, config.encoder_norm)
        self.autoregressor = nn.ModuleList(
            nn.LSTM(size, size, batch_first=True) for _ in range(config.ar_layers)
        )
        # One Linear(size, K * size) is exactly K separate linear predictors W_k.
        self.predictor = nn.Linear(size, config.prediction_steps * size)
        self.output_dim = size
        self.num_layers = 1 + config.ar_layers
        self._field = receptive_field(ENCODER_LAYERS)

    @property
    def downsample_rate(self) -> int:
        return math.prod(stride for _, stride in ENCODER_LAYERS)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        # The LSTMs are causal and the convolutions unpadded, so padding after an utterance
        # never reaches its valid frames.
        z = self.encoder(pad_to_receptive_field(wavs, self._field), lengths)
        hidden_states = [z]
        x = z
        for lstm in self.autoregressor:
            x, _ = lstm(x)
            hidden_states.append(x)
        return UpstreamOutput(hidden_states, conv_output_lengths(lengths, ENCODER_LAYERS))

    def pretrain_loss(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """InfoNCE of predicting z_{t+k} from c_t, averaged over valid (utterance, t, k).

        Only contexts with t + k inside the utterance count, and negatives are drawn from
        valid frames only, so padding changes nothing. As in CPC_audio, negatives are not
        screened against the positive; a draw hits it with probability 1 / (pool size).
        """
        out = self(wavs, lengths)
        z, context, frames = out.hidden_states[0], out.hidden_states[-1], out.lengths
        batch, max_len, size = z.shape
        steps = self.config.prediction_steps
        if int((frames - 1).clamp_min(0).sum()) == 0:
            raise ValueError("batch has no utterance with two encoder frames: nothing to predict")
        pool = z[padding_mask(frames, max_len)]
        neg_idx = sample_negative_indices(
            frames, max_len, self.config.num_negatives, self.config.negatives == "same_utterance"
        )
        negatives = pool[neg_idx]  # (B, T, N, C): per context, shared by its K predictions
        predictions = self.predictor(context).view(batch, max_len, steps, size)
        # futures[b, t, k - 1] = z[b, t + k] (zeros past the end, which the mask drops).
        futures = F.pad(z, (0, 0, 0, steps)).unfold(1, steps + 1, 1)[..., 1:].transpose(2, 3)
        positive = (predictions * futures).sum(-1)
        negative = torch.einsum("btkc,btnc->btkn", predictions, negatives)
        nll = torch.logsumexp(torch.cat([positive[..., None], negative], -1), -1) - positive
        target = torch.arange(max_len, device=z.device)[:, None] + torch.arange(
            1, steps + 1, device=z.device
        )
        valid = target[None] < frames[:, None, None]  # (B, T, K)
        return nll[valid].sum() / valid.sum()
