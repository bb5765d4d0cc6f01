"""Shared pieces of the training loops: padding, optimiser schedule, resumable epochs."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslgrid.train.checkpoint import (
    newest_checkpoint,
    rng_state,
    save_epoch_checkpoint,
    set_rng_state,
)
from sslgrid.train.distributed import World, rank_shares, step_seed
from sslgrid.train.preemption import PreemptionGuard

log = logging.getLogger(__name__)


def pad_sequences(seqs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (T_i, ...) tensors into (B, T_max, ...) with zeros, plus their lengths."""
    lengths = torch.tensor([s.shape[0] for s in seqs])
    out = seqs[0].new_zeros((len(seqs), int(lengths.max()), *seqs[0].shape[1:]))
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
    return out, lengths


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then cosine decay to 5% of the peak."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@dataclass(frozen=True)
class EarlyStopping:
    """Stop before the last epoch when the held-out ``key`` (lower is better) has not improved
    on its best value for ``patience`` epochs, once at least ``min_epochs`` have run.

    ``min_epochs`` keeps a run that sits on a plateau early in training (a CTC recogniser that
    still emits only blanks) from being stopped before it had the chance to leave it.
    """

    key: str
    patience: int
    min_epochs: int = 1

    def __post_init__(self) -> None:
        if self.patience < 1 or self.min_epochs < 1:
            raise ValueError(
                f"early stopping: patience ({self.patience}) and min_epochs "
                f"({self.min_epochs}) must be at least 1"
            )

    def reason(self, history: Sequence[dict[str, float]]) -> str | None:
        """Why training stops after ``history``'s epochs; None: it goes on."""
        if len(history) < self.min_epochs:
            return None
        values = [epoch[self.key] for epoch in history]
        best = min(range(len(values)), key=values.__getitem__)  # the first epoch at the best
        waited = len(values) - 1 - best
        if waited < self.patience:
            return None
        return (
            f"{self.key} has not improved on epoch {best + 1}'s {values[best]:.4g} for "
            f"{waited} epochs (patience {self.patience})"
        )


