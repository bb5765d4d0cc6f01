"""Mockingjay (Liu et al., 2020) and TERA (Liu, Li & Lee, 2021): masked acoustic models.

A bidirectional Transformer encoder reads filterbank frames of which some were corrupted and
reconstructs the original frames with an L1 loss that counts only the corrupted positions.
Both methods are one model; they differ only in how the input is corrupted:

- **time alteration** (both): about ``mask_proportion`` of each utterance's frames, in
  non-overlapping spans of ``mask_span`` consecutive frames, are chosen. Each chosen span is
  zeroed with probability 0.8, replaced by a random span of the same utterance with
  probability 0.1 and left as it is with probability 0.1 (BERT's 80/10/10 rule, drawn per span).
  The loss covers every bin of the chosen frames, whatever happened to them.
- **frequency alteration** (TERA): per utterance, a block of ``W ~ U{0..freq_mask_max_bins}``
  consecutive mel bins at a uniformly random position is zeroed in every frame; the loss
  covers those bins in every valid frame, so the model must restore them from the other bins.
- **magnitude alteration** (TERA): with probability ``noise_probability`` an utterance gets
  Gaussian noise (standard deviation 0.2 on the normalised features) on all its input frames.
  Noise adds no loss positions: it only makes the unmasked context less trustworthy.

The hyperparameters follow the papers and the authors' own s3prl configurations (spans of 7,
15% of frames, frequency blocks up to 20% of the bins, noise in 15% of the utterances).
s3prl lets spans overlap, draws the 80/10/10 outcome once per utterance and adds noise to whole
batches. Here spans are disjoint, so an utterance of T frames gets exactly
``round(T * mask_proportion / mask_span)`` spans (at least one if it can hold one), and each span
and each utterance draws its own outcome.

All randomness comes from torch's global generator, which the training loop seeds and
checkpoints, and every draw for an utterance depends only on its length, so padding a batch
never changes its masks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sslgrid.features.fbank import FbankConfig
from sslgrid.models.upstream import (
    FbankUpstream,
    UpstreamOutput,
    normalise_utterances,
    padding_mask,
)

ZERO_SPAN_PROBABILITY = 0.8
REPLACE_SPAN_PROBABILITY = 0.1  # the remaining 0.1 of chosen spans keep their frames
NOISE_STD = 0.2  # TERA's magnitude alteration, relative to unit-variance (CMVN) features


@dataclass(frozen=True)
class MockingjayConfig:
    """Mockingjay / TERA architecture and input corruption.

    Args:
        num_layers: Transformer encoder layers; each layer's output is one hidden state for the
            downstream. The input embedding (projected frames plus position codes) is not
            exposed: like APC's, the hidden states are the layers that were pre-trained.
        hidden_size: model width (the output dimension); must be even and divisible by
            ``num_heads``.
        num_heads: attention heads per layer.
        ffn_size: inner width of each layer's feed-forward block.
        dropout: dropout on the embedding, the attention weights and each residual branch.
            Above 0 it costs more than it seems on CPU: dropping attention weights rules out
            the fused attention kernel, which makes small models two to three times slower.
        downsample: consecutive filterbank frames stacked into one model frame; the output
            frame rate is the filterbank's divided by this.
        mask_proportion: fraction of an utterance's model frames chosen for reconstruction.
        mask_span: consecutive model frames in one chosen span.
        freq_mask_max_bins: largest block of mel bins zeroed per utterance; 0 turns frequency
            alteration off (Mockingjay).
        noise_probability: probability that an utterance's input gets Gaussian noise; 0 turns
            magnitude alteration off (Mockingjay).
        layer_norm_eps: epsilon of every LayerNorm (BERT and s3prl use 1e-12).
        utterance_cmvn: normalise each utterance's fbank frames to zero mean and unit variance
            first (what checkpoints trained on per-utterance CMVN expect, such as s3prl's).
        max_segment_frames: 0 attends over whole utterances; above 0, an utterance of n > L
            model frames is cut into ceil(n / L) segments of equal length (the last one possibly
            shorter), each encoded on its own with positions from 0, as s3prl's upstream does
            with inputs longer than the sequence length it was pre-trained on.
    """

    num_layers: int = 3
    hidden_size: int = 768
    num_heads: int = 12
    ffn_size: int = 3072
    dropout: float = 0.1
    downsample: int = 1
    mask_proportion: float = 0.15
    mask_span: int = 7
    freq_mask_max_bins: int = 0
    noise_probability: float = 0.0
    layer_norm_eps: float = 1e-5
    utterance_cmvn: bool = False
    max_segment_frames: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads or self.hidden_size % 2:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be even and divisible by "
                f"num_heads {self.num_heads}"
            )
        if self.downsample < 1 or self.mask_span < 1 or self.freq_mask_max_bins < 0:
            raise ValueError("downsample and mask_span must be >= 1, freq_mask_max_bins >= 0")
        if self.max_segment_frames < 0 or self.layer_norm_eps <= 0:
            raise ValueError("max_segment_frames must be >= 0 and layer_norm_eps > 0")
        if not 0 <= self.mask_proportion < 1 or not 0 <= self.noise_probability <= 1:
            raise ValueError("mask_proportion must be in [0, 1), noise_probability in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)


def mockingjay_paper(**overrides) -> MockingjayConfig:
    """The reference study's Mockingjay: 3 x 768 Transformer, 12 heads, about 21 M parameters.

    Frames are not stacked (``downsample=1``), as in the authors' s3prl configurations, so
    Mockingjay keeps the 10 ms frames of every other fbank model.
    """
    return MockingjayConfig(
        **{
            "num_layers": 3,
            "hidden_size": 768,
            "num_heads": 12,
            "ffn_size": 3072,
            "dropout": 0.1,
            "downsample": 1,
            "mask_proportion": 0.15,
            "mask_span": 7,
            "freq_mask_max_bins": 0,
            "noise_probability": 0.0,
            **overrides,
        }
    )


def tera_paper(**overrides) -> MockingjayConfig:
    """TERA base (time + frequency + magnitude alteration) on 80 mel bins.

    Frequency blocks are up to 16 bins (TERA's 20% of the 80 bins); noise hits 15% of the
    utterances, as in the authors' time-frequency-magnitude configuration.
    """
    return mockingjay_paper(**{"freq_mask_max_bins": 16, "noise_probability": 0.15, **overrides})


@dataclass
class MaskedFrames:
    """A corrupted batch and where its reconstruction is scored (both (B, T, F))."""

    inputs: torch.Tensor
    loss_mask: torch.Tensor


def choose_span_starts(length: int, proportion: float, span: int) -> torch.Tensor:
    """Starts of disjoint spans covering about ``proportion`` of ``length`` frames, uniformly.

    Every placement of n disjoint spans is equally likely: n sorted slots are drawn among the
    ``length - n * span + n`` slots that remain when each span counts as one slot.
    """
    count = min(max(1, round(length * proportion / span)), length // span) if proportion else 0
    if count == 0:
        return torch.zeros(0, dtype=torch.long)
    slots = torch.randperm(length - count * span + count)[:count].sort().values
    return slots + torch.arange(count) * (span - 1)


def mask_frames(
    frames: torch.Tensor, lengths: torch.Tensor, config: MockingjayConfig
) -> MaskedFrames:
    """Time, frequency and magnitude alteration of a padded batch of (stacked) frames.

    ``frames`` is (B, T, downsample * num_mel_bins); frequency blocks apply to the same mel
    bins in every stacked sub-frame. Padding frames are neither altered nor scored.
    """
    batch, max_len, frame_dim = frames.shape
    num_bins = frame_dim // config.downsample
    original = frames.reshape(batch, max_len, config.downsample, num_bins)
    inputs = original.clone()
    loss_mask = torch.zeros_like(inputs, dtype=torch.bool)
    span = config.mask_span
    offsets = torch.arange(span)
    for i, length in enumerate(lengths.tolist()):
        starts = choose_span_starts(length, config.mask_proportion, span)
        if len(starts):
            outcome = torch.rand(len(starts))
            source_starts = torch.randint(0, length - span + 1, (len(starts),))
            chosen = (starts[:, None] + offsets).to(frames.device)
            sources = (source_starts[:, None] + offsets).to(frames.device)
            zeroed = (outcome < ZERO_SPAN_PROBABILITY).to(frames.device)
            replaced = (
                (outcome >= ZERO_SPAN_PROBABILITY)
                & (outcome < ZERO_SPAN_PROBABILITY + REPLACE_SPAN_PROBABILITY)
            ).to(frames.device)
            inputs[i, chosen[zeroed].flatten()] = 0
            inputs[i, chosen[replaced].flatten()] = original[i, sources[replaced].flatten()]
            loss_mask[i, chosen.flatten()] = True
        if config.freq_mask_max_bins > 0:
            width = int(torch.randint(0, config.freq_mask_max_bins + 1, ()))
            low = int(torch.randint(0, num_bins - width + 1, ()))
            inputs[i, :length, :, low : low + width] = 0
            loss_mask[i, :length, :, low : low + width] = True
        if config.noise_probability > 0 and torch.rand(()) < config.noise_probability:
            noise = torch.randn(length, config.downsample, num_bins) * NOISE_STD
            inputs[i, :length] += noise.to(frames.device, frames.dtype)
    return MaskedFrames(inputs.view_as(frames), loss_mask.view_as(frames))


def sinusoidal_positions(
    length: int, dim: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(length, dim) sine/cosine position codes (Vaswani et al.); no maximum length."""
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    codes = torch.empty(length, dim, device=device)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency)
    return codes.to(dtype)


class TransformerLayer(nn.Module):
    """Post-norm self-attention and feed-forward block with GELU, as in BERT and Mockingjay."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        ffn_size: int,
        dropout: float,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attention_dropout = dropout
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.attention_output = nn.Linear(hidden_size, hidden_size)
        self.attention_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden_size, ffn_size), nn.GELU(), nn.Linear(ffn_size, hidden_size)
        )
        self.feed_forward_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attend: torch.Tensor) -> torch.Tensor:
        """``x`` (B, T, D); ``attend`` (B, 1, 1, T) is True on the keys each frame may see."""
        batch, length, dim = x.shape
        q, k, v = (
            self.qkv(x)
            .view(batch, length, 3, self.num_heads, dim // self.num_heads)
            .permute(2, 0, 3, 1, 4)
        )
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attend, dropout_p=self.attention_dropout if self.training else 0.0
        )
        context = context.transpose(1, 2).reshape(batch, length, dim)
        x = self.attention_norm(x + self.dropout(self.attention_output(context)))
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))


class Mockingjay(FbankUpstream):
    """Masked acoustic model; Mockingjay or TERA depending on the config's corruption."""

    def __init__(self, config: MockingjayConfig, fbank: FbankConfig) -> None:
        super().__init__(fbank)
        if config.freq_mask_max_bins > fbank.num_mel_bins:
            raise ValueError(
                f"freq_mask_max_bins {config.freq_mask_max_bins} exceeds the "
                f"{fbank.num_mel_bins} mel bins"
            )
        self.config = config
        frame_dim = fbank.num_mel_bins * config.downsample
        hidden = config.hidden_size
        self.input_projection = nn.Linear(frame_dim, hidden)
        eps = config.layer_norm_eps
        self.input_norm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(hidden, config.num_heads, config.ffn_size, config.dropout, eps)
            for _ in range(config.num_layers)
        )
        # Only pre-training uses the head, but it is part of the module and of the parameter
        # count that the paper size is checked against (about 22.0 M in all at 3 x 768).
        self.prediction_head = nn.Sequential(
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.LayerNorm(hidden, eps=eps),
            nn.Linear(hidden, frame_dim),
        )
        self.output_dim = hidden
        self.num_layers = config.num_layers

    @property
    def downsample_rate(self) -> int:
        return self.frontend.hop * self.config.downsample

    def stack_frames(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) frames -> (B, T // k, k * D) model frames and their lengths.

        A trailing partial group is dropped, so no model frame mixes speech and padding.
        Padding is zeroed so that whatever it held cannot reach the loss or its gradient.
        With ``utterance_cmvn`` the frames are normalised per utterance first.
        """
        if self.config.utterance_cmvn:
            feats = normalise_utterances(feats, lengths)
        k = self.config.downsample
        batch, length, dim = feats.shape
        frames = feats[:, : length - length % k].reshape(batch, length // k, k * dim)
        frame_lengths = torch.div(lengths, k, rounding_mode="floor")
        valid = padding_mask(frame_lengths.to(frames.device), frames.shape[1])
        return frames.masked_fill(~valid[..., None], 0.0), frame_lengths

    def encode_frames(self, frames: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output for stacked frames (B, T, k * D)."""
        limit = self.config.max_segment_frames
        if limit and frames.shape[1] > limit:
            return self.encode_segments(frames, lengths, limit)
        return self.encode_whole(frames, lengths)

    def encode_segments(
        self, frames: torch.Tensor, lengths: torch.Tensor, limit: int
    ) -> list[torch.Tensor]:
        """:meth:`encode_whole` on equal segments of at most ``limit`` frames per utterance.

        The cut depends on each utterance's own length, never on the batch's padding.
        """
        pieces = []  # (utterance, first frame, frames)
        for i, n in enumerate(lengths.tolist()):
            size = math.ceil(n / math.ceil(n / limit)) if n > 0 else 1
            pieces += [(i, start, min(size, n - start)) for start in range(0, max(n, 1), size)]
        longest = max(1, max(count for _, _, count in pieces))
        segments = frames.new_zeros(len(pieces), longest, frames.shape[-1])
        for s, (i, start, count) in enumerate(pieces):
            segments[s, :count] = frames[i, start : start + count]
        counts = torch.tensor([count for _, _, count in pieces], device=frames.device)
        hidden_states = []
        for layer_states in self.encode_whole(segments, counts):
            out = layer_states.new_zeros(*frames.shape[:2], layer_states.shape[-1])
            for s, (i, start, count) in enumerate(pieces):
                out[i, start : start + count] = layer_states[s, :count]
            hidden_states.append(out)
        return hidden_states

    def encode_whole(self, frames: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output, each utterance attending over all its frames."""
        positions = sinusoidal_positions(
            frames.shape[1], self.output_dim, frames.device, frames.dtype
        )
        x = self.dropout(self.input_norm(self.input_projection(frames) + positions))
        # An utterance without frames would leave its queries nothing to attend to (NaN):
        # it may always see its first frame, whose output is not valid anyway.
        attend = padding_mask(lengths.to(frames.device).clamp_min(1), frames.shape[1])
        attend = attend[:, None, None, :]
        hidden_states = []
        for layer in self.layers:
            x = layer(x, attend)
            hidden_states.append(x)
        return hidden_states

    def forward_features(self, feats: torch.Tensor, lengths: torch.Tensor) -> UpstreamOutput:
        frames, frame_lengths = self.stack_frames(feats, lengths)
        return UpstreamOutput(self.encode_frames(frames, frame_lengths), frame_lengths)

    def pretrain_loss(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Mean L1 error over the altered (frame, bin) positions of valid frames."""
        frames, frame_lengths = self.stack_frames(feats, lengths)
        masked = mask_frames(frames, frame_lengths, self.config)
        predicted = self.prediction_head(self.encode_frames(masked.inputs, frame_lengths)[-1])
        error = (predicted - frames).abs() * masked.loss_mask
        return error.sum() / masked.loss_mask.sum().clamp_min(1)
