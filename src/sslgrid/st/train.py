"""Aligning a frozen upstream to a causal LM: train layer weights, projector (and LoRA).

The upstream runs once over every utterance (``sslgrid.asr.finetune.encode_frozen``); each
epoch then trains on (utterance, task) examples, batched by speech frames, and measures the
teacher-forced loss on the dev split. The epoch with the lowest dev loss is kept. Epoch
checkpoints hold only what trains, so resuming a killed run is cheap even for a large LM.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sslgrid.asr.finetune import pad_layers
from sslgrid.st.model import SpeechLLM, TrainableParameters
from sslgrid.train.batching import duration_batches
from sslgrid.train.checkpoint import atomic_save
from sslgrid.train.loop import (
    TrainState,
    new_train_state,
    optimise_batch,
    run_epochs,
    write_history,
)

log = logging.getLogger(__name__)


@dataclass
class Examples:
    """(utterance, task, target tokens) triples, and how many were left out and why."""

    utterance: list[int] = field(default_factory=list)
    task: list[str] = field(default_factory=list)
    target: list[list[int]] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.utterance)


def make_examples(
    model: SpeechLLM,
    targets: Sequence[Mapping[str, str | None]],
    frames: Sequence[int],
    tasks: Sequence[str],
) -> Examples:
    """One example per utterance and task that has a target text and fits the LM.

    ``targets[i][task]`` is utterance i's text for ``task`` (None or empty: no example, e.g. a
    clip without translation); ``frames[i]`` its length in upstream frames. An example longer
    than the LM's position limit is left out and counted.
    """
    examples = Examples()
    for i, texts in enumerate(targets):
        for task in tasks:
            text = texts.get(task)
            if not text:
                examples.left_out[f"{task}: no target text"] = (
                    examples.left_out.get(f"{task}: no target text", 0) + 1
                )
                continue
            ids = model.target_ids(text)
            limit = model.max_positions
            if limit is not None and model.sequence_length(frames[i], task, len(ids)) > limit:
                key = f"{task}: longer than the LM's {limit} positions"
                examples.left_out[key] = examples.left_out.get(key, 0) + 1
                continue
            examples.utterance.append(i)
            examples.task.append(task)
            examples.target.append(ids)
    return examples


def example_loss(
    model: SpeechLLM, encoded: Sequence[torch.Tensor], examples: Examples, items: Sequence[int]
) -> torch.Tensor:
    """Mean cross-entropy per target token of some examples."""
    device = next(model.projector.parameters()).device
    layers, lengths = pad_layers([encoded[examples.utterance[j]] for j in items])
    return model(
        layers.to(device),
        lengths.to(device),
        [examples.task[j] for j in items],
        [examples.target[j] for j in items],
    )


@torch.no_grad()
def dev_loss(
    model: SpeechLLM, encoded: Sequence[torch.Tensor], examples: Examples, batch_frames: int
) -> float:
    """Teacher-forced loss per target token over all dev examples."""
    model.eval()
    lengths = [encoded[u].shape[1] for u in examples.utterance]
    total, tokens = 0.0, 0
    for batch in duration_batches(lengths, batch_frames, seed=0, shuffle=False):
        n = sum(len(examples.target[j]) for j in batch)
        total += float(example_loss(model, encoded, examples, batch)) * n
        tokens += n
    return total / max(tokens, 1)


def align_llm(
    model: SpeechLLM,
    train: tuple[Sequence[torch.Tensor], Examples],
    dev: tuple[Sequence[torch.Tensor], Examples],
    config: dict[str, Any],
    out_path: Path,
    epochs: int,
    batch_frames: int,
    learning_rate: float,
    seed: int,
    extra: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> TrainState:
    """Train ``model``'s layer weights, projector (and LoRA); keep the best dev-loss epoch.

    ``train``/``dev`` pair the encoded utterances (L, T, D) with their examples;
    ``batch_frames`` bounds a batch's padded speech frames. ``out_path`` gets the trained
    parameters, ``config`` and ``extra`` (the upstream's weights, for decoding), and
    ``history.tsv`` beside it.
    """
    torch.manual_seed(seed)
    train_x, train_ex = train
    dev_x, dev_ex = dev
    if len(train_ex) == 0:
        raise ValueError(f"no training example for {out_path}: {train_ex.left_out}")
    trainable = TrainableParameters(model)
    lengths = [train_x[u].shape[1] for u in train_ex.utterance]
    steps_per_epoch = len(duration_batches(lengths, batch_frames, seed, shuffle=False))
    state = new_train_state(
        trainable,
        config,
        steps_per_epoch,
        epochs,
        learning_rate,
        weight_decay=1e-2,
        warmup_steps=max(1, steps_per_epoch // 2),
        seed=seed,
    )
    log.info(
        "aligning: %d trainable parameters (%s), %d train / %d dev examples, %d batches per epoch",
        sum(p.numel() for p in trainable.parameters()),
        ", ".join(sorted({n.split(".")[0] for n in trainable.names()})),
        len(train_ex),
        len(dev_ex),
        steps_per_epoch,
    )

    def train_epoch(epoch: int) -> dict[str, float]:
        model.train()
        batches = duration_batches(lengths, batch_frames, seed + epoch)[state.batches_done :]
        total, count = 0.0, 0
        bar = tqdm(batches, desc=f"align epoch {epoch + 1}/{epochs}", disable=not progress)
        for batch in bar:
            loss = optimise_batch(
                state, batch, lambda items: example_loss(model, train_x, train_ex, items), len
            )
            if not math.isfinite(loss):
                continue
            total += loss * len(batch)
            count += len(batch)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        return {"train_loss": total / max(count, 1), "lr": state.scheduler.get_last_lr()[0]}

    def evaluate() -> dict[str, float]:
        return {"dev_loss": dev_loss(model, dev_x, dev_ex, batch_frames)} if len(dev_ex) else {}

    run_epochs(
        state,
        epochs,
        out_path.parent / "checkpoints",
        train_epoch,
        evaluate,
        "dev_loss" if len(dev_ex) else None,
    )
    final = state.to_checkpoint()
    if state.best is not None:
        final["model"] = state.best["model"]
        trainable.load_state_dict(state.best["model"])
    final["selected"] = state.best["metrics"] if state.best else None
    final.update(extra or {})
    atomic_save(final, out_path)
    write_history(state.history, out_path.with_name("history.tsv"))
    log.info("selected epoch: %s", final["selected"])
    return state
