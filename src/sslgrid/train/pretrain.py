"""Pre-training an upstream on its cached inputs (filterbanks or waveforms)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from sslgrid.features.store import FeatureCache
from sslgrid.models.apc import APC
from sslgrid.models.upstream import Upstream
from sslgrid.models.wav2vec2 import Wav2Vec2
from sslgrid.train.batching import duration_batches
from sslgrid.train.checkpoint import atomic_save
from sslgrid.train.distributed import World
from sslgrid.train.loop import (
    TrainState,
    new_train_state,
    optimise_batch,
    pad_sequences,
    run_epochs,
    write_history,
)

log = logging.getLogger(__name__)


class PretrainObjective(nn.Module):
    """``model.pretrain_loss`` as a module's ``forward``, which is what DDP wraps.

    ``bf16``: under CUDA's bf16 autocast (matrix products and convolutions in bf16; the
    models keep their losses, softmaxes and normalisations in float32).
    """

    def __init__(self, model: Upstream, bf16: bool = False) -> None:
        super().__init__()
        self.model = model
        self.bf16 = bf16

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            return self.model.pretrain_loss(inputs, lengths)


def pretrain_loss_weight(model: Upstream, lengths: Sequence[int]) -> float:
    """The normaliser of ``model.pretrain_loss`` on utterances of ``lengths``, up to a factor.

    Exact for APC (valid predicted frames). For the other methods it is their valid input
    length: their normalisers (masked frames drawn at random, contrastive predictions per
    encoder frame) are only about proportional to it, and their random draws differ with the
    split anyway (see ``sslgrid.train.distributed``).
    """
    if isinstance(model, APC):
        return float(sum(max(n - model.config.prediction_shift, 0) for n in lengths))
    return float(sum(lengths))


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
    grad_accum: int = 1,
    world: World | None = None,
    nonfinite: str = "stop",
    fast: bool | None = None,
) -> TrainState:
    """Train ``model.pretrain_loss`` for ``epochs`` epochs; write ``out_path`` at the end.

    ``batch_frames`` and ``max_frames`` count items of the cache (frames or samples).
    Checkpoints go to ``<out_path's folder>/checkpoints`` after every epoch, and a rerun of
    the same configuration resumes from the newest one. ``config`` is stored in every
    checkpoint and must describe the run completely (it decides whether resuming is allowed).

    Each batch is shared by the ranks of ``world`` (``sslgrid.train.distributed``) and split
    into ``grad_accum`` micro-batches on each, for the same update as in one process; only
    rank 0 writes.

    ``fast`` (default: on) computes wav2vec 2.0's loss with
    :class:`~sslgrid.models.wav2vec2_fast.FastPretrainer`, the same loss with masks and
    distractors drawn on the device (compiled on CUDA; eager on the CPU, where it is still about
    1.5x ``transformers``' step), and on CUDA adds the rest of the GPU recipe of
    ``bench/pretrain_throughput.py``: bf16 autocast and a fused AdamW.
    """
    world = world or World()
    torch.manual_seed(seed)
    feats = [model.prepare(f) for f in cache.feats]
    if max_frames is not None:
        feats = [f[:max_frames] for f in feats]
    lengths = [f.shape[0] for f in feats]
    steps_per_epoch = len(duration_batches(lengths, batch_frames, seed, shuffle=False))
    model.to(world.device)
    cuda = world.device.type == "cuda"
    fast = True if fast is None else fast
    if fast and isinstance(model, Wav2Vec2):
        model.use_fast_pretraining(compile=cuda)
    state = new_train_state(
        model,
        config,
        steps_per_epoch,
        epochs,
        learning_rate,
        warmup_steps=steps_per_epoch // 2,
        world=world,
        seed=seed,
        nonfinite=nonfinite,
    )
    # Some parameters can sit out a step (wav2vec 2.0's LayerDrop), which DDP must be told.
    objective = world.wrap(
        PretrainObjective(model, bf16=fast and cuda and torch.cuda.is_bf16_supported()),
        find_unused_parameters=True,
    )

    def loss_of(items: list[int]) -> torch.Tensor:
        x, x_len = pad_sequences([feats[i] for i in items])
        return objective(x.to(world.device), x_len.to(world.device))

    def weight_of(items: list[int]) -> float:
        return pretrain_loss_weight(model, [lengths[i] for i in items])

    def train_epoch(epoch: int) -> dict[str, float]:
        model.train()
        # A resumed epoch skips the batches its mid-epoch checkpoint already holds.
        batches = duration_batches(lengths, batch_frames, seed + epoch)[state.batches_done :]
        total, frames = 0.0, 0
        bar = tqdm(
            batches,
            desc=f"pretrain epoch {epoch + 1}/{epochs}",
            disable=not (progress and world.is_main),
            mininterval=2,
        )
        for batch in bar:
            loss = optimise_batch(state, batch, loss_of, weight_of, grad_accum, objective)
            if not math.isfinite(loss):  # a batch skipped under `nonfinite: skip`
                continue
            n = sum(lengths[i] for i in batch)
            total += loss * n
            frames += n
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        return {"train_loss": total / max(frames, 1), "lr": state.scheduler.get_last_lr()[0]}

    run_epochs(state, epochs, out_path.parent / "checkpoints", train_epoch)
    if world.is_main:
        atomic_save(state.to_checkpoint(), out_path)
        write_history(state.history, out_path.with_name("history.tsv"))
    return state
