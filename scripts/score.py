"""Score decoding runs: hypotheses against the references of a Lhotse CutSet.

Writes a score JSON (corpus WER/CER with bootstrap intervals, rates as fractions) and a
per-utterance TSV of the normalised texts and their edit counts.

The decoders of one test set are scored in one run, the references read once: with
``--decoder greedy lm``, every ``{decoder}`` in ``--hyps``, ``--out``, ``--per-utt`` and the
``--coord`` values is replaced by each decoder's name in turn. Nothing is written unless every
decoder's hypotheses score.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path
from typing import NamedTuple

from lhotse import CutSet

from sslgrid.metrics.table import write_text_atomic
from sslgrid.metrics.wer import (
    CorpusScore,
    bootstrap_interval,
    read_hypotheses,
    score_utterances,
)

PER_UTT_COLUMNS = ("id", "ref", "hyp", "word_errors", "n_words", "char_errors", "n_chars")
PLACEHOLDER = "{decoder}"


class Run(NamedTuple):
    """One decoder's files and coordinates, its ``{decoder}`` filled in."""

    hyps: str
    out: str
    per_utt: str
    coords: dict[str, str]


def parse_coords(pairs: list[str]) -> dict[str, str]:
    """Turn repeated KEY=VALUE arguments into a dict, refusing malformed or repeated keys."""
    coords: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--coord expects KEY=VALUE, got {pair!r}")
        if key in coords:
            raise argparse.ArgumentTypeError(f"--coord {key} given twice")
        coords[key] = value
    return coords


def read_references(cuts_path: str | Path) -> dict[str, str]:
    """Supervision id to text, in CutSet order; each cut must hold exactly one supervision."""
    references: dict[str, str] = {}
    for cut in CutSet.from_file(cuts_path):
        if len(cut.supervisions) != 1:
            raise ValueError(
                f"{cuts_path}: cut {cut.id!r} has {len(cut.supervisions)} supervisions, "
                "scoring expects exactly one"
            )
        sup = cut.supervisions[0]
        if sup.id in references:
            raise ValueError(f"{cuts_path}: supervision id {sup.id!r} appears twice")
        references[sup.id] = sup.text or ""
    return references


def summarise(
    score: CorpusScore, coords: dict[str, str], hyps: str, cuts: str, n_resamples: int, seed: int
) -> dict[str, object]:
    """The score JSON record: corpus rates as fractions with their bootstrap intervals."""
    if score.n_utts == 0:
        raise ValueError(f"{cuts}: no utterance with a non-empty reference to score")
    wer_low, wer_high = bootstrap_interval(score.word_errors, score.n_words, n_resamples, seed)
    cer_low, cer_high = bootstrap_interval(score.char_errors, score.n_chars, n_resamples, seed)
    return {
        "coords": coords,
        "n_utts": score.n_utts,
        "n_words": int(score.n_words.sum()),
        "n_chars": int(score.n_chars.sum()),
        "wer": score.wer,
        "wer_low": wer_low,
        "wer_high": wer_high,
        "cer": score.cer,
        "cer_low": cer_low,
        "cer_high": cer_high,
        "n_empty_refs_skipped": score.n_empty_refs_skipped,
        "hyps": hyps,
        "cuts": cuts,
    }


def per_utterance_tsv(score: CorpusScore) -> str:
    """The scored utterances as TSV, one row each, with a header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(PER_UTT_COLUMNS)
    for u in score.utterances:
        writer.writerow([getattr(u, column) for column in PER_UTT_COLUMNS])
    return buffer.getvalue()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cuts", required=True, help="Lhotse CutSet (jsonl.gz) of references")
    parser.add_argument(
        "--decoder",
        nargs="+",
        metavar="NAME",
        help=f"decoders to score, each replacing {PLACEHOLDER} in the paths and --coord values",
    )
    parser.add_argument("--hyps", required=True, help='JSON lines {"id": ..., "hyp": ...}')
    parser.add_argument(
        "--coord",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="grid coordinate recorded in the output (repeatable)",
    )
    parser.add_argument("--out", required=True, help="score JSON to write")
    parser.add_argument("--per-utt", required=True, help="per-utterance TSV to write")
    parser.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args(argv)
    try:
        args.coords = parse_coords(args.coord)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    if args.decoder:
        repeated = sorted({d for d in args.decoder if args.decoder.count(d) > 1})
        if repeated:
            parser.error(f"--decoder {' '.join(repeated)} given more than once")
        if len(args.decoder) > 1:
            shared = [
                f"--{name.replace('_', '-')} {getattr(args, name)}"
                for name in ("hyps", "out", "per_utt")
                if PLACEHOLDER not in getattr(args, name)
            ]
            if shared:
                parser.error(
                    f"{', '.join(shared)}: no {PLACEHOLDER} in it, but several decoders "
                    f"({' '.join(args.decoder)}) each need their own file"
                )
    return args


def runs_of(args: argparse.Namespace) -> list[Run]:
    """The decoding runs to score: one per ``--decoder``, or the paths as given without it."""
    if not args.decoder:
        return [Run(args.hyps, args.out, args.per_utt, args.coords)]
    return [
        Run(
            args.hyps.replace(PLACEHOLDER, name),
            args.out.replace(PLACEHOLDER, name),
            args.per_utt.replace(PLACEHOLDER, name),
            {k: v.replace(PLACEHOLDER, name) for k, v in args.coords.items()},
        )
        for name in args.decoder
    ]


def main(argv: list[str] | None = None) -> None:
    """Score every run against the references, then write each run's TSV and score JSON."""
    args = parse_args(argv)
    references = read_references(args.cuts)
    scored = []
    for run in runs_of(args):
        score = score_utterances(references, read_hypotheses(run.hyps), hyp_source=run.hyps)
        record = summarise(score, run.coords, run.hyps, args.cuts, args.n_resamples, args.seed)
        scored.append((run, score, record))
    for run, score, record in scored:
        write_text_atomic(run.per_utt, per_utterance_tsv(score))
        write_text_atomic(run.out, json.dumps(record, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
