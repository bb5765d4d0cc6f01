"""decode stage: transcripts of one test set by one fine-tuned recogniser.

``greedy`` takes the best CTC path. ``lm`` runs a beam search with the word n-gram of the
``lm`` stage (lexicon: its training vocabulary); its LM weight and word insertion score are
chosen on a dev set (never the test set) from the grid in ``decode.lm`` of the config, and
written to ``lm_weights.json`` beside the hypotheses.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch
from lhotse import CutSet

from sslgrid.asr.finetune import (
    FrozenRecogniser,
    emissions,
    encode_frozen,
    frames_per_second,
    load_recogniser,
    transcribe,
)
from sslgrid.features.store import FeatureCache, load_cache
from sslgrid.logs import setup_logging


def encode(
    recogniser: FrozenRecogniser, path: Path, batch_seconds: float
) -> tuple[FeatureCache, list[torch.Tensor]]:
    """The input cache at ``path`` and the frozen upstream's hidden states of each entry."""
    cache = load_cache(path)
    if cache.kind != recogniser.upstream.input_kind:
        raise ValueError(
            f"{path} holds {cache.kind!r} inputs but the recogniser's upstream reads "
            f"{recogniser.upstream.input_kind!r}"
        )
    repeat = recogniser.downstream.config.frame_repeat
    return cache, encode_frozen(recogniser.upstream, cache, batch_seconds, repeat)


def lm_transcripts(
    recogniser: FrozenRecogniser, args: argparse.Namespace, encoded, batch_frames: int
) -> tuple[list[str], dict]:
    """Beam search with the n-gram LM, its weights tuned on the dev set."""
    from sslgrid.asr.beam import BeamSearchDecoder, WeightGrid, tune_lm_weights
    from sslgrid.config import load_config
    from sslgrid.lm.ngram import read_vocabulary

    settings = load_config(args.config)["decode"]["lm"]
    decoder = BeamSearchDecoder(
        recogniser.tokenizer.symbols,
        args.lm_dir / "lm.bin",
        read_vocabulary(args.lm_dir / "words.txt"),
        beam_size=settings["beam_size"],
    )
    dev_cache, dev_encoded = encode(recogniser, args.dev_features, args.batch_seconds)
    texts = {
        cut.id: " ".join(s.text for s in cut.supervisions)
        for cut in CutSet.from_file(args.dev_cuts)
    }
    dev = emissions(recogniser.downstream, dev_encoded, batch_frames)
    refs = [texts.get(dev_cache.ids[i], "") for batch, _, _ in dev for i in batch]
    grid = WeightGrid(tuple(settings["lm_weights"]), tuple(settings["word_scores"]))
    best = tune_lm_weights(decoder, [lp for _, lp, _ in dev], [n for _, _, n in dev], refs, grid)
    logging.info(
        "tuned on %s: lm_weight %g, word_score %g (dev WER %.4f)",
        args.dev_cuts,
        best.lm_weight,
        best.word_score,
        best.dev_wer,
    )
    decoder = decoder.with_weights(best.lm_weight, best.word_score)
    hyps = [""] * len(encoded)
    for batch, log_probs, lengths in emissions(recogniser.downstream, encoded, batch_frames):
        for i, hyp in zip(batch, decoder.decode(log_probs, lengths), strict=True):
            hyps[i] = hyp
    return hyps, {**best._asdict(), "tuned_on": str(args.dev_cuts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="fine-tuning checkpoint")
    parser.add_argument("--features", type=Path, required=True, help="input cache of the test set")
    parser.add_argument("--cuts", type=Path, required=True, help="Lhotse cuts of the test set")
    parser.add_argument("--decoder", default="greedy", choices=["greedy", "lm"])
    parser.add_argument("--config", type=Path, help="sslgrid config (decode.lm settings)")
    parser.add_argument("--lm-dir", type=Path, help="the lm stage's folder (lm.bin, words.txt)")
    parser.add_argument("--dev-features", type=Path, help="input cache of the tuning set")
    parser.add_argument("--dev-cuts", type=Path, help="Lhotse cuts of the tuning set")
    parser.add_argument("--batch-seconds", type=float, default=120.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="hypotheses, one JSON per line")
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    setup_logging(args.log)
    torch.set_num_threads(args.threads)
    if args.decoder == "lm":
        needed = ["config", "lm_dir", "dev_features", "dev_cuts"]
        missing = [f"--{n.replace('_', '-')}" for n in needed if getattr(args, n) is None]
        if missing:
            parser.error(f"--decoder lm needs {' '.join(missing)}")

    recogniser = load_recogniser(args.model)
    cache, encoded = encode(recogniser, args.features, args.batch_seconds)
    repeat = recogniser.downstream.config.frame_repeat
    batch_frames = int(args.batch_seconds * frames_per_second(recogniser.upstream, repeat))
    if args.decoder == "lm":
        hyps, weights = lm_transcripts(recogniser, args, encoded, batch_frames)
        (args.out.parent / "lm_weights.json").parent.mkdir(parents=True, exist_ok=True)
        (args.out.parent / "lm_weights.json").write_text(json.dumps(weights, indent=1) + "\n")
    else:
        hyps = transcribe(recogniser.downstream, recogniser.tokenizer, encoded, batch_frames)
    sup_id = {
        cut.id: cut.supervisions[0].id for cut in CutSet.from_file(args.cuts) if cut.supervisions
    }
    # Clips the features stage left out as bad input still count: as empty hypotheses
    # (all deletions), so a test set never silently shrinks.
    dropped = [cut_id for cut_id in sup_id if cut_id not in set(cache.ids)]
    if dropped:
        logging.warning(
            "%d test clips were left out by the features stage (see its log and the data "
            "report); they are scored as empty hypotheses",
            len(dropped),
        )
    hyps = hyps + [""] * len(dropped)
    ids = [*cache.ids, *dropped]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for cut_id, hyp in zip(ids, hyps, strict=True):
            if cut_id in sup_id:
                fh.write(json.dumps({"id": sup_id[cut_id], "hyp": hyp}, ensure_ascii=False) + "\n")
    os.replace(tmp, args.out)
    logging.info("%d hypotheses written to %s", len(hyps), args.out)


if __name__ == "__main__":
    main()
