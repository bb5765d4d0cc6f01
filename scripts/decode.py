"""decode stage: greedy CTC transcripts of one test set."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch
from lhotse import CutSet

from sslgrid.asr.finetune import (
    encode_frozen,
    frames_per_second,
    load_recogniser,
    transcribe,
)
from sslgrid.features.store import load_cache
from sslgrid.logs import setup_logging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="fine-tuning checkpoint")
    parser.add_argument(
        "--features", type=Path, required=True, help="feature cache of the test set"
    )
    parser.add_argument("--cuts", type=Path, required=True, help="Lhotse cuts of the test set")
    parser.add_argument("--decoder", default="greedy", choices=["greedy"])
    parser.add_argument("--batch-seconds", type=float, default=120.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="hypotheses, one JSON per line")
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    setup_logging(args.log)
    torch.set_num_threads(args.threads)

    recogniser = load_recogniser(args.model)
    cache = load_cache(args.features)
    if cache.kind != recogniser.upstream.input_kind:
        raise ValueError(
            f"{args.features} holds {cache.kind!r} inputs but the upstream of {args.model} "
            f"reads {recogniser.upstream.input_kind!r}"
        )
    repeat = recogniser.downstream.config.frame_repeat
    encoded = encode_frozen(recogniser.upstream, cache, args.batch_seconds, repeat)
    batch_frames = int(args.batch_seconds * frames_per_second(recogniser.upstream, repeat))
    hyps = transcribe(recogniser.downstream, recogniser.tokenizer, encoded, batch_frames)
    sup_id = {
        cut.id: cut.supervisions[0].id for cut in CutSet.from_file(args.cuts) if cut.supervisions
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for cut_id, hyp in zip(cache.ids, hyps, strict=True):
            if cut_id in sup_id:
                fh.write(json.dumps({"id": sup_id[cut_id], "hyp": hyp}, ensure_ascii=False) + "\n")
    os.replace(tmp, args.out)
    logging.info("%d hypotheses written to %s", len(hyps), args.out)


if __name__ == "__main__":
    main()
