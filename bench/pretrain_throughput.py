"""Pre-training throughput in audio-seconds per second, against references measured in the same run.

Two tables, one process, one synthetic batch:

1. **methods**: every method's training step (forward, pre-training loss, backward, AdamW) as
   sslgrid runs it on this device (on CUDA: bf16 autocast, fused AdamW, wav2vec 2.0 through
   :class:`~sslgrid.models.wav2vec2_fast.FastPretrainer`), with ratios against APC.
2. **wav2vec 2.0**: the same architecture as ``transformers``' Wav2Vec2ForPreTraining step (its
   own host-side mask and distractor helpers, stock AdamW) -- fp32 with eager attention, bf16
   autocast with SDPA attention (the reference of the ratio column), optionally compiled -- and
   sslgrid's step, eager and compiled. All of them start from the same weights and compute the
   same loss (per masked frame). Columns: step time, audio-s/s, peak device memory, the ratio
   to the reference and the fraction of the device's measured bf16 matrix-product rate that
   the step's matrix FLOPs reach.

``--curve-steps N`` also trains the reference and sslgrid's compiled step for N updates from the
same weights on the same batches (``--curve-data``: an .npz of equal-length int16 segments at 16
kHz, else the synthetic batch), plus the reference again with other random draws, and prints
the loss curves: sslgrid's should differ from the reference's no more than the reference's own
reruns do. ``--profile`` prints the CUDA kernels of a few compiled steps by time.

    python bench/pretrain_throughput.py                    # tiny sizes, CPU, one thread
    python bench/pretrain_throughput.py --size paper --device cuda --batch 8 --seconds 15 \\
        --compile --curve-steps 200 --profile
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import yaml

from sslgrid.features.fbank import FbankConfig
from sslgrid.models.factory import ARCHITECTURES, build_upstream
from sslgrid.models.wav2vec2 import Wav2Vec2
from sslgrid.models.wav2vec2_fast import flops_per_audio_second
from sslgrid.train.loop import pad_sequences

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000
# Per the reference study's table: one audio-second of wav2vec 2.0 BASE training, as quoted.
BASE_GFLOP_QUOTED = 50.6


def synthetic_batch(
    batch: int, seconds: float, ragged: bool = True, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chirps plus noise; lengths from 60% to 100% of ``seconds`` if ``ragged``."""
    g = torch.Generator().manual_seed(seed)
    wavs = []
    for i in range(batch):
        share = 0.6 + 0.4 * (i + 1) / batch if ragged else 1.0
        n = int(SAMPLE_RATE * seconds * share)
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


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_steps(step: Callable[[], object], warmup: int, steps: int, device: str) -> float:
    """Median seconds per call of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def autocast(device: str, precision: str):
    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return nullcontext()


def adamw(params, device: str, fused: bool, lr: float = 1e-4) -> torch.optim.Optimizer:
    if fused and device == "cuda":
        return torch.optim.AdamW(params, lr=lr, fused=True)
    return torch.optim.AdamW(params, lr=lr)


def sslgrid_step(model, inputs, lengths, device: str, precision: str) -> Callable[[], float]:
    """sslgrid's training step for ``model`` (its ``pretrain_loss``)."""
    opt = adamw(model.parameters(), device, fused=True)

    def step() -> torch.Tensor:
        with autocast(device, precision):
            loss = model.pretrain_loss(inputs, lengths)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def reference_step(
    hf, wavs, lengths, device: str, precision: str, rng: np.random.Generator | None = None
) -> Callable[[], torch.Tensor]:
    """A plain Wav2Vec2ForPreTraining step: transformers' mask and distractor helpers on the
    host, stock AdamW; the loss divided by the number of masked frames, as sslgrid's."""
    from transformers.models.wav2vec2.modeling_wav2vec2 import (
        _compute_mask_indices,
        _sample_negative_indices,
    )

    config = hf.config
    frames = int(hf._get_feat_extract_output_lengths(torch.tensor(wavs.shape[1])))
    opt = adamw(hf.parameters(), device, fused=False)
    attention = None
    if int(lengths.min()) < wavs.shape[1]:
        attention = (torch.arange(wavs.shape[1])[None, :] < lengths[:, None]).long().to(device)

    def step() -> torch.Tensor:
        if rng is not None:
            np.random.seed(int(rng.integers(2**31)))
        frame_mask = None
        if attention is not None:
            frame_mask = hf._get_feature_vector_attention_mask(frames, attention).cpu()
        mask = _compute_mask_indices(
            (wavs.shape[0], frames),
            config.mask_time_prob,
            config.mask_time_length,
            attention_mask=frame_mask,
            min_masks=2,
        )
        negatives = _sample_negative_indices(
            (wavs.shape[0], frames), config.num_negatives, mask_time_indices=mask
        )
        mask_t = torch.tensor(mask, device=device)
        with autocast(device, precision):
            out = hf(
                wavs,
                attention_mask=attention,
                mask_time_indices=mask_t,
                sampled_negative_indices=torch.tensor(negatives, device=device),
            )
        loss = out.loss / mask_t.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach()

    return step


