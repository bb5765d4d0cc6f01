"""results/st_table.csv from the ST score files, and BLEU plotted against the encoder's WER.

One row per encoder cell (model, pool, amount, pre-training repeat), LM, adapter mode, task and
test set. BLEU and chrF are on sacrebleu's 0-100 scale; WER and CER are percentages as in
results/wer_table.csv; every metric has its bootstrap 95% interval. Translation rows carry the
sacrebleu signatures.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sslgrid.grid import split_pretrain_repeat  # noqa: E402
from sslgrid.metrics.table import write_text_atomic  # noqa: E402

COORDINATES = (
    "model",
    "pool",
    "amount",
    "pretrain_repeat",
    "llm",
    "adapter",
    "task",
    "corpus",
    "split",
)
METRICS = (
    "n_utts",
    "n_words",
    "bleu",
    "bleu_low",
    "bleu_high",
    "chrf",
    "chrf_low",
    "chrf_high",
    "wer",
    "wer_low",
    "wer_high",
    "cer",
    "cer_low",
    "cer_high",
)
# An encoder cell and test set: what a translation and the encoder's WER are matched on.
ENCODER_CELL = ("model", "pool", "amount", "pretrain_repeat", "corpus", "split")
PERCENT = ("wer", "wer_low", "wer_high", "cer", "cer_low", "cer_high")
SIGNATURES = ("bleu_signature", "chrf_signature")


def st_row(score: Mapping[str, Any], source: str) -> dict[str, Any]:
    """One table row from a score file's record; error rates become percentages."""
    # amount "0.5h-r1": pre-training repeat 1 of 0.5 h, as in the WER table.
    coords = split_pretrain_repeat(score.get("coords", {}))
    missing = [c for c in COORDINATES if c not in coords]
    if missing:
        raise KeyError(f"{source}: score file lacks coordinates {missing}")
    row: dict[str, Any] = {c: coords[c] for c in COORDINATES}
    for key in METRICS:
        value = score.get(key)
        if value is not None and key in PERCENT:
            value = round(100 * value, 2)
        elif isinstance(value, float):
            value = round(value, 2)
        row[key] = value
    for key in SIGNATURES:
        row[key] = score.get(key)
    return row


def st_table(score_files: Sequence[str | Path]) -> pd.DataFrame:
    rows = [st_row(json.loads(Path(p).read_text(encoding="utf-8")), str(p)) for p in score_files]
    frame = pd.DataFrame(rows, columns=[*COORDINATES, *METRICS, *SIGNATURES])
    duplicated = frame.duplicated(list(COORDINATES))
    if duplicated.any():
        raise ValueError(f"two score files for one cell: {frame[duplicated].iloc[0].to_dict()}")
    return frame


def write_st_table(frame: pd.DataFrame, path: str | Path) -> None:
    write_text_atomic(path, frame.to_csv(index=False))


def encoder_wer(
    wer_table: pd.DataFrame, decoder: str | None = None, finetune: str | None = None
) -> pd.DataFrame:
    """The ASR WER of each encoder cell and test set, from one decoder of the WER table.

    ``decoder`` None takes ``greedy`` when the table has it (the recogniser on its own, as
    the speech LLM decodes without an n-gram), else the first one listed. ``finetune`` picks
    one fine-tuning setting when the table has several (a cell must have one WER).
    """
    if finetune is not None and "finetune" in wer_table:
        wer_table = wer_table[wer_table["finetune"] == finetune]
    decoders = list(dict.fromkeys(wer_table["decoder"]))
    if decoder is None:
        decoder = "greedy" if "greedy" in decoders else decoders[0]
    if decoder not in decoders:
        raise ValueError(f"decoder {decoder!r} is not in the WER table; it has {decoders}")
    sub = wer_table[wer_table["decoder"] == decoder]
    if "pretrain_repeat" not in sub:  # a table from before pre-training repeats
        sub = sub.assign(pretrain_repeat=0)
    keep = [*ENCODER_CELL, "wer", "wer_low", "wer_high"]
    return (
        sub[keep]
        .rename(columns={"wer": "asr_wer", "wer_low": "asr_wer_low", "wer_high": "asr_wer_high"})
        .assign(asr_decoder=decoder)
    )


def plot_bleu_vs_wer(
    st: pd.DataFrame, wer_table: pd.DataFrame, path: str | Path, finetune: str | None = None
) -> int:
    """BLEU of each translation cell against its encoder's ASR WER; returns points drawn.

    One panel per test set, one marker series per LM and adapter mode, each point labelled
    with its encoder and showing both bootstrap intervals.
    """
    translate = st[st["task"] == "translate"]
    if "pretrain_repeat" not in translate:  # a table from before pre-training repeats
        translate = translate.assign(pretrain_repeat=0)
    asr = encoder_wer(wer_table, finetune=finetune)
    if asr.duplicated(list(ENCODER_CELL)).any():
        raise ValueError("the WER table has several rows per encoder cell; name --finetune")
    merged = translate.merge(asr, on=list(ENCODER_CELL), how="inner")
    test_sets = sorted({f"{c}/{s}" for c, s in zip(st["corpus"], st["split"], strict=True)})
    fig, axes = plt.subplots(
        1, max(1, len(test_sets)), figsize=(5.5 * max(1, len(test_sets)), 4.2), squeeze=False
    )
    for ax, test_set in zip(axes[0], test_sets or ["(none)"], strict=True):
        corpus, _, split = test_set.partition("/")
        sub = merged[(merged["corpus"] == corpus) & (merged["split"] == split)]
        for i, ((llm, adapter), group) in enumerate(sub.groupby(["llm", "adapter"])):
            ax.errorbar(
                group["asr_wer"],
                group["bleu"],
                xerr=[
                    group["asr_wer"] - group["asr_wer_low"],
                    group["asr_wer_high"] - group["asr_wer"],
                ],
                yerr=[group["bleu"] - group["bleu_low"], group["bleu_high"] - group["bleu"]],
                fmt="o",
                capsize=3,
                color=f"C{i}",
                label=f"{llm} ({adapter})",
            )
            for row in group.itertuples(index=False):
                name = row.model if row.pool == "none" else f"{row.model} {row.pool}/{row.amount}"
                ax.annotate(
                    name,
                    (row.asr_wer, row.bleu),
                    fontsize=7,
                    xytext=(4, 3),
                    textcoords="offset points",
                )
        if sub.empty:
            ax.text(
                0.5, 0.5, "no encoder with both BLEU and WER", ha="center", transform=ax.transAxes
            )
        else:
            ax.legend(title="LM (adapter)", fontsize=8)
        decoder = asr["asr_decoder"].iloc[0] if len(asr) else "?"
        ax.set_xlabel(f"encoder's ASR WER (%, {decoder} decoding)")
        ax.set_ylabel("BLEU")
        ax.set_title(f"{test_set}: speech translation vs recognition")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return len(merged)
