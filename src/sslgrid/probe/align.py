"""Phone labels per 10 ms frame: a CTC phone recogniser and forced alignment.

**Recogniser.** A stack of 1-D convolutions over the corpus' normalised log-mel frames (10 ms,
no subsampling) predicts the phones of ``sslgrid.probe.phones`` plus the CTC blank, trained
with CTC on the training split's phonemised transcripts. Convolutions rather than an LSTM: a
few minutes on one CPU core, and a limited receptive field (``receptive_frames``) keeps each
phone's CTC spike near the phone itself, which is what alignment needs.

**Alignment.** ``torchaudio.functional.forced_align`` gives the best CTC path through the
utterance's known phone sequence. A CTC path is peaky: each phone owns one or a few frames and
blanks fill the rest. Frames are given to phones by ``spans_to_regions``: the blank frames
between two phones are split at their midpoint; the first phone reaches as far to the left of
its span as it reaches to the right of it (and the last phone mirrored likewise), and the frames
beyond are ``sil``. The result is one label per fbank frame (10 ms).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torchaudio.functional as AF
from torch import nn
from tqdm import tqdm

from sslgrid.probe.phones import PHONES, SILENCE
from sslgrid.train.batching import duration_batches
from sslgrid.train.loop import pad_sequences, warmup_cosine

log = logging.getLogger(__name__)

BLANK = 0  # the CTC blank shares index 0 with `sil`, which is never a CTC target
SILENCE_ID = PHONES.index(SILENCE)
assert SILENCE_ID == BLANK


@dataclass(frozen=True)
class AlignerConfig:
    """The phone recogniser used for forced alignment.

    Args:
        channels: convolution channels.
        layers: convolution layers (kernel ``kernel``, stride 1).
        kernel: kernel width in frames.
        rnn_size: units per direction of a bidirectional GRU after the convolutions (0: none).
        dropout: dropout after each convolution.
        epochs: passes over the training split.
        batch_seconds: audio per batch.
        learning_rate: peak AdamW learning rate (one epoch of warm-up, cosine decay).
    """

    channels: int = 128
    layers: int = 2
    kernel: int = 5
    rnn_size: int = 96
    dropout: float = 0.1
    epochs: int = 10
    batch_seconds: float = 60.0
    learning_rate: float = 0.002

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def receptive_frames(self) -> int:
        return self.layers * (self.kernel - 1) + 1


class PhoneRecogniser(nn.Module):
    """(B, T, D) normalised fbank -> (B, T, len(PHONES)) CTC log-probabilities."""

    def __init__(self, input_dim: int, config: AlignerConfig) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        dim = input_dim
        for _ in range(config.layers):
            blocks += [
                nn.Conv1d(dim, config.channels, config.kernel, padding=config.kernel // 2),
                nn.GELU(),
                nn.Dropout(config.dropout),
            ]
            dim = config.channels
        self.convs = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(config.channels)
        self.rnn = (
            nn.GRU(config.channels, config.rnn_size, batch_first=True, bidirectional=True)
            if config.rnn_size
            else None
        )
        self.output = nn.Linear(
            2 * config.rnn_size if config.rnn_size else config.channels, len(PHONES)
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Padding frames at the end of a batch see only zeros; they are never aligned."""
        hidden = self.norm(self.convs(feats.transpose(1, 2)).transpose(1, 2))
        if self.rnn is not None:
            hidden, _ = self.rnn(hidden)
        return self.output(hidden).log_softmax(-1)