def matmul_peak(device: str) -> float | None:
    """Measured bf16 matrix-product rate (FLOP/s) of an 8192^3 product, CUDA only."""
    if device != "cuda":
        return None
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    seconds = time_steps(lambda: a @ b, 3, 10, device)
    return 2 * n**3 / seconds


def free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")


def methods_table(args, config, fbank, wavs, lengths, audio_seconds: float) -> None:
    rows = []
    for name in args.models:
        sizes = config["models"][name]["sizes"]
        if args.size not in sizes:
            print(f"{name}: no size {args.size!r} in {args.config}; skipped")
            continue
        torch.manual_seed(0)
        model = build_upstream(name, sizes[args.size], fbank).train()
        if isinstance(model, Wav2Vec2):
            model.use_fast_pretraining(compile=False)
        x, x_len = model_inputs(model, wavs, lengths)  # filterbanks on the host, as cached
        model.to(args.device)
        x = x.to(args.device)
        x_len = x_len if isinstance(model, Wav2Vec2) else x_len.to(args.device)
        free(args.device)
        try:
            step = sslgrid_step(model, x, x_len, args.device, args.precision)
            seconds = time_steps(step, args.warmup, args.steps, args.device)
        except torch.OutOfMemoryError:
            print(f"{name}: out of device memory at this batch; skipped")
            continue
        params = sum(p.numel() for p in model.parameters()) / 1e6
        rows.append((name, params, seconds, peak_gib(args.device)))
        del model, step, x
        free(args.device)
    apc = next((s for n, _, s, _ in rows if n == "apc"), None)
    print(f"\nmethods (sslgrid step, {args.precision}, size {args.size})")
    print(
        f"{'model':<11} {'impl':<13} {'params_M':>8} {'step_s':>8} {'audio_s/s':>10} {'vs_apc':>7}"
        f" {'peak_GiB':>8}"
    )
    for name, params, seconds, peak in rows:
        ratio = f"{apc / seconds:7.2f}" if apc else "      -"
        print(
            f"{name:<11} {'sslgrid':<13} {params:8.2f} {seconds:8.3f} "
            f"{audio_seconds / seconds:10.1f} {ratio} {peak:8.2f}"
        )


