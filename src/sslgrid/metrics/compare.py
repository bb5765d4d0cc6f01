"""Each grid cell against the no-pre-training baseline of the same setting, utterance by utterance.

The baseline of a cell is the ``fbank`` cell with the same fine-tuning, decoder and test set.
Both were scored on the same utterances, so the paired bootstrap test applies: it resamples
utterances and asks how often the cell's WER is not below the baseline's.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sslgrid.metrics.wer import paired_bootstrap_pvalue

BASELINE_MODEL = "fbank"
# Coordinates that name the upstream; every other coordinate must match the baseline's.
UPSTREAM_COORDS = ("model", "pool", "amount")


def read_word_errors(per_utt: str | Path) -> dict[str, tuple[int, int]]:
    """Utterance id -> (word errors, reference words) from a score stage's per_utt.tsv."""
    with open(per_utt, encoding="utf-8", newline="") as fh:
        return {
            row["id"]: (int(row["word_errors"]), int(row["n_words"]))
            for row in csv.DictReader(fh, delimiter="\t")
        }


def setting_key(coords: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, v) for k, v in coords.items() if k not in UPSTREAM_COORDS))


def pvalues_against_baseline(
    score_paths: Sequence[str | Path], n_resamples: int = 1000, seed: int = 0
) -> list[float | None]:
    """For each score file: the paired bootstrap p-value that its cell beats the baseline.

    ``None`` for the baseline itself and for cells whose setting has no baseline. The
    per-utterance TSV is read from beside each score JSON (``per_utt.tsv``).
    """
    records = [json.loads(Path(p).read_text(encoding="utf-8")) for p in score_paths]
    baselines = {
        setting_key(r["coords"]): Path(p).with_name("per_utt.tsv")
        for p, r in zip(score_paths, records, strict=True)
        if r["coords"].get("model") == BASELINE_MODEL
    }
    pvalues: list[float | None] = []
    for path, record in zip(score_paths, records, strict=True):
        baseline = baselines.get(setting_key(record["coords"]))
        if record["coords"].get("model") == BASELINE_MODEL or baseline is None:
            pvalues.append(None)
            continue
        cell = read_word_errors(Path(path).with_name("per_utt.tsv"))
        base = read_word_errors(baseline)
        if set(cell) != set(base):
            raise ValueError(
                f"{path} and {baseline} were scored on different utterances; "
                "a paired comparison needs the same ones"
            )
        ids = sorted(cell)
        pvalues.append(
            paired_bootstrap_pvalue(
                np.array([cell[i][0] for i in ids]),
                np.array([base[i][0] for i in ids]),
                np.array([cell[i][1] for i in ids]),
                n_resamples=n_resamples,
                seed=seed,
            )
        )
    return pvalues