@dataclass
class TrainState:
    """Everything a rerun needs to continue where a killed run stopped."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    config: dict[str, Any]
    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    # Batches of the current epoch already trained on: non-zero in a mid-epoch checkpoint, and
    # the epoch skips that many of its batches when it resumes.
    batches_done: int = 0
    # Set while run_epochs runs: optimise() stops with a checkpoint when it was signalled.
    preemption: PreemptionGuard | None = field(default=None, repr=False)
    # The processes training together (one, unless started by torchrun); only rank 0 writes.
    world: World = field(default_factory=World, repr=False)
    # With several processes, each step's random draws are seeded from (seed, step, rank).
    seed: int = 0
    # A non-finite loss or gradient: "stop" raises FloatingPointError, "skip" drops the batch.
    nonfinite: str = "stop"
    # Batches of the current epoch dropped for that; run_epochs puts the count in the history.
    nonfinite_skipped: int = 0

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "config": self.config,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "nonfinite_skipped": self.nonfinite_skipped,
            "rng": rng_state(),
            "history": self.history,
            "best": self.best,
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step, self.epoch = ckpt["step"], ckpt["epoch"]
        self.history, self.best = ckpt["history"], ckpt.get("best")
        self.batches_done = ckpt.get("batches_done", 0)
        self.nonfinite_skipped = ckpt.get("nonfinite_skipped", 0)
        set_rng_state(ckpt["rng"])


def new_train_state(
    model: nn.Module,
    config: dict[str, Any],
    steps_per_epoch: int,
    epochs: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    warmup_steps: int | None = None,
    world: World | None = None,
    seed: int = 0,
    nonfinite: str = "stop",
) -> TrainState:
    """AdamW with linear warm-up (one epoch unless given) and cosine decay, at step 0."""
    if nonfinite not in ("stop", "skip"):
        raise ValueError(f"nonfinite: {nonfinite!r}; expected 'stop' or 'skip'")
    # The fused (single-kernel) update on CUDA; the same arithmetic as the default one.
    first = next(model.parameters(), None)
    fused = first is not None and first.device.type == "cuda"
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=learning_rate, weight_decay=weight_decay, fused=fused or None
    )
    warmup = max(1, steps_per_epoch if warmup_steps is None else warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(epochs * steps_per_epoch, warmup)
    )
    return TrainState(
        model, optimizer, scheduler, config, world=world or World(), seed=seed, nonfinite=nonfinite
    )


def optimise(state: TrainState, loss: torch.Tensor, max_grad_norm: float = 5.0) -> None:
    """One update from ``loss``; a non-finite loss stops training instead of poisoning it.

    For a single process; :func:`optimise_batch` shares a batch between processes.
    """
    if not torch.isfinite(loss):
        _nonfinite(state, f"training loss ({loss.item()})")
        return
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    _update(state, max_grad_norm)
    if state.preemption is not None:
        state.preemption.stop_if_requested(state)


def optimise_batch(
    state: TrainState,
    batch: Sequence[int],
    loss_of: Callable[[list[int]], torch.Tensor],
    weight_of: Callable[[list[int]], float],
    grad_accum: int = 1,
    module: nn.Module | None = None,
    max_grad_norm: float = 5.0,
) -> float:
    """One update from ``batch``, shared by all ranks and ``grad_accum`` micro-batches each.

    ``loss_of(items)`` is the mean training loss over some of the batch's items and
    ``weight_of(items)`` the normaliser of that mean (frames, utterances). Each rank
    back-propagates its micro-batches' losses scaled by their shares of the batch's normaliser
    (``sslgrid.train.distributed.rank_shares``) times the number of ranks, whose gradients DDP
    averages: the gradient is then that of the batch's mean loss in one process, the effective
    batch is the same whatever the number of ranks and micro-batches. ``module`` is the
    DistributedDataParallel wrapper ``loss_of`` runs through, if any: it exchanges gradients
    after the last micro-batch only. Returns the batch's mean loss (equal on every rank).
    """
    world = state.world
    if world.size > 1:
        torch.manual_seed(step_seed(state.seed, state.step, world.rank))
    shares = rank_shares(batch, weight_of, world.size, world.rank, grad_accum)
    no_sync = getattr(module, "no_sync", None)
    state.optimizer.zero_grad(set_to_none=True)
    batch_loss = torch.zeros((), dtype=torch.float64, device=world.device)
    for i, (items, share) in enumerate(shares):
        last = i == len(shares) - 1
        with nullcontext() if last or no_sync is None else no_sync():
            loss = loss_of(items)
            scale = share * world.size
            (loss if scale == 1.0 else loss * scale).backward()
        if share > 0:
            batch_loss += loss.detach().to(batch_loss) * share
    requested = state.preemption is not None and state.preemption.requested is not None
    # One exchange for the batch's loss and for whether any rank was asked to stop.
    flag = torch.tensor(float(requested), dtype=torch.float64, device=world.device)
    batch_loss, stops = world.sum(torch.stack([batch_loss, flag])).tolist()
    if not math.isfinite(batch_loss):
        _nonfinite(state, f"training loss ({batch_loss})")
    else:
        _update(state, max_grad_norm)
    if stops > 0:
        stop_for_preemption(state)
    return float(batch_loss)


def _update(state: TrainState, max_grad_norm: float) -> None:
    norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), max_grad_norm)
    if not torch.isfinite(norm):
        _nonfinite(state, f"gradient norm ({norm.item()})")
        return
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    state.batches_done += 1


def _nonfinite(state: TrainState, what: str) -> None:
    """Stop training (``nonfinite="stop"``) or drop the batch unapplied, counted (``"skip"``)."""
    where = f"non-finite {what} at step {state.step} (epoch {state.epoch + 1}, batch "
    where += f"{state.batches_done + 1})"
    if state.nonfinite != "skip":
        raise FloatingPointError(
            f"{where}; training stopped before the update, so no checkpoint holds it "
            "(nonfinite: skip drops such batches instead)"
        )
    log.warning("%s; batch skipped", where)
    state.optimizer.zero_grad(set_to_none=True)
    state.nonfinite_skipped += 1
    state.batches_done += 1


def stop_for_preemption(state: TrainState, saved: bool = False) -> None:
    """A stop signal reached some rank: checkpoint (rank 0, unless ``saved``), raise Preempted.

    Every rank stops at the same step; the others wait for rank 0's checkpoint before they
    exit, since torchrun ends the remaining processes once one of them has ended.
    """
    guard = state.preemption
    if guard is None:
        return
    if guard.requested is None:
        guard.request("a stop signal to another rank")
    try:
        guard.stop_if_requested(state, saved=saved or not state.world.is_main)
    finally:
        state.world.barrier()


def run_epochs(
    state: TrainState,
    epochs: int,
    ckpt_dir: Path,
    train_epoch: Callable[[int], dict[str, float]],
    evaluate: Callable[[], dict[str, float]] | None = None,
    select_key: str | None = None,
    early_stopping: EarlyStopping | None = None,
) -> TrainState:
    """Run the remaining epochs, checkpointing after each; resume from the newest checkpoint.

    ``train_epoch(epoch)`` trains one epoch and returns its metrics; ``evaluate`` returns
    held-out metrics. When ``select_key`` is given, the model with the lowest value of that
    metric is kept in ``state.best``. ``early_stopping`` (its key among ``evaluate``'s metrics)
    may end training before ``epochs``; the decision is taken from the history alone, so a
    resumed run takes the same one.

    ``train_epoch`` must skip the first ``state.batches_done`` batches of its epoch: a run stopped
    by SIGTERM or SIGUSR1 (``sslgrid.train.preemption``) checkpoints after its current optimiser
    step and raises ``Preempted``, and the rerun resumes that epoch where it stopped.
    """
    if early_stopping is not None and evaluate is None:
        raise ValueError("early stopping needs held-out metrics: pass `evaluate`")
    found = newest_checkpoint(ckpt_dir)
    ckpt = None if found is None else found[1]
    if ckpt is not None and ckpt["config"] != state.config:
        # The configuration changed (Snakemake reruns the job for it): never mix the two runs.
        # The old checkpoints are kept aside, not deleted, and training starts over.
        stale = set_aside(ckpt_dir)
        log.warning(
            "checkpoints in %s were written with a different configuration; moved to %s, "
            "training starts over",
            ckpt_dir,
            stale,
        )
        ckpt = None
    if ckpt is not None:
        log.info("resuming from %s (epoch %d)", found[0], ckpt["epoch"])
        state.restore(ckpt)
    with PreemptionGuard(ckpt_dir) as state.preemption:
        while state.epoch < epochs:
            if early_stopping is not None and (why := early_stopping.reason(state.history)):
                log.info("stopping after epoch %d of %d: %s", state.epoch, epochs, why)
                break
            started = time.monotonic()
            metrics = {"epoch": state.epoch + 1, **train_epoch(state.epoch)}
            if evaluate is not None:
                metrics.update(evaluate())
            metrics["seconds"] = round(time.monotonic() - started, 1)
            if state.nonfinite == "skip":
                metrics["nonfinite_skipped"] = state.nonfinite_skipped
            state.nonfinite_skipped = 0
            state.epoch += 1
            state.batches_done = 0
            state.history.append(metrics)
            if select_key is not None and (
                state.best is None or metrics[select_key] < state.best["metrics"][select_key]
            ):
                state.best = {"metrics": metrics, "model": clone_state(state.model)}
            log.info(
                "epoch %d/%d: %s",
                state.epoch,
                epochs,
                ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k != "epoch"),
            )
            if state.world.is_main:
                save_epoch_checkpoint(ckpt_dir, state.epoch, state.to_checkpoint())
            # A signal during evaluation: the epoch's checkpoint is already written.
            if state.world.any(state.preemption.requested is not None):
                stop_for_preemption(state, saved=True)
    state.preemption = None
    return state


def set_aside(folder: Path) -> Path:
    """Rename ``folder`` to ``<folder>.stale-<n>`` (the first free n) and return the new path."""
    n = 1
    while (stale := folder.with_name(f"{folder.name}.stale-{n}")).exists():
        n += 1
    folder.rename(stale)
    return stale


def clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def write_history(history: list[dict[str, float]], path: Path) -> None:
    """Per-epoch metrics as a TSV beside the model, for plotting the loss curve."""
    if not history:
        return
    keys = list(history[0])
    lines = ["\t".join(keys)] + ["\t".join(str(h.get(k, "")) for k in keys) for h in history]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
