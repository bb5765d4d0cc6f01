"""The linear probe: a softmax classifier from one frozen layer's frames to phone labels.

Features are standardised with the training frames' mean and deviation (so one learning rate
suits every model's scale), then a single linear layer is trained with cross-entropy on every
training frame. Frame accuracy on the test split comes with a 95% percentile bootstrap interval
over utterances (``sslgrid.metrics.wer.bootstrap_interval`` on per-utterance errors and
frames, the same resampling as the WER table's).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sslgrid.metrics.wer import bootstrap_interval

log = logging.getLogger(__name__)


class FrameCountMismatch(ValueError):
    """An upstream's frames and an utterance's labels differ by more than the tolerance."""


def match_length(
    labels: torch.Tensor, num_frames: int, tolerance: int, utt_id: str
) -> torch.Tensor:
    """``labels`` cut or padded (repeating the last label) to ``num_frames``.

    Upstreams count frames slightly differently at the end of an utterance (a 25 ms window,
    a CNN's receptive field, 20 ms frames repeated); the labels follow the fbank frames. A
    difference beyond ``tolerance`` frames means the two do not describe the same audio.
    """
    diff = num_frames - labels.shape[0]
    if abs(diff) > tolerance:
        raise FrameCountMismatch(
            f"utterance {utt_id}: {labels.shape[0]} label frames but {num_frames} upstream "
            f"frames (tolerance {tolerance})"
        )
    if diff <= 0:
        return labels[:num_frames]
    return torch.cat([labels, labels[-1:].expand(diff)])


@dataclass(frozen=True)
class ProbeSettings:
    epochs: int = 10
    batch_frames: int = 4096
    learning_rate: float = 0.01


@dataclass(frozen=True)
class ProbeResult:
    """Frame accuracy of a probe on one split, with its bootstrap interval and baselines."""

    n_utts: int
    n_frames: int
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    majority: float  # accuracy of always answering the training split's commonest label
    train_accuracy: float


def standardiser(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = frames.mean(0)
    std = frames.std(0).clamp_min(1e-5)
    return mean, std


def train_probe(
    frames: torch.Tensor, labels: torch.Tensor, num_classes: int, settings: ProbeSettings, seed: int
) -> nn.Module:
    """A linear classifier (standardisation folded in) trained on (N, D) frames and (N,) labels."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mean, std = standardiser(frames)
    linear = nn.Linear(frames.shape[1], num_classes)
    optimiser = torch.optim.Adam(linear.parameters(), lr=settings.learning_rate)
    steps = settings.epochs * max(1, -(-len(frames) // settings.batch_frames))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(settings.epochs):
        order = torch.randperm(len(frames), generator=generator)
        for start in range(0, len(frames), settings.batch_frames):
            idx = order[start : start + settings.batch_frames]
            loss = loss_fn(linear((frames[idx] - mean) / std), labels[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
    with torch.no_grad():
        folded = nn.Linear(frames.shape[1], num_classes)
        folded.weight.copy_(linear.weight / std)
        folded.bias.copy_(linear.bias - (linear.weight * (mean / std)).sum(1))
    return folded.eval()


@torch.no_grad()
def predict(probe: nn.Module, frames: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    return torch.cat(
        [probe(frames[i : i + chunk]).argmax(-1) for i in range(0, len(frames), chunk)]
    )


def evaluate_probe(
    probe: nn.Module,
    utterances: Sequence[tuple[torch.Tensor, torch.Tensor]],
    majority_label: int,
    train_accuracy: float,
    seed: int,
    n_resamples: int = 1000,
) -> ProbeResult:
    """Frame accuracy over ``(frames (T, D), labels (T,))`` utterances, interval over utterances."""
    errors, counts, majority_hits = [], [], 0
    for frames, labels in utterances:
        hits = int((predict(probe, frames.float()) == labels).sum())
        errors.append(len(labels) - hits)
        counts.append(len(labels))
        majority_hits += int((labels == majority_label).sum())
    n_frames = int(sum(counts))
    if n_frames == 0:
        raise ValueError("no test frames to score the probe on")
    err_low, err_high = bootstrap_interval(errors, counts, n_resamples=n_resamples, seed=seed)
    return ProbeResult(
        n_utts=len(counts),
        n_frames=n_frames,
        accuracy=1.0 - float(np.sum(errors)) / n_frames,
        accuracy_low=1.0 - err_high,
        accuracy_high=1.0 - err_low,
        majority=majority_hits / n_frames,
        train_accuracy=train_accuracy,
    )


def fit_and_score(
    train: Sequence[tuple[torch.Tensor, torch.Tensor]],
    test: Sequence[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    settings: ProbeSettings,
    seed: int,
) -> ProbeResult:
    """Train a probe on ``train`` utterances' frames and score it on ``test``."""
    frames = torch.cat([f for f, _ in train]).float()
    labels = torch.cat([y for _, y in train])
    probe = train_probe(frames, labels, num_classes, settings, seed)
    train_accuracy = float((predict(probe, frames) == labels).float().mean())
    majority = int(torch.bincount(labels, minlength=num_classes).argmax())
    return evaluate_probe(probe, test, majority, train_accuracy, seed)
