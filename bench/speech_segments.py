"""Equal-length segments of real speech for ``pretrain_throughput.py --curve-data``.

Concatenates the training cuts of a prepared corpus (in manifest order, 0.2 s of silence
between clips) and cuts the stream into ``--count`` segments of ``--seconds`` each, stored as
int16 at 16 kHz in an .npz (key ``segments``), so a GPU machine without the corpus can train on
the same speech.

    python bench/speech_segments.py data/manifests/fillets-nl/cuts_train.jsonl.gz segments.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from lhotse import CutSet

SAMPLE_RATE = 16000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cuts", type=Path, help="a Lhotse cut manifest (.jsonl.gz)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--count", type=int, default=40)
    args = parser.parse_args()
    need = int(args.seconds * SAMPLE_RATE) * args.count
    gap = np.zeros(int(0.2 * SAMPLE_RATE), dtype=np.float32)
    pieces, total = [], 0
    for cut in CutSet.from_file(args.cuts):
        if cut.sampling_rate != SAMPLE_RATE:
            raise SystemExit(f"{args.cuts}: cut {cut.id} is at {cut.sampling_rate} Hz, need 16000")
        audio = cut.load_audio()[0]
        pieces += [audio, gap]
        total += len(audio) + len(gap)
        if total >= need:
            break
    if total < need:
        raise SystemExit(
            f"{args.cuts}: {total / SAMPLE_RATE:.0f} s of audio, {need / SAMPLE_RATE:.0f} s needed"
        )
    stream = np.concatenate(pieces)[:need]
    segments = np.clip(stream * 32768.0, -32768, 32767).astype(np.int16).reshape(args.count, -1)
    np.savez_compressed(args.out, segments=segments)
    print(f"{args.out}: {args.count} segments of {args.seconds:g} s")


if __name__ == "__main__":
    main()
