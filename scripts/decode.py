"""decode stage: transcripts of one test set by one fine-tuned recogniser, with every decoder.

``greedy`` takes the best CTC path. ``lm`` runs a beam search with the word n-gram of the
``lm`` stage (lexicon: its training vocabulary); its LM weight and word insertion score are
chosen on a dev set (never the test set) from the grid in ``decode.lm`` of the config, and
written to ``lm_weights.json`` beside the hypotheses.

The decoders share one run: the model is loaded and the test set's CTC emissions computed
once, then each decoder reads them (``--decoder greedy lm --out dir/{decoder}/hyps.jsonl``).
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
    greedy_transcripts,
    load_recogniser,
)
from sslgrid.features.store import FeatureCache, load_cache
from sslgrid.logs import setup_logging

DECODERS = ("greedy", "lm")
PLACEHOLDER = "{decoder}"
# Batches of (utterance indices, (B, T, V) CTC log-probabilities, frame counts).
Emissions = list[tuple[list[int], torch.Tensor, torch.Tensor]]


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
    recogniser: FrozenRecogniser,
    args: argparse.Namespace,
    test: Emissions,
    n_test: int,
    batch_frames: int,
) -> tuple[list[str], dict]:
    """Beam search over the ``n_test`` test utterances with the n-gram LM, its weights tuned
    on the dev set."""
    from sslgrid.asr.beam import BeamSearchDecoder, WeightGrid, tune_lm_weights
    from sslgrid.config import load_config
    from sslgrid.lm.ngram import read_vocabulary

    settings = load_config(args.config)["decode"]["lm"]
    decoder = BeamSearchDecoder(
        recogniser.tokenizer.symbols,
        args.lm_dir / "lm.bin",
        read_vocabulary(args.lm_dir / "words.txt"),
        beam_size=settings["beam_size"],
        beam_size_token=settings.get("beam_size_token"),
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
    hyps = [""] * n_test
    for batch, log_probs, lengths in test:
        for i, hyp in zip(batch, decoder.decode(log_probs, lengths), strict=True):
            hyps[i] = hyp
    return hyps, {**best._asdict(), "tuned_on": str(args.dev_cuts)}


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: a rerun never finds half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def out_path(template: str, decoder: str) -> Path:
    """Where ``decoder``'s hypotheses go: ``--out`` with ``{decoder}`` filled in."""
    return Path(template.replace(PLACEHOLDER, decoder))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments, refusing combinations that could not write every decoder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="fine-tuning checkpoint")
    parser.add_argument("--features", type=Path, required=True, help="input cache of the test set")
    parser.add_argument("--cuts", type=Path, required=True, help="Lhotse cuts of the test set")
    parser.add_argument(
        "--decoder",
        nargs="+",
        default=["greedy"],
        choices=DECODERS,
        help="decoders to run on the same emissions (default: greedy)",
    )
    parser.add_argument("--config", type=Path, help="sslgrid config (decode.lm settings)")
    parser.add_argument("--lm-dir", type=Path, help="the lm stage's folder (lm.bin, words.txt)")
    parser.add_argument("--dev-features", type=Path, help="input cache of the tuning set")
    parser.add_argument("--dev-cuts", type=Path, help="Lhotse cuts of the tuning set")
    parser.add_argument("--batch-seconds", type=float, default=120.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out",
        required=True,
        help="hypotheses, one JSON per line; with several decoders a path holding "
        f"{PLACEHOLDER}, replaced by each decoder's name",
    )
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)
    repeated = sorted({d for d in args.decoder if args.decoder.count(d) > 1})
    if repeated:
        parser.error(f"--decoder {' '.join(repeated)} given more than once")
    if len(args.decoder) > 1 and PLACEHOLDER not in args.out:
        parser.error(
            f"--out {args.out} has no {PLACEHOLDER}: with several decoders "
            f"({' '.join(args.decoder)}) each needs its own file"
        )
    if "lm" in args.decoder:
        needed = ["config", "lm_dir", "dev_features", "dev_cuts"]
        missing = [f"--{n.replace('_', '-')}" for n in needed if getattr(args, n) is None]
        if missing:
            parser.error(f"--decoder lm needs {' '.join(missing)}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Encode the test set once, decode it with every decoder, write each one's hypotheses."""
    args = parse_args(argv)
    setup_logging(args.log)
    torch.set_num_threads(args.threads)

    recogniser = load_recogniser(args.model)
    cache, encoded = encode(recogniser, args.features, args.batch_seconds)
    repeat = recogniser.downstream.config.frame_repeat
    batch_frames = int(args.batch_seconds * frames_per_second(recogniser.upstream, repeat))
    test = emissions(recogniser.downstream, encoded, batch_frames)
    logging.info("%d test utterances encoded for %s", len(encoded), " ".join(args.decoder))

    sup_id = {
        cut.id: cut.supervisions[0].id for cut in CutSet.from_file(args.cuts) if cut.supervisions
    }
    # Clips the features stage left out as bad input still count: as empty hypotheses
    # (all deletions), so a test set never silently shrinks.
    kept = set(cache.ids)
    dropped = [cut_id for cut_id in sup_id if cut_id not in kept]
    if dropped:
        logging.warning(
            "%d test clips were left out by the features stage (see its log and the data "
            "report); they are scored as empty hypotheses",
            len(dropped),
        )
    ids = [*cache.ids, *dropped]

    for name in args.decoder:
        out = out_path(args.out, name)
        if name == "lm":
            hyps, weights = lm_transcripts(recogniser, args, test, len(encoded), batch_frames)
            write_atomic(out.parent / "lm_weights.json", json.dumps(weights, indent=1) + "\n")
        else:
            hyps = greedy_transcripts(recogniser.tokenizer, test, len(encoded))
        lines = [
            json.dumps({"id": sup_id[cut_id], "hyp": hyp}, ensure_ascii=False) + "\n"
            for cut_id, hyp in zip(ids, hyps + [""] * len(dropped), strict=True)
            if cut_id in sup_id
        ]
        write_atomic(out, "".join(lines))
        logging.info("%s: %d hypotheses written to %s", name, len(lines), out)


if __name__ == "__main__":
    main()
