"""st_score stage: score one ST hypothesis file against its test set.

``translate``: sacrebleu BLEU and chrF (signatures recorded) against ``custom.translation``;
``transcribe``: WER and CER against the transcript, by the ASR table's scoring code. Both with
bootstrap 95% intervals over utterances. Writes a score JSON (with the grid coordinates given
as ``--coord``) and a per-utterance TSV.
"""

from __future__ import annotations

import argparse
import csv
import io
import json

from lhotse import CutSet

from sslgrid.metrics.table import write_text_atomic
from sslgrid.metrics.wer import read_hypotheses
from sslgrid.st.cells import TASKS
from sslgrid.st.scoring import transcription_scores, translation_scores


def references(cuts_path: str, task: str) -> dict[str, str | None]:
    """Supervision id -> reference of ``task`` (None where a clip has no translation)."""
    refs: dict[str, str | None] = {}
    for cut in CutSet.from_file(cuts_path):
        if len(cut.supervisions) != 1:
            raise ValueError(
                f"{cuts_path}: cut {cut.id!r} has {len(cut.supervisions)} supervisions, "
                "scoring expects exactly one"
            )
        sup = cut.supervisions[0]
        refs[sup.id] = (sup.custom or {}).get("translation") if task == "translate" else sup.text
    return refs


def to_tsv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(
            buffer, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", required=True)
    parser.add_argument("--hyps", required=True)
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--coord", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", required=True, help="score JSON")
    parser.add_argument("--per-utt", required=True, help="per-utterance TSV")
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    coords = {}
    for pair in args.coord:
        key, sep, value = pair.partition("=")
        if not sep or not key or key in coords:
            parser.error(f"--coord expects distinct KEY=VALUE pairs, got {pair!r}")
        coords[key] = value
    score = translation_scores if args.task == "translate" else transcription_scores
    record, rows = score(
        references(args.cuts, args.task),
        read_hypotheses(args.hyps),
        args.n_resamples,
        args.seed,
        hyp_source=args.hyps,
    )
    record = {
        "coords": {**coords, "task": args.task},
        **record,
        "hyps": args.hyps,
        "cuts": args.cuts,
    }
    write_text_atomic(args.per_utt, to_tsv(rows))
    write_text_atomic(args.out, json.dumps(record, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
