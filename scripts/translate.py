"""translate stage: beam-search output of an aligned speech LLM on one test set, for one task.

Writes JSON lines ``{"id": <supervision id>, "hyp": <text>}`` in cut order, the format the
scoring scripts read.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch
from lhotse import CutSet

from sslgrid.asr.finetune import encode_frozen
from sslgrid.features.store import load_cache
from sslgrid.logs import setup_logging
from sslgrid.metrics.table import write_text_atomic
from sslgrid.st.cells import TASKS
from sslgrid.st.decode import generate_texts, load_speech_llm
from sslgrid.train.distributed import pick_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="align_llm checkpoint")
    parser.add_argument("--features", type=Path, required=True, help="the test set's input cache")
    parser.add_argument("--cuts", type=Path, required=True, help="the test set's cuts")
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="utterances per beam search")
    parser.add_argument("--llm-dir", type=Path, help="the LM directory, if moved since training")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA if any"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    setup_logging(args.log)
    torch.set_num_threads(args.threads)
    upstream, model, config = load_speech_llm(args.model, args.llm_dir)
    device = pick_device(args.device, 0)
    upstream.to(device)
    model.to(device)
    if args.task not in model.prompt_ids:
        parser.error(
            f"{args.model} was not trained for task {args.task!r}: {sorted(model.prompt_ids)}"
        )
    cache = load_cache(args.features)
    supervision = {cut.id: cut.supervisions[0].id for cut in CutSet.from_file(args.cuts)}
    missing = [i for i in cache.ids if i not in supervision]
    if missing:
        raise KeyError(
            f"{args.cuts}: no cut for cached utterances {missing[:5]} of {args.features}"
        )
    started = time.monotonic()
    encoded = encode_frozen(
        upstream, cache, config["training"]["batch_seconds"], 1, not args.no_progress
    )
    hyps = generate_texts(
        model,
        encoded,
        args.task,
        args.beam_size,
        args.max_new_tokens,
        args.batch_size,
        not args.no_progress,
    )
    lines = [
        json.dumps({"id": supervision[i], "hyp": h}, ensure_ascii=False)
        for i, h in zip(cache.ids, hyps, strict=True)
    ]
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    logging.info(
        "%s: %d utterances (%s, beam %d) in %.0f s -> %s",
        args.task,
        len(hyps),
        args.features,
        args.beam_size,
        time.monotonic() - started,
        args.out,
    )


if __name__ == "__main__":
    main()
