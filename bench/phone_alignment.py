"""How close the probe's forced alignment comes to the synthesiser's own phone timing.

Dutch transcripts (any Lhotse cuts file, e.g. the embedded corpus' training split) are spoken
by libespeak-ng with a voice, rate and pitch drawn per utterance as the synthetic corpus draws
them, and the library's phoneme events give each phone's true start
(``sslgrid.probe.espeak_timing``). The probe's aligner (``sslgrid.probe.align``, the stage's
default settings unless overridden) is trained on the first utterances and aligns the held-out
rest; the report is the absolute error of every phone boundary (each phone's start but the
first) in ms, and the share within 20 and 50 ms.

    python bench/phone_alignment.py --cuts data/manifests/fillets-nl/cuts_train.jsonl.gz
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import torch
import torchaudio.functional as AF
from lhotse import CutSet

from sslgrid.config import load_config
from sslgrid.corpora.synthetic import DEFAULT_VOICES
from sslgrid.features.fbank import SAMPLE_RATE, CmvnAccumulator, FbankConfig, LogMelFbank
from sslgrid.probe.align import AlignerConfig, align_utterance, region_starts, train_recogniser
from sslgrid.probe.espeak_timing import EspeakTimer, boundary_errors
from sslgrid.probe.phones import EspeakPhonemiser, phone_ids

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", type=Path, required=True, help="Lhotse cuts with Dutch text")
    parser.add_argument("--train", type=int, default=300, help="utterances to train the aligner")
    parser.add_argument("--test", type=int, default=40, help="held-out utterances to align")
    parser.add_argument("--epochs", type=int, help="aligner epochs (default: config.yaml's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    texts = sorted({" ".join(s.text for s in c.supervisions) for c in CutSet.from_file(args.cuts)})
    texts = [t for t in texts if len(t.split()) >= 2]
    rng.shuffle(texts)
    texts = texts[: args.train + args.test]
    if len(texts) < args.train + args.test:
        raise SystemExit(f"{args.cuts}: only {len(texts)} distinct texts of two words or more")

    started = time.monotonic()
    timer, phonemiser = EspeakTimer(), EspeakPhonemiser()
    frontend = LogMelFbank(FbankConfig())
    feats, truths = [], []
    for text in texts:
        timed = timer.synthesise(text + ".", rng.choice(DEFAULT_VOICES), rng.randint(140, 200),
                                 rng.randint(30, 70))  # fmt: skip
        wav = torch.from_numpy(timed.samples.astype("float32") / 32768)
        feats.append(frontend.raw(AF.resample(wav, timed.sample_rate, SAMPLE_RATE)))
        truths.append(timed.phone_starts())
    cmvn = CmvnAccumulator(feats[0].shape[1])
    for x in feats[: args.train]:
        cmvn.update(x)
    mean, std = cmvn.stats()
    feats = [(x - mean) / std for x in feats]
    targets = [phone_ids(p) for p in phonemiser.phonemise(texts)]
    synthesised = time.monotonic()

    defaults = load_config(REPO / "config.yaml")["probe"]["aligner"]
    config = AlignerConfig(**{**defaults, **({"epochs": args.epochs} if args.epochs else {})})
    model, history = train_recogniser(feats[: args.train], targets[: args.train], config,
                                      seed=args.seed, progress=False)  # fmt: skip
    trained = time.monotonic()

    errors, signed, mismatched = [], [], 0
    frame_s = FbankConfig().frame_shift_ms / 1000
    for x, y, truth in zip(
        feats[args.train :], targets[args.train :], truths[args.train :], strict=True
    ):
        regions = align_utterance(model, x, y)
        if regions is None:
            mismatched += 1
            continue
        starts = region_starts(regions, frame_s)
        found = boundary_errors(truth, starts)
        if found is None:
            mismatched += 1
            continue
        errors += [1000 * e for e in found]
        signed += [1000 * (h - r) for (_, r), (_, h) in zip(truth[1:], starts[1:], strict=True)]
    if not errors:
        raise SystemExit("no utterance could be compared")
    print(f"aligner: {config}")
    print(f"final CTC loss per phone: {history[-1]['ctc_loss']:.3f}")
    print(f"utterances: {args.train} train, {args.test - mismatched} compared, "
          f"{mismatched} with another phone sequence or too short")  # fmt: skip
    print(f"boundaries: {len(errors)}")
    print(f"mean |error| ms: {statistics.mean(errors):.1f}; "
          f"median: {statistics.median(errors):.1f}; "
          f"mean signed (aligned - true): {statistics.mean(signed):+.1f}")  # fmt: skip
    print(f"within 20 ms: {sum(e <= 20 for e in errors) / len(errors):.1%}; "
          f"within 50 ms: {sum(e <= 50 for e in errors) / len(errors):.1%}")  # fmt: skip
    print(f"seconds: synthesise {synthesised - started:.0f}, train {trained - synthesised:.0f}, "
          f"align {time.monotonic() - trained:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
