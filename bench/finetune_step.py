"""Frozen-upstream fine-tuning step: sslgrid's batch padding against the transposed-copy
reference, in one process on the same batches.

A step of `finetune_frozen` pads the cached hidden states of its utterances ((L, T_i, D),
float16) into one (L, B, T, D) float32 batch, then runs the recogniser (weighted layer sum,
frame stacking, residual convolutions), CTC and AdamW. The reference pads (T, L, D) views into
a float16 batch, converts it and permutes it to (L, B, T, D) (a non-contiguous view that the
layer norm copies again); sslgrid copies each item once into a contiguous float32 batch. Both
arms train their own copy of the same recogniser on the same batches, so their losses must be
identical, which the benchmark checks before it prints timings.

    python bench/finetune_step.py                       # the default grid's recogniser
    python bench/finetune_step.py --layers 3 --dim 64   # a tiny Transformer's hidden states
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
import yaml

from sslgrid.asr.downstream import DownstreamConfig, build_recogniser
from sslgrid.asr.finetune import ctc_loss, pad_layers
from sslgrid.train.loop import pad_sequences

REPO = Path(__file__).resolve().parents[1]


def reference_pad(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference layout: pad (T, L, D) views in float16, convert, permute to (L, B, T, D)."""
    batch, lengths = pad_sequences([x.transpose(0, 1) for x in items])
    return batch.float().permute(2, 0, 1, 3), lengths


def make_batches(
    count: int, seconds: float, layers: int, dim: int, seed: int
) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """``count`` batches of about ``seconds`` of 10-ms frames each: utterances of 1-12 s as
    cached float16 hidden states, with 12 characters per second as targets."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        items, targets, frames = [], [], 0
        while frames < seconds * 100:
            t = int(torch.randint(100, 1200, (1,), generator=gen))
            items.append(torch.randn(layers, t, dim, generator=gen).half())
            targets.append(torch.randint(1, 40, (max(1, t * 12 // 100),), generator=gen))
            frames += t
        batches.append((items, targets))
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--layers", type=int, default=4, help="hidden states per utterance")
    parser.add_argument("--dim", type=int, default=128, help="width of each hidden state")
    parser.add_argument("--batch-seconds", type=float, default=15.0)
    parser.add_argument("--batches", type=int, default=8, help="distinct batches, cycled")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per arm and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per arm")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = yaml.safe_load(args.config.read_text())["finetune"]["downstream"]
    config = DownstreamConfig(**settings)
    batches = make_batches(args.batches, args.batch_seconds, args.layers, args.dim, seed=0)
    torch.manual_seed(0)
    base = build_recogniser(args.dim, args.layers, 40, config)
    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)
    arms = {}
    for name, pad in (("reference", reference_pad), ("sslgrid", pad_layers)):
        model = copy.deepcopy(base)
        arms[name] = (pad, model, torch.optim.AdamW(model.parameters(), 5e-3))

    def step(name: str, i: int) -> float:
        pad, model, optimizer = arms[name]
        items, targets = batches[i % len(batches)]
        torch.manual_seed(i)  # the same dropout masks in both arms
        x, lengths = pad(items)
        log_probs, out_len = model(x, lengths)
        loss = ctc_loss(ctc, log_probs, out_len, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    # Same start, same batches, same masks: the two arms' losses must not differ at all.
    for i in range(len(batches)):
        losses = {name: step(name, i) for name in arms}
        if losses["reference"] != losses["sslgrid"]:
            raise SystemExit(f"step {i}: losses differ: {losses}")
    print(f"losses identical over {len(batches)} steps")
    times: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(args.rounds):
        for name in arms:
            start = time.perf_counter()
            for i in range(args.steps):
                step(name, i)
            times[name].append((time.perf_counter() - start) / args.steps)
    audio = statistics.mean(
        sum(x.shape[1] for x in items) / 100 for items, _ in batches
    )  # seconds per batch
    print(
        f"recogniser {config.kind} {config.num_layers}x{config.hidden_size}, "
        f"{args.layers} hidden states of {args.dim}, {audio:.1f} s per batch, "
        f"{args.threads} thread(s)"
    )
    print(f"{'arm':10s} {'step ms':>8s} {'audio-s/s':>10s} {'ratio':>6s}")
    ref = min(times["reference"])
    for name, t in times.items():
        best = min(t)
        print(f"{name:10s} {1000 * best:8.1f} {audio / best:10.0f} {ref / best:6.2f}")
    print(f"fine-tuning step speed, sslgrid / reference: {ref / min(times['sslgrid']):.2f}")


if __name__ == "__main__":
    main()
