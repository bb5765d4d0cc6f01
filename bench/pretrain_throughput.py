"""Pre-training throughput per method, in audio-seconds per second.

Every method runs the same step (forward, its pre-training loss, backward, AdamW) on the same
synthetic batch; fbank models get the batch as filterbank frames, as training feeds them. The
reference is APC at the same size, measured in the same run, so the ratios hold on a noisy
machine; wav2vec 2.0 is also compared with a plain ``transformers`` Wav2Vec2ForPreTraining step
of the same architecture (its own masking and sampling helpers), which is what sslgrid's
wrapper adds its masking, sampling and loss normalisation to.

    python bench/pretrain_throughput.py                    # tiny sizes, CPU, one thread
    python bench/pretrain_throughput.py --size paper --device cuda --batch 8 --seconds 15
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

from sslgrid.features.fbank import FbankConfig
from sslgrid.models.factory import ARCHITECTURES, build_upstream
from sslgrid.train.loop import pad_sequences

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000


def synthetic_batch(batch: int, seconds: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Chirps plus noise, lengths from 60% to 100% of ``seconds`` (so padding is exercised)."""
    g = torch.Generator().manual_seed(seed)
    wavs = []
    for i in range(batch):
        n = int(SAMPLE_RATE * seconds * (0.6 + 0.4 * (i + 1) / batch))
        t = torch.arange(n) / SAMPLE_RATE
        f0 = 120 + 80 * torch.rand(1, generator=g)
        wav = 0.3 * torch.sin(2 * torch.pi * f0 * t * (1 + 0.3 * t)) + 0.02 * torch.randn(
            n, generator=g
        )
        wavs.append(wav)
    return pad_sequences(wavs)


def model_inputs(model, wavs: torch.Tensor, lengths: torch.Tensor):
    """What training feeds the model: cached filterbanks for fbank models, else the waveform."""
    if model.input_kind == "fbank":
        feats = [
            model.prepare(model.frontend.raw(w[: int(n)]))
            for w, n in zip(wavs, lengths, strict=True)
        ]
        return pad_sequences(feats)
    return wavs, lengths


def time_steps(step: Callable[[], None], warmup: int, steps: int, device: str) -> float:
    """Median seconds per call of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sslgrid_step(model, inputs, lengths) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        loss = model.pretrain_loss(inputs, lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def transformers_reference_step(model, wavs, lengths) -> Callable[[], None]:
    """A plain Wav2Vec2ForPreTraining step with transformers' own mask and negative helpers."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import (
        _compute_mask_indices,
        _sample_negative_indices,
    )

    hf = model.model
    config = hf.config
    frames = int(hf._get_feat_extract_output_lengths(torch.tensor(wavs.shape[1])))
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-4)

    def step() -> None:
        mask = _compute_mask_indices(
            (wavs.shape[0], frames), config.mask_time_prob, config.mask_time_length, min_masks=2
        )
        negatives = _sample_negative_indices(
            (wavs.shape[0], frames), config.num_negatives, mask_time_indices=mask
        )
        out = hf(
            wavs,
            mask_time_indices=torch.tensor(mask, device=wavs.device),
            sampled_negative_indices=torch.tensor(negatives, device=wavs.device),
        )
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--size", default="tiny", help="size entry of each model in the config")
    parser.add_argument("--models", nargs="+", default=list(ARCHITECTURES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0, help="longest utterance")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = yaml.safe_load(args.config.read_text())
    fbank = FbankConfig(**config["features"])
    wavs, lengths = synthetic_batch(args.batch, args.seconds)
    audio_seconds = float(lengths.sum()) / SAMPLE_RATE

    rows = []
    for name in args.models:
        sizes = config["models"][name]["sizes"]
        if args.size not in sizes:
            print(f"{name}: no size {args.size!r} in {args.config}; skipped")
            continue
        model = build_upstream(name, sizes[args.size], fbank).to(args.device).train()
        x, x_len = model_inputs(model, wavs, lengths)
        x, x_len = x.to(args.device), x_len.to(args.device)
        seconds = time_steps(sslgrid_step(model, x, x_len), args.warmup, args.steps, args.device)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        rows.append((name, "sslgrid", params, seconds))
        if name == "wav2vec2":
            reference = transformers_reference_step(model, x, x_len)
            ref_seconds = time_steps(reference, args.warmup, args.steps, args.device)
            rows.append((name, "transformers", params, ref_seconds))

    apc = next((s for n, impl, _, s in rows if n == "apc"), None)
    print(
        f"size={args.size} device={args.device} threads={args.threads} batch={args.batch} "
        f"audio={audio_seconds:.1f}s torch={torch.__version__}"
    )
    print(
        f"{'model':<11} {'impl':<13} {'params_M':>8} {'step_s':>8} {'audio_s/s':>10} {'vs_apc':>7}"
    )
    for name, impl, params, seconds in rows:
        ratio = f"{apc / seconds:7.2f}" if apc else "      -"
        print(
            f"{name:<11} {impl:<13} {params:8.2f} {seconds:8.3f} {audio_seconds / seconds:10.1f} "
            f"{ratio}"
        )
    w2v = {impl: s for n, impl, _, s in rows if n == "wav2vec2"}
    if len(w2v) == 2:
        ratio = w2v["transformers"] / w2v["sslgrid"]
        print(f"wav2vec2 speed, sslgrid / transformers: {ratio:.2f}")


if __name__ == "__main__":
    main()
