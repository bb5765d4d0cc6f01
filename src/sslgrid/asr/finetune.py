"""Training the downstream CTC recogniser on a frozen upstream."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jiwer
import torch
from torch import nn
from tqdm import tqdm

from sslgrid.asr.downstream import (
    ConvCTCRecogniser,
    CTCRecogniser,
    DownstreamConfig,
    LinearCTCHead,
    LinearHeadConfig,
    build_recogniser,
    greedy_decode,
)
from sslgrid.asr.tokenizer import CharTokenizer
from sslgrid.features.store import FeatureCache
from sslgrid.models.upstream import Upstream
from sslgrid.train.batching import duration_batches
from sslgrid.train.checkpoint import atomic_save
from sslgrid.train.distributed import World
from sslgrid.train.loop import (
    EarlyStopping,
    TrainState,
    new_train_state,
    optimise_batch,
    pad_sequences,
    run_epochs,
    write_history,
)

log = logging.getLogger(__name__)


@torch.no_grad()
def encode_frozen(
    upstream: Upstream,
    cache: FeatureCache,
    batch_seconds: float,
    frame_repeat: int = 1,
    progress: bool = True,
) -> list[torch.Tensor]:
    """Hidden states of every cached utterance, each (L, T, D) in float16.

    A frozen upstream gives the same output every epoch, so it runs once per utterance (on
    the upstream's device; the result stays on the CPU). ``frame_repeat`` > 1 repeats every
    frame that many times (20 ms models to 10 ms frames).
    """
    upstream.eval()
    device = model_device(upstream)
    encoded: list[torch.Tensor | None] = [None] * len(cache)
    budget = int(batch_seconds * cache.rate)
    batches = duration_batches(cache.frames(), budget, seed=0, shuffle=False)
    for batch in tqdm(batches, desc="encode", disable=not progress, mininterval=5):
        x, x_len = pad_sequences([upstream.prepare(cache.feats[i].to(device)) for i in batch])
        out = upstream.encode(x, x_len.to(device))
        layers = torch.stack(out.hidden_states)  # (L, B, T, D)
        for j, i in enumerate(batch):
            item = layers[:, j, : int(out.lengths[j])].half().cpu().clone()
            encoded[i] = item.repeat_interleave(frame_repeat, dim=1) if frame_repeat > 1 else item
    return encoded  # type: ignore[return-value]


def model_device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s weights (or, without any, its buffers) are; the CPU for neither."""
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


def frame_repeat_for(upstream: Upstream, frame_rate_ms: float | None) -> int:
    """How often to repeat each upstream frame to reach ``frame_rate_ms`` (1: keep it)."""
    if frame_rate_ms is None:
        return 1
    hop_ms = upstream.downsample_rate / 16.0
    return max(1, round(hop_ms / frame_rate_ms))


def frames_per_second(upstream: Upstream, frame_repeat: int) -> float:
    return 16000 / upstream.downsample_rate * frame_repeat


class FrozenRecogniser(torch.nn.Module):
    """Upstream (frozen) + downstream, as one module for decoding."""

    def __init__(
        self,
        upstream: Upstream,
        downstream: CTCRecogniser | ConvCTCRecogniser | LinearCTCHead,
        tokenizer: CharTokenizer,
    ) -> None:
        super().__init__()
        self.upstream = upstream
        self.downstream = downstream
        self.tokenizer = tokenizer


def pad_layers(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, T_i, D) items -> (L, B, T_max, D) float32 and lengths."""
    batch, lengths = pad_sequences([x.transpose(0, 1) for x in items])
    return batch.float().permute(2, 0, 1, 3), lengths


@torch.no_grad()
def emissions(
    downstream: nn.Module, encoded: list[torch.Tensor], batch_frames: int
) -> list[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """CTC log-probabilities of encoded utterances, in batches of at most ``batch_frames``.

    Each batch is (utterance indices, (B, T, V) log-probabilities, frame counts).
    """
    downstream.eval()
    device = model_device(downstream)
    lengths = [x.shape[1] for x in encoded]
    out = []
    for batch in duration_batches(lengths, batch_frames, seed=0, shuffle=False):
        x, x_len = pad_layers([encoded[i] for i in batch])
        log_probs, out_len = downstream(x.to(device), x_len.to(device))
        out.append((batch, log_probs, out_len))
    return out


def transcribe(
    downstream: nn.Module,
    tokenizer: CharTokenizer,
    encoded: list[torch.Tensor],
    batch_frames: int,
) -> list[str]:
    """Greedy transcripts of encoded utterances; ``batch_frames`` bounds a batch's size."""
    return greedy_transcripts(tokenizer, emissions(downstream, encoded, batch_frames), len(encoded))


def greedy_transcripts(
    tokenizer: CharTokenizer,
    batches: list[tuple[list[int], torch.Tensor, torch.Tensor]],
    count: int,
) -> list[str]:
    """The best CTC path of each of ``count`` utterances, from :func:`emissions`' batches."""
    hyps: list[str] = [""] * count
    for batch, log_probs, out_len in batches:
        for i, ids in zip(batch, greedy_decode(log_probs, out_len), strict=True):
            hyps[i] = tokenizer.decode(ids)
    return hyps


def finetune_frozen(
    upstream: Upstream,
    train: tuple[FeatureCache, list[str]],
    dev: tuple[FeatureCache, list[str]],
    downstream_config: DownstreamConfig,
    config: dict[str, Any],
    out_path: Path,
    epochs: int,
    batch_seconds: float,
    learning_rate: float,
    seed: int,
    progress: bool = True,
    grad_accum: int = 1,
    world: World | None = None,
    nonfinite: str = "stop",
    early_stopping: EarlyStopping | None = None,
) -> TrainState:
    """Train a CTC recogniser on the frozen ``upstream``; keep the epoch with the best dev CER.

    ``train`` and ``dev`` pair an input cache of the upstream's kind with the normalised
    transcript of each entry. Frames are repeated ``downstream_config.frame_repeat`` times.
    The written checkpoint holds the upstream's weights too, so decoding needs nothing else.

    Each batch is shared by the ranks of ``world`` (``sslgrid.train.distributed``) and split
    into ``grad_accum`` micro-batches on each, for the same update as in one process. Every
    rank encodes the data and evaluates on dev; only rank 0 writes. ``early_stopping`` (on
    ``dev_cer``) may end training before ``epochs``.
    """
    world = world or World()
    progress = progress and world.is_main
    torch.manual_seed(seed)
    tokenizer = CharTokenizer.from_texts(train[1])
    for p in upstream.parameters():
        p.requires_grad_(False)
    upstream.to(world.device)
    repeat = downstream_config.frame_repeat
    batch_frames = int(batch_seconds * frames_per_second(upstream, repeat))
    train_x = encode_frozen(upstream, train[0], batch_seconds, repeat, progress)
    dev_x = encode_frozen(upstream, dev[0], batch_seconds, repeat, progress)
    train_y = [torch.tensor(tokenizer.encode(t)) for t in train[1]]
    keep = [i for i, y in enumerate(train_y) if len(y) > 0]
    lengths = [train_x[i].shape[1] for i in keep]

    model = build_recogniser(
        upstream.output_dim, upstream.num_layers, len(tokenizer), downstream_config
    ).to(world.device)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    steps_per_epoch = len(duration_batches(lengths, batch_frames, seed, shuffle=False))
    config = {**config, "vocab": tokenizer.symbols}
    state = new_train_state(
        model,
        config,
        steps_per_epoch,
        epochs,
        learning_rate,
        weight_decay=1e-2,
        world=world,
        seed=seed,
        nonfinite=nonfinite,
    )
    recogniser = world.wrap(model)

    def loss_of(batch: list[int]) -> torch.Tensor:
        """The batch's CTC loss: the mean over utterances of loss per target symbol."""
        items = [keep[j] for j in batch]
        x, x_len = pad_layers([train_x[i] for i in items])
        log_probs, out_len = recogniser(x.to(world.device), x_len.to(world.device))
        return ctc_loss(ctc, log_probs, out_len, [train_y[i] for i in items])

    def train_epoch(epoch: int) -> dict[str, float]:
        model.train()
        return ctc_epoch(
            state, lengths, batch_frames, seed + epoch, loss_of, grad_accum, recogniser,
            bar=f"finetune epoch {epoch + 1}/{epochs}" if progress else None,
        )  # fmt: skip

    def evaluate() -> dict[str, float]:
        return dev_error_rates(dev[1], transcribe(model, tokenizer, dev_x, batch_frames))

    run_epochs(
        state, epochs, out_path.parent / "checkpoints", train_epoch, evaluate, "dev_cer",
        early_stopping,
    )  # fmt: skip
    if world.is_main:
        chosen = state.best["model"] if state.best else state.model.state_dict()
        write_recogniser(state, out_path, chosen, upstream.state_dict())
    return state


def ctc_loss(
    ctc: torch.nn.CTCLoss,
    log_probs: torch.Tensor,
    out_len: torch.Tensor,
    targets: list[torch.Tensor],
) -> torch.Tensor:
    """CTC loss of (B, T, V) log-probabilities: mean over utterances of loss per target symbol."""
    return ctc(
        log_probs.transpose(0, 1),
        torch.cat(targets),
        out_len.cpu(),
        torch.tensor([len(t) for t in targets]),
    )


def ctc_epoch(
    state: TrainState,
    lengths: list[int],
    budget: int,
    seed: int,
    loss_of: Callable[[list[int]], torch.Tensor],
    grad_accum: int,
    module: torch.nn.Module,
    bar: str | None,
) -> dict[str, float]:
    """One epoch of updates over duration batches (``seed`` shuffles them); its mean loss.

    A resumed epoch skips the batches its mid-epoch checkpoint already holds. ``bar`` is the
    progress bar's title (``None``: no bar).
    """
    batches = duration_batches(lengths, budget, seed)[state.batches_done :]
    total, count = 0.0, 0
    progress = tqdm(batches, desc=bar, disable=bar is None, mininterval=2)
    for batch in progress:
        loss = optimise_batch(state, batch, loss_of, len, grad_accum, module)
        if not math.isfinite(loss):  # a batch skipped under `nonfinite: skip`
            continue
        total += loss * len(batch)
        count += len(batch)
        progress.set_postfix(loss=f"{loss:.3f}", refresh=False)
    return {"train_loss": total / max(count, 1), "lr": state.scheduler.get_last_lr()[0]}


def dev_error_rates(refs: list[str], hyps: list[str]) -> dict[str, float]:
    """Dev CER and WER (fractions) over the utterances with a reference."""
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    return {
        "dev_cer": jiwer.cer([r for r, _ in pairs], [h for _, h in pairs]),
        "dev_wer": jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]),
    }