def wav2vec2_table(args, config, fbank, wavs, lengths, audio_seconds: float) -> dict:
    """Reference and sslgrid variants of wav2vec 2.0's step; returns the results by name."""
    sizes = config["models"]["wav2vec2"]["sizes"]
    torch.manual_seed(0)
    base = build_upstream("wav2vec2", sizes[args.size], fbank)
    settings = base.settings
    initial = copy.deepcopy(base.state_dict())
    gflop = flops_per_audio_second(settings, seconds=args.seconds) / 1e9
    peak = matmul_peak(args.device)
    x = wavs.to(args.device)

    def reference(attn: str, precision: str, compiled: bool) -> Callable[[], torch.Tensor]:
        up = Wav2Vec2(settings)
        up.load_state_dict(initial)
        up.model.set_attn_implementation(attn)
        up.to(args.device).train()
        up.model.set_gumbel_temperature(up.gumbel_temperature)
        # The compiled wrapper forwards config and helper methods to the model.
        hf = torch.compile(up.model) if compiled else up.model
        return reference_step(hf, x, lengths, args.device, precision)

    def ours(
        compiled: bool, convs: str = "gemm", pos_conv: str = "auto"
    ) -> Callable[[], torch.Tensor]:
        up = Wav2Vec2(settings)
        up.load_state_dict(initial)
        up.to(args.device).train()
        up.use_fast_pretraining(compile=compiled, convs=convs, pos_conv=pos_conv)
        step = sslgrid_step(up, x, lengths, args.device, args.precision)
        # Which position convolution "auto" settled on, known after the first step.
        step.pos_conv = lambda: up._fast_pretrainer.pos_conv
        return step

    variants: list[tuple[str, Callable[[], Callable[[], torch.Tensor]]]] = [
        ("transformers fp32 eager-attn", lambda: reference("eager", "fp32", False)),
        ("transformers bf16 sdpa", lambda: reference("sdpa", args.precision, False)),
        ("sslgrid bf16", lambda: ours(False)),
    ]
    if args.compile:
        variants.append(("sslgrid bf16 compiled", lambda: ours(True)))
    for pos_conv in args.pos_convs:
        variants.append(
            (
                f"sslgrid bf16 compiled pos-conv={pos_conv}",
                lambda pos_conv=pos_conv: ours(args.compile, "gemm", pos_conv),
            )
        )
    if args.cudnn_convs:
        variants.append(("sslgrid bf16 compiled cudnn-convs", lambda: ours(args.compile, "cudnn")))
    if args.compile_reference:
        # Last: compiling transformers' model takes the longest.
        variants.append(
            ("transformers bf16 sdpa compiled", lambda: reference("sdpa", args.precision, True))
        )
    if args.precision != "bf16":
        variants = [(n.replace("bf16", args.precision), v) for n, v in variants]
    reference_name = variants[1][0]
    results: dict[str, dict] = {}
    for name, make in variants:
        free(args.device)
        started = time.perf_counter()
        try:
            step = make()
            warm_loss = float(step())  # first call: compiles, if compiled
            first = time.perf_counter() - started
            seconds = time_steps(step, args.warmup, args.steps, args.device)
        except torch.OutOfMemoryError:
            print(f"{name}: out of device memory; skipped", flush=True)
            continue
        except Exception as error:  # one broken variant keeps the others' numbers
            print(f"{name}: failed ({type(error).__name__}: {error}); skipped", flush=True)
            traceback.print_exc()
            continue
        results[name] = {
            "step_s": seconds,
            "audio_s_per_s": audio_seconds / seconds,
            "peak_gib": peak_gib(args.device),
            "first_step_s": first,
            "first_loss": warm_loss,
        }
        chosen = ""
        if hasattr(step, "pos_conv"):
            results[name]["pos_conv"] = step.pos_conv()
            chosen = f", position convolution {step.pos_conv()}"
        print(
            f"  {name}: {seconds * 1000:.1f} ms/step (first step {first:.1f} s{chosen})",
            flush=True,
        )
        del step
        free(args.device)

    ref = results.get(reference_name)
    print(
        f"\nwav2vec 2.0 {args.size}: {sum(p.numel() for p in base.parameters()) / 1e6:.1f} M "
        f"parameters, batch {len(lengths)} x {args.seconds:g} s, {gflop:.1f} GFLOP per audio-second"
        + (f", bf16 matrix peak measured {peak / 1e12:.0f} TFLOP/s" if peak else "")
    )
    print(
        f"{'implementation':<34} {'step_ms':>8} {'audio_s/s':>10} {'peak_GiB':>8} "
        f"{'vs_ref':>7} {'of_peak':>7}"
    )
    for name, r in results.items():
        ratio = ref["step_s"] / r["step_s"] if ref else float("nan")
        share = r["audio_s_per_s"] * gflop * 1e9 / peak if peak else float("nan")
        r["vs_reference"] = ratio
        r["of_peak"] = share
        print(
            f"{name:<34} {r['step_s'] * 1000:8.1f} {r['audio_s_per_s']:10.1f} "
            f"{r['peak_gib']:8.2f} {ratio:7.2f} {share:7.1%}"
        )
    best = max(
        (r for n, r in results.items() if n.startswith("sslgrid")),
        key=lambda r: r["audio_s_per_s"],
        default=None,
    )
    if best and ref:
        print(f"wav2vec2 speed, sslgrid / transformers: {best['vs_reference']:.2f}")
    return {"results": results, "gflop_per_audio_s": gflop, "peak_flops": peak}


