"""The downstream CTC recogniser on a frozen upstream.

Hidden states of all upstream layers are layer-normalised and combined with learnable softmax
weights (so any upstream, whatever its depth, plugs in unchanged), ``subsample`` consecutive
frames are stacked to shorten the sequence, and a bidirectional LSTM (``kind: lstm``) or a stack
of residual 1-D convolutions (``kind: conv``) predicts characters. The convolutional one runs in
parallel over time, which on a CPU makes an epoch several times cheaper than the LSTM's
frame-by-frame recursion; it sees ``num_layers * (kernel_size - 1) + 1`` stacked frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass(frozen=True)
class DownstreamConfig:
    """Recogniser architecture.

    Args:
        num_layers: BiLSTM layers, or convolution blocks.
        hidden_size: LSTM units per direction, or convolution channels.
        dropout: dropout on the LSTM's inputs and outputs and between its layers; on the
            output of the convolutional recogniser's input projection and of each block.
        subsample: consecutive frames stacked into one step.
        frame_repeat: how often each upstream frame was repeated before the recogniser (set
            from the upstream's frame rate, so that decoding repeats them the same way).
        kind: ``lstm`` (bidirectional LSTM) or ``conv`` (residual 1-D convolutions).
        kernel_size: width of each convolution, in stacked frames (``conv`` only).
    """

    num_layers: int = 2
    hidden_size: int = 256
    dropout: float = 0.2
    subsample: int = 2
    frame_repeat: int = 1
    kind: str = "lstm"
    kernel_size: int = 5

    def __post_init__(self) -> None:
        if self.kind not in RECOGNISER_KINDS:
            raise ValueError(
                f"downstream kind {self.kind!r}: expected one of {sorted(RECOGNISER_KINDS)}"
            )
        if self.kind == "conv" and self.kernel_size % 2 == 0:
            raise ValueError(
                f"downstream kernel_size {self.kernel_size}: must be odd, so that each output "
                "frame is centred on its input"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class WeightedLayerSum(nn.Module):
    def __init__(self, num_layers: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        """(L, B, T, D) -> (B, T, D)."""
        normed = F.layer_norm(layers, layers.shape[-1:])
        w = torch.softmax(self.weights, dim=0)
        return torch.einsum("l,lbtd->btd", w, normed)


class FrozenUpstreamRecogniser(nn.Module):
    """What both recognisers share: the weighted layer sum, dropout, and ``config.subsample``
    frames stacked into one step."""

    def __init__(self, num_layers_in: int, config: DownstreamConfig) -> None:
        super().__init__()
        self.config = config
        self.layer_sum = WeightedLayerSum(num_layers_in)
        self.dropout = nn.Dropout(config.dropout)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(
            lengths + self.config.subsample - 1, self.config.subsample, rounding_mode="floor"
        )

    def stack_frames(self, x: torch.Tensor) -> torch.Tensor:
        k = self.config.subsample
        if k == 1:
            return x
        b, t, d = x.shape
        pad = (-t) % k
        x = F.pad(x, (0, 0, 0, pad))
        return x.reshape(b, (t + pad) // k, d * k)


class CTCRecogniser(FrozenUpstreamRecogniser):
    """Weighted layer sum, frame stacking and a BiLSTM (``kind: lstm``)."""

    def __init__(
        self, input_dim: int, num_layers_in: int, vocab_size: int, config: DownstreamConfig
    ) -> None:
        super().__init__(num_layers_in, config)
        self.lstm = nn.LSTM(
            input_dim * config.subsample,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            bidirectional=True,
            batch_first=True,
        )
        self.output = nn.Linear(2 * config.hidden_size, vocab_size)

    def forward(
        self, layers: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L, B, T, D) hidden states -> (B, T', V) log-probabilities and their lengths."""
        x = self.stack_frames(self.layer_sum(layers))
        out_lengths = self.output_lengths(lengths)
        packed = pack_padded_sequence(
            self.dropout(x), out_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.output(self.dropout(out)).log_softmax(-1), out_lengths


class ConvCTCRecogniser(FrozenUpstreamRecogniser):
    """Weighted layer sum, frame stacking and residual 1-D convolutions (``kind: conv``).

    Each block is ``x + dropout(relu(conv(x)))`` followed by layer norm; padded steps are
    zeroed before every convolution, so a batch's padding never reaches a real frame.
    """

    def __init__(
        self, input_dim: int, num_layers_in: int, vocab_size: int, config: DownstreamConfig
    ) -> None:
        super().__init__(num_layers_in, config)
        self.input = nn.Linear(input_dim * config.subsample, config.hidden_size)
        width, pad = config.hidden_size, config.kernel_size // 2
        self.convs = nn.ModuleList(
            nn.Conv1d(width, width, config.kernel_size, padding=pad)
            for _ in range(config.num_layers)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(config.num_layers))
        self.output = nn.Linear(width, vocab_size)

    def forward(
        self, layers: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L, B, T, D) hidden states -> (B, T', V) log-probabilities and their lengths."""
        x = self.layer_sum(layers)
        x = self.stack_frames(x * valid_steps(lengths, x))
        out_lengths = self.output_lengths(lengths)
        keep = valid_steps(out_lengths, x)
        x = self.dropout(F.relu(self.input(x)))
        for conv, norm in zip(self.convs, self.norms, strict=True):
            y = conv((x * keep).transpose(1, 2)).transpose(1, 2)
            x = norm(x + self.dropout(F.relu(y)))
        return self.output(x).log_softmax(-1), out_lengths


def valid_steps(lengths: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, T, 1) mask of ``x``'s steps within ``lengths``, in ``x``'s dtype."""
    steps = torch.arange(x.shape[1], device=x.device)
    return (steps[None, :] < lengths.to(x.device)[:, None]).unsqueeze(-1).to(x.dtype)


RECOGNISERS: dict[str, type[nn.Module]] = {"lstm": CTCRecogniser, "conv": ConvCTCRecogniser}
RECOGNISER_KINDS = frozenset(RECOGNISERS)


def build_recogniser(
    input_dim: int, num_layers_in: int, vocab_size: int, config: DownstreamConfig
) -> CTCRecogniser | ConvCTCRecogniser:
    """The frozen-upstream recogniser of ``config.kind``."""
    return RECOGNISERS[config.kind](input_dim, num_layers_in, vocab_size, config)


@dataclass(frozen=True)
class LinearHeadConfig:
    """Head of full fine-tuning.

    Args:
        dropout: dropout on the upstream's last layer before the linear layer.
        frame_repeat: how often each upstream frame was repeated (as in ``DownstreamConfig``).
    """

    dropout: float = 0.1
    frame_repeat: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


class LinearCTCHead(nn.Module):
    """Full fine-tuning's recogniser: one linear layer on the upstream's last hidden state.

    It takes the same (L, B, T, D) input as :class:`CTCRecogniser`, so decoding treats both
    alike; the fine-tuned upstream does the modelling a BiLSTM would do on a frozen one.
    """

    def __init__(self, input_dim: int, vocab_size: int, config: LinearHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(input_dim, vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths

    def forward(
        self, layers: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L, B, T, D) hidden states -> (B, T, V) log-probabilities and their lengths."""
        return self.output(self.dropout(layers[-1])).log_softmax(-1), lengths


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[int]]:
    """Best path per utterance with repeats collapsed and blanks (index 0) removed."""
    best = log_probs.argmax(-1)
    hyps = []
    for seq, n in zip(best, lengths.tolist(), strict=True):
        seq = torch.unique_consecutive(seq[:n])
        hyps.append([int(i) for i in seq if i != 0])
    return hyps