def write_recogniser(
    state: TrainState,
    out_path: Path,
    model: dict[str, torch.Tensor],
    upstream: dict[str, torch.Tensor],
) -> None:
    """The fine-tuning checkpoint: recogniser (``model``) and upstream weights of the selected
    epoch, the selected epoch's dev metrics, and the history beside it."""
    final = state.to_checkpoint()
    final["model"] = model
    final["upstream"] = upstream
    final["selected"] = state.best["metrics"] if state.best else None
    atomic_save(final, out_path)
    write_history(state.history, out_path.with_name("history.tsv"))
    log.info("selected epoch: %s", final["selected"])


class FullRecogniser(torch.nn.Module):
    """Upstream and linear CTC head trained together (full fine-tuning)."""

    def __init__(self, upstream: Upstream, head: LinearCTCHead) -> None:
        super().__init__()
        self.upstream = upstream
        self.head = head

    def forward(
        self, inputs: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded prepared inputs -> (B, T, V) log-probabilities and their lengths."""
        out = self.upstream.encode(inputs, lengths)
        layers = torch.stack(out.hidden_states)  # (L, B, T, D)
        frame_lengths = out.lengths
        repeat = self.head.config.frame_repeat
        if repeat > 1:
            layers = layers.repeat_interleave(repeat, dim=2)
            frame_lengths = frame_lengths * repeat
        return self.head(layers, frame_lengths.to(layers.device))


def freeze_feature_encoder(upstream: Upstream) -> list[str]:
    """Stop gradients into the upstream's waveform CNN; returns the frozen parameters' names."""
    frozen = []
    for name, param in upstream.named_parameters():
        if name.startswith(upstream.feature_encoder_prefixes):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def finetune_full(
    upstream: Upstream,
    train: tuple[FeatureCache, list[str]],
    dev: tuple[FeatureCache, list[str]],
    head_config: LinearHeadConfig,
    config: dict[str, Any],
    out_path: Path,
    epochs: int,
    batch_seconds: float,
    learning_rate: float,
    seed: int,
    progress: bool = True,
    grad_accum: int = 1,
    world: World | None = None,
    nonfinite: str = "stop",
    early_stopping: EarlyStopping | None = None,
) -> TrainState:
    """Fine-tune ``upstream`` (its waveform CNN frozen) with a linear CTC head; keep the epoch
    with the best dev CER.

    Unlike :func:`finetune_frozen`, the upstream runs on every batch, with gradients. The
    written checkpoint has the same layout (``model``: the head, ``upstream``: the fine-tuned
    upstream of the selected epoch), so :func:`load_recogniser` and decoding take either.
    """
    world = world or World()
    progress = progress and world.is_main
    torch.manual_seed(seed)
    tokenizer = CharTokenizer.from_texts(train[1])
    frozen = freeze_feature_encoder(upstream)
    log.info("full fine-tuning; frozen feature encoder parameters: %d", len(frozen))
    head = LinearCTCHead(upstream.output_dim, len(tokenizer), head_config)
    model = FullRecogniser(upstream, head).to(world.device)
    train_y = [torch.tensor(tokenizer.encode(t)) for t in train[1]]
    keep = [i for i, y in enumerate(train_y) if len(y) > 0]
    cache = train[0]
    budget = int(batch_seconds * cache.rate)
    lengths = [cache.feats[i].shape[0] for i in keep]
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    steps_per_epoch = len(duration_batches(lengths, budget, seed, shuffle=False))
    config = {**config, "vocab": tokenizer.symbols}
    state = new_train_state(
        model,
        config,
        steps_per_epoch,
        epochs,
        learning_rate,
        weight_decay=1e-2,
        world=world,
        seed=seed,
        nonfinite=nonfinite,
    )
    # Pre-training heads (APC's postnet, the quantiser, ...) get no gradient here.
    recogniser = world.wrap(model, find_unused_parameters=True)

    def loss_of(batch: list[int]) -> torch.Tensor:
        items = [keep[j] for j in batch]
        x, x_len = pad_sequences([upstream.prepare(cache.feats[i]) for i in items])
        log_probs, out_len = recogniser(x.to(world.device), x_len.to(world.device))
        return ctc_loss(ctc, log_probs, out_len, [train_y[i] for i in items])

    def train_epoch(epoch: int) -> dict[str, float]:
        model.train()
        return ctc_epoch(
            state, lengths, budget, seed + epoch, loss_of, grad_accum, recogniser,
            bar=f"full fine-tuning epoch {epoch + 1}/{epochs}" if progress else None,
        )  # fmt: skip

    def evaluate() -> dict[str, float]:
        dev_x = encode_frozen(upstream, dev[0], batch_seconds, head_config.frame_repeat, False)
        batch_frames = int(batch_seconds * frames_per_second(upstream, head_config.frame_repeat))
        return dev_error_rates(dev[1], transcribe(head, tokenizer, dev_x, batch_frames))

    run_epochs(
        state, epochs, out_path.parent / "checkpoints", train_epoch, evaluate, "dev_cer",
        early_stopping,
    )  # fmt: skip
    if world.is_main:
        chosen = state.best["model"] if state.best else model.state_dict()
        write_recogniser(
            state, out_path, _prefixed(chosen, "head."), _prefixed(chosen, "upstream.")
        )
    return state


def _prefixed(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a state dict under ``prefix``, with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}


def load_recogniser(path: str | Path) -> FrozenRecogniser:
    """Rebuild upstream, downstream and vocabulary from a fine-tuning checkpoint."""
    from sslgrid.models.factory import upstream_from_spec

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    config = ckpt["config"]
    upstream = upstream_from_spec(config["upstream"])
    upstream.load_state_dict(ckpt["upstream"])
    tokenizer = CharTokenizer(config["vocab"])
    downstream: CTCRecogniser | ConvCTCRecogniser | LinearCTCHead
    if config.get("mode") == "full":
        downstream = LinearCTCHead(
            upstream.output_dim, len(tokenizer), LinearHeadConfig(**config["downstream"])
        )
    else:
        downstream = build_recogniser(
            upstream.output_dim,
            upstream.num_layers,
            len(tokenizer),
            DownstreamConfig(**config["downstream"]),
        )
    downstream.load_state_dict(ckpt["model"])
    return FrozenRecogniser(upstream, downstream, tokenizer).eval()