def curve_batches(args, wavs, lengths) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if args.curve_data is None:
        return [(wavs, lengths)]
    segments = np.load(args.curve_data)["segments"]
    batches = []
    for i in range(0, len(segments) - args.batch + 1, args.batch):
        chunk = torch.from_numpy(segments[i : i + args.batch].astype(np.float32) / 32768.0)
        batches.append((chunk, torch.full((args.batch,), chunk.shape[1])))
    return batches


def loss_curves(args, config, fbank, wavs, lengths) -> dict:
    """Reference, reference rerun (other draws) and sslgrid compiled, same weights and data."""
    sizes = config["models"]["wav2vec2"]["sizes"]
    torch.manual_seed(0)
    initial = copy.deepcopy(build_upstream("wav2vec2", sizes[args.size], fbank).state_dict())
    settings = build_upstream("wav2vec2", sizes[args.size], fbank).settings
    batches = [
        (w.to(args.device), n.to(args.device)) for w, n in curve_batches(args, wavs, lengths)
    ]
    curves: dict[str, list[float]] = {}

    def train(name: str, fast: bool, seed: int) -> None:
        torch.manual_seed(seed)
        up = Wav2Vec2(settings)
        up.load_state_dict(initial)
        up.model.set_attn_implementation("sdpa")
        up.to(args.device).train()
        opt = torch.optim.AdamW(
            up.parameters(),
            lr=args.curve_lr,
            betas=(0.9, 0.98),
            eps=1e-6,
            weight_decay=0.01,
            fused=args.device == "cuda",
        )
        warm = max(1, args.curve_steps // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
        if fast:
            up.use_fast_pretraining(compile=args.compile)
        losses = []
        started = time.perf_counter()
        for step in range(args.curve_steps):
            x, n = batches[step % len(batches)]
            with autocast(args.device, args.precision):
                loss = up.pretrain_loss(x, n)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(up.parameters(), 10.0)
            opt.step()
            sched.step()
            losses.append(loss.detach())
        curves[name] = [float(v) for v in torch.stack(losses).cpu()]
        print(f"  curve {name}: {time.perf_counter() - started:.1f} s", flush=True)
        del up, opt
        free(args.device)

    train("reference", fast=False, seed=1)
    train("reference-rerun", fast=False, seed=2)
    if args.compile and args.curve_eager:
        args.compile = False
        train("sslgrid-eager", fast=True, seed=1)
        args.compile = True
    try:
        train("sslgrid", fast=True, seed=1)
    except Exception as error:
        if not args.compile:
            raise
        print(f"compiled sslgrid failed ({type(error).__name__}: {error}); eager instead")
        traceback.print_exc()
        args.compile = False
        train("sslgrid", fast=True, seed=1)
    window = max(1, args.curve_steps // 10)
    print(f"\nloss per masked frame, mean over windows of {window} updates")
    names = [n for n in ("reference", "reference-rerun", "sslgrid", "sslgrid-eager") if n in curves]
    print(f"{'updates':>9} " + " ".join(f"{n:>15}" for n in names))

    def win(values: list[float], i: int) -> float:
        return statistics.fmean(values[i : i + window])

    for i in range(0, args.curve_steps, window):
        print(
            f"{i + 1:>4}-{i + window:<4} " + " ".join(f"{win(curves[n], i):15.4f}" for n in names)
        )
    half = args.curve_steps // 2

    def gap(a: str, b: str) -> float:
        return statistics.fmean(
            abs(x - y) for x, y in zip(curves[a][half:], curves[b][half:], strict=True)
        )

    gaps = {n: gap("reference", n) for n in names[1:]}
    half_means = {n: statistics.fmean(curves[n][half:]) for n in names}
    print(
        "second half, mean |difference| per update from the reference: "
        + ", ".join(f"{n} {g:.4f}" for n, g in gaps.items())
        + "; mean loss: "
        + ", ".join(f"{n} {m:.4f}" for n, m in half_means.items())
    )
    return {"curves": curves, "gaps": gaps, "second_half_means": half_means}


def profile(args, config, fbank, wavs, lengths) -> str:
    """Kernel time table of a few compiled sslgrid steps."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    sizes = config["models"]["wav2vec2"]["sizes"]
    torch.manual_seed(0)
    up = build_upstream("wav2vec2", sizes[args.size], fbank).to(args.device).train()
    up.use_fast_pretraining(compile=args.compile)
    step = sslgrid_step(up, wavs.to(args.device), lengths, args.device, args.precision)
    for _ in range(3):
        step()
    sync(args.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(3):
            step()
        sync(args.device)
    key = "cuda_time_total" if args.device == "cuda" else "cpu_time_total"
    table = prof.key_averages().table(
        sort_by=key, row_limit=args.profile_rows, max_name_column_width=70
    )
    print(f"\nprofile of 3 sslgrid steps, by {key}")
    print(table)
    del up, step
    free(args.device)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--size", default="tiny", help="size entry of each model in the config")
    parser.add_argument("--models", nargs="+", default=list(ARCHITECTURES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0, help="longest utterance")
    parser.add_argument(
        "--ragged",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="lengths from 60%% to 100%% of --seconds (default: on CPU only)",
    )
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision",
        choices=["bf16", "fp32"],
        default=None,
        help="default: bf16 on CUDA, fp32 on CPU",
    )
    parser.add_argument("--compile", action="store_true", help="also time sslgrid compiled")
    parser.add_argument(
        "--compile-reference", action="store_true", help="also time transformers compiled"
    )
    parser.add_argument(
        "--cudnn-convs", action="store_true", help="also time sslgrid with cuDNN convolutions"
    )
    parser.add_argument(
        "--pos-convs",
        nargs="*",
        default=[],
        choices=["cudnn", "gemm", "fft"],
        help="also time sslgrid with the position convolution fixed to conv1d (cudnn), batched "
        "matrix products (gemm) or the FFT (fft); the other rows use the default, auto (on "
        "CUDA the fastest of the three, timed on the first step; conv1d elsewhere)",
    )
    parser.add_argument(
        "--cudnn-benchmark", action="store_true", help="let cuDNN time its algorithms (all rows)"
    )
    parser.add_argument(
        "--curve-eager", action="store_true", help="also train sslgrid uncompiled in the curves"
    )
    parser.add_argument("--no-methods-table", action="store_true")
    parser.add_argument("--no-wav2vec2-table", action="store_true")
    parser.add_argument("--curve-steps", type=int, default=0)
    parser.add_argument("--curve-data", type=Path, default=None)
    parser.add_argument("--curve-lr", type=float, default=5e-4)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-rows", type=int, default=25)
    parser.add_argument("--json", type=Path, default=None, help="write all numbers here")
    args = parser.parse_args()
    args.precision = args.precision or ("bf16" if args.device == "cuda" else "fp32")
    ragged = args.device != "cuda" if args.ragged is None else args.ragged
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    config = yaml.safe_load(args.config.read_text())
    fbank = FbankConfig(**config["features"])
    wavs, lengths = synthetic_batch(args.batch, args.seconds, ragged=ragged)
    audio_seconds = float(lengths.sum()) / SAMPLE_RATE
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(
        f"size={args.size} device={args.device} ({device_name}) threads={args.threads} "
        f"batch={args.batch} audio={audio_seconds:.1f}s precision={args.precision} "
        f"cudnn.benchmark={args.cudnn_benchmark} torch={torch.__version__}",
        flush=True,
    )
    report: dict = {"argv": sys.argv[1:], "device": device_name, "torch": torch.__version__}
    sections: list[tuple[str, Callable[[], object]]] = []
    if not args.no_methods_table:
        sections.append(
            ("methods", lambda: methods_table(args, config, fbank, wavs, lengths, audio_seconds))
        )
    if "wav2vec2" in args.models and not args.no_wav2vec2_table:
        sections.append(
            ("wav2vec2", lambda: wav2vec2_table(args, config, fbank, wavs, lengths, audio_seconds))
        )
    if args.profile:
        sections.append(("profile", lambda: profile(args, config, fbank, wavs, lengths)))
    if args.curve_steps:
        sections.append(("curves", lambda: loss_curves(args, config, fbank, wavs, lengths)))
    failed = False
    for name, run in sections:
        try:
            report[name] = run()
        except Exception as error:  # report and go on: one broken section keeps the others
            failed = True
            print(f"section {name} failed: {type(error).__name__}: {error}", flush=True)
            traceback.print_exc()
        if args.json:
            args.json.write_text(json.dumps(report, indent=1, default=str))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
