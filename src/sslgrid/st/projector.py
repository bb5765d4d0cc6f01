"""From upstream frames to LM input embeddings: stack ``k`` frames, then a two-layer MLP.

An LM position per 10-20 ms frame would make the LM's input ten times longer than its text;
stacking ``k`` consecutive frames (k=5 at 20 ms, k=10 at 10 ms: 100 ms per position, as in
SLAM-ASR) keeps it close to the length of the words spoken, and the Linear -> ReLU -> Linear
map is the whole trainable bridge when the LM is frozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def stack_for(frame_ms: float, stack_ms: float) -> int:
    """Frames stacked per LM position: ``stack_ms`` of audio, at least one frame."""
    return max(1, round(stack_ms / frame_ms))


class FrameStackProjector(nn.Module):
    """(B, T, D) frames -> (B, ceil(T / k), E) LM embeddings.

    Args:
        input_dim: upstream feature dimension D.
        output_dim: the LM's embedding size E.
        stack: consecutive frames k per output position; the last one is zero-padded.
        hidden_size: width of the MLP's hidden layer.
    """

    def __init__(self, input_dim: int, output_dim: int, stack: int, hidden_size: int) -> None:
        super().__init__()
        if stack < 1:
            raise ValueError(f"stack must be at least 1 frame, got {stack}")
        self.stack = stack
        self.mlp = nn.Sequential(
            nn.Linear(input_dim * stack, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, output_dim),
        )

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + self.stack - 1, self.stack, rounding_mode="floor")

    def forward(
        self, frames: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, d = frames.shape
        pad = (-t) % self.stack
        stacked = F.pad(frames, (0, 0, 0, pad)).reshape(b, (t + pad) // self.stack, d * self.stack)
        return self.mlp(stacked), self.output_lengths(lengths)
