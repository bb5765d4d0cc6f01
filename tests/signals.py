"""Generated test signals."""

import math

import torch


def chirps(num: int, samples: int) -> torch.Tensor:
    """Rising chirps with a slow amplitude envelope: predictable, but different per utterance."""
    t = torch.arange(samples) / 16000
    waves = []
    for i in range(num):
        phase = 2 * math.pi * ((200 + 150 * i) * t + 400 * t**2)
        envelope = 0.5 + 0.5 * torch.sin(2 * math.pi * 4 * t + i)
        waves.append(0.5 * envelope * torch.sin(phase))
    return torch.stack(waves)