def train_recogniser(
    feats: Sequence[torch.Tensor],
    targets: Sequence[Sequence[int]],
    config: AlignerConfig,
    seed: int,
    frames_per_second: float = 100.0,
    progress: bool = True,
) -> tuple[PhoneRecogniser, list[dict[str, float]]]:
    """Train the recogniser with CTC on (T, D) normalised frames and their phone ids.

    Utterances without phones, or too short for their phones (CTC needs a frame per phone and
    one more per repeated phone), are left out. Returns the model (in eval mode) and the mean
    loss per epoch.
    """
    torch.manual_seed(seed)
    usable = [i for i, (x, y) in enumerate(zip(feats, targets, strict=True)) if fits(len(x), y)]
    if not usable:
        raise ValueError("no training utterance has phones and enough frames for them")
    model = PhoneRecogniser(feats[0].shape[1], config)
    lengths = [feats[i].shape[0] for i in usable]
    budget = int(config.batch_seconds * frames_per_second)
    steps = len(duration_batches(lengths, budget, seed, shuffle=False))
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, warmup_cosine(config.epochs * steps, steps)
    )
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    history = []
    for epoch in range(config.epochs):
        model.train()
        total, count = 0.0, 0
        batches = duration_batches(lengths, budget, seed + epoch)
        bar = tqdm(
            batches,
            desc=f"aligner epoch {epoch + 1}/{config.epochs}",
            disable=not progress,
            mininterval=5,
        )
        for batch in bar:
            items = [usable[j] for j in batch]
            x, x_len = pad_sequences([feats[i].float() for i in items])
            ys = [torch.as_tensor(targets[i]) for i in items]
            loss = ctc(
                model(x).transpose(0, 1),
                torch.cat(ys),
                x_len,
                torch.tensor([len(y) for y in ys]),
            )
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            schedule.step()
            if math.isfinite(loss.item()):
                total += loss.item() * len(items)
                count += len(items)
        history.append({"epoch": epoch + 1, "ctc_loss": total / max(count, 1)})
        log.info("aligner epoch %d: CTC loss %.3f", epoch + 1, history[-1]["ctc_loss"])
    return model.eval(), history


def fits(num_frames: int, targets: Sequence[int]) -> bool:
    """Whether CTC can place ``targets`` in ``num_frames`` frames (a blank between repeats)."""
    repeats = sum(1 for a, b in zip(targets, targets[1:], strict=False) if a == b)
    return 0 < len(targets) and len(targets) + repeats <= num_frames


@dataclass(frozen=True)
class Region:
    """Frames [start, end) labelled ``phone`` (an index of ``PHONES``)."""

    phone: int
    start: int
    end: int


def spans_to_regions(
    spans: Sequence[tuple[int, int, int]], num_frames: int, lone_phone_frames: int = 5
) -> list[Region]:
    """Phone regions covering speech from CTC token spans ``(phone, start, end)`` in order.

    Blank frames between two spans are split at their midpoint (an odd frame goes to the later
    phone). The first phone extends left of its span by as many frames as it extends right of
    it, the last phone right by as many as it extends left; the frames beyond are silence and
    get no region. A phone that is alone gets ``lone_phone_frames`` on each side.
    """
    if not spans:
        return []
    cuts = [start for _, start, _ in spans[1:]]
    ends = [end for _, _, end in spans[:-1]]
    bounds = [(e + s) // 2 for e, s in zip(ends, cuts, strict=True)]
    regions = []
    for k, (phone, start, end) in enumerate(spans):
        left = bounds[k - 1] if k > 0 else None
        right = bounds[k] if k < len(bounds) else None
        regions.append([phone, start if left is None else left, end if right is None else right])
    first, last = regions[0], regions[-1]
    first_span, last_span = spans[0], spans[-1]
    if len(spans) == 1:
        first[1] = max(0, first_span[1] - lone_phone_frames)
        first[2] = min(num_frames, first_span[2] + lone_phone_frames)
    else:
        first[1] = max(0, first_span[1] - (first[2] - first_span[2]))
        last[2] = min(num_frames, last_span[2] + (last_span[1] - last[1]))
    return [Region(p, s, e) for p, s, e in regions]


def regions_to_labels(regions: Sequence[Region], num_frames: int) -> torch.Tensor:
    """(num_frames,) phone index per frame; frames outside every region are ``sil``."""
    labels = torch.full((num_frames,), SILENCE_ID, dtype=torch.int64)
    for r in regions:
        labels[r.start : r.end] = r.phone
    return labels


@torch.no_grad()
def align_utterance(
    model: PhoneRecogniser, feats: torch.Tensor, targets: Sequence[int]
) -> list[Region] | None:
    """Forced alignment of one utterance's phones; ``None`` when they cannot fit its frames."""
    if not fits(feats.shape[0], targets):
        return None
    log_probs = model(feats.float().unsqueeze(0))
    path, scores = AF.forced_align(
        log_probs, torch.as_tensor([list(targets)], dtype=torch.int32), blank=BLANK
    )
    spans = AF.merge_tokens(path[0], scores[0].exp(), blank=BLANK)
    if len(spans) != len(targets):
        raise RuntimeError(f"forced alignment gave {len(spans)} spans for {len(targets)} phones")
    return spans_to_regions([(s.token, s.start, s.end) for s in spans], feats.shape[0])


def region_starts(regions: Sequence[Region], frame_seconds: float) -> list[tuple[str, float]]:
    """(phone, start in seconds) per region, to compare with the synthesiser's timing."""
    return [(PHONES[r.phone], r.start * frame_seconds) for r in regions]
