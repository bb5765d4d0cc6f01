"""Pre-training an upstream on its cached inputs (filterbanks or waveforms)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sslgrid.features.store import FeatureCache
from sslgrid.models.upstream import Upstream
from sslgrid.train.batching import duration_batches
from sslgrid.train.checkpoint import atomic_save
from sslgrid.train.loop import (
    TrainState,
    new_train_state,
    optimise,
    pad_sequences,
    run_epochs,
    write_history,
)

log = logging.getLogger(__name__)


def pretrain_upstream(
    model: Upstream,
    cache: FeatureCache,
    config: dict[str, Any],
    out_path: Path,
    epochs: int,
    batch_frames: int,
    learning_rate: float,
    seed: int,
    max_frames: int | None = None,
    progress: bool = True,
) -> TrainState:
    """Train ``model.pretrain_loss`` for ``epochs`` epochs; write ``out_path`` at the end.

    ``batch_frames`` and ``max_frames`` count items of the cache (frames or samples).
    Checkpoints go to ``<out_path's folder>/checkpoints`` after every epoch, and a rerun of
    the same configuration resumes from the newest one. ``config`` is stored in every
    checkpoint and must describe the run completely (it decides whether resuming is allowed).
    """
    torch.manual_seed(seed)
    feats = [model.prepare(f) for f in cache.feats]
    if max_frames is not None:
        feats = [f[:max_frames] for f in feats]
    lengths = [f.shape[0] for f in feats]
    steps_per_epoch = len(duration_batches(lengths, batch_frames, seed, shuffle=False))
    state = new_train_state(
        model, config, steps_per_epoch, epochs, learning_rate, warmup_steps=steps_per_epoch // 2
    )

    def train_epoch(epoch: int) -> dict[str, float]:
        model.train()
        # A resumed epoch skips the batches its mid-epoch checkpoint already holds.
        batches = duration_batches(lengths, batch_frames, seed + epoch)[state.batches_done :]
        total, frames = 0.0, 0
        bar = tqdm(
            batches,
            desc=f"pretrain epoch {epoch + 1}/{epochs}",
            disable=not progress,
            mininterval=2,
        )
        for batch in bar:
            x, x_len = pad_sequences([feats[i] for i in batch])
            loss = model.pretrain_loss(x, x_len)
            optimise(state, loss)
            n = int(x_len.sum())
            total += loss.item() * n
            frames += n
            bar.set_postfix(loss=f"{loss.item():.4f}")
        return {"train_loss": total / max(frames, 1), "lr": state.scheduler.get_last_lr()[0]}

    run_epochs(state, epochs, out_path.parent / "checkpoints", train_epoch)
    atomic_save(state.to_checkpoint(), out_path)
    write_history(state.history, out_path.with_name("history.tsv"))
    return state
