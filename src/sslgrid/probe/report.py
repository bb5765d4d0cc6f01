"""The phone probe table and the picture of phone accuracy against WER.

The table is long-format like the WER table: the grid coordinates of the upstream (``model``,
``pool``, ``amount``, ``pretrain_repeat``), where it was probed (``corpus``, ``split``,
``layer``, and ``layer_choice``, the ``probe.layers`` setting), then counts and rates in
percent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sslgrid.grid import split_pretrain_repeat  # noqa: E402
from sslgrid.metrics.table import first_finetunings  # noqa: E402

COORDINATES = (
    "model",
    "pool",
    "amount",
    "pretrain_repeat",
    "corpus",
    "split",
    "layer_choice",
    "layer",
    "num_layers",
)
METRICS = (
    "n_utts",
    "n_frames",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "majority",
    "train_accuracy",
)
PERCENT = ("accuracy", "accuracy_low", "accuracy_high", "majority", "train_accuracy")
JOIN = ("model", "pool", "amount", "pretrain_repeat", "corpus", "split")


def probe_frame(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per probe JSON file and layer; rates as percentages with two decimals."""
    rows = []
    for path in paths:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        missing = [
            k for k in ("model", "pool", "amount", "corpus", "split") if k not in record["coords"]
        ]
        if missing:
            raise ValueError(f"{path}: coords lack {missing}")
        # amount "0.5h-r1": pre-training repeat 1 of 0.5 h, as in the WER table.
        coords = split_pretrain_repeat(record["coords"])
        for row in record["rows"]:
            rows.append({**coords, **row})
    frame = pd.DataFrame(rows, columns=[*COORDINATES, *METRICS])
    frame[list(PERCENT)] = (frame[list(PERCENT)].astype(float) * 100).round(2)
    return frame


def best_layers(probes: pd.DataFrame) -> pd.DataFrame:
    """Per cell (model, pool, amount, pre-training repeat, test set), the probed layer with the
    best accuracy."""
    order = probes.sort_values("accuracy", ascending=False)
    return order.drop_duplicates(list(JOIN)).sort_index()


def plot_accuracy_vs_wer(probes: pd.DataFrame, wer: pd.DataFrame, path: str | Path) -> int:
    """Phone frame accuracy (best probed layer) against WER, one point per cell and decoder;
    returns the number of points drawn.

    Cells are matched on model, pool, amount, pre-training repeat and test set; one panel per
    test set, one marker colour per decoder, each point named by its model (and pool and
    amount when pre-trained, and ``r<r>`` for a pre-training repeat). Both axes carry the 95%
    bootstrap intervals.
    """
    # Tables written before pre-training repeats have only first pre-trainings.
    probes, wer = (
        t if "pretrain_repeat" in t else t.assign(pretrain_repeat=0) for t in (probes, wer)
    )
    best = best_layers(probes)
    # One point per upstream: its first fine-tuning (fine-tuning repeats would add copies of
    # the probe's x).
    merged = best.merge(first_finetunings(wer), on=list(JOIN), how="inner")
    test_sets = sorted({f"{c}/{s}" for c, s in zip(merged["corpus"], merged["split"], strict=True)})
    fig, axes = plt.subplots(
        1, max(1, len(test_sets)), figsize=(5.5 * max(1, len(test_sets)), 4.2), squeeze=False
    )
    for ax, test_set in zip(axes[0], test_sets or ["(no cell in both tables)"], strict=True):
        corpus, _, split = test_set.partition("/")
        sub = merged[(merged["corpus"] == corpus) & (merged["split"] == split)]
        for i, (decoder, rows) in enumerate(sub.groupby("decoder")):
            ax.errorbar(
                rows["accuracy"], rows["wer"],
                xerr=[rows["accuracy"] - rows["accuracy_low"],
                      rows["accuracy_high"] - rows["accuracy"]],
                yerr=[rows["wer"] - rows["wer_low"], rows["wer_high"] - rows["wer"]],
                fmt="o", capsize=3, color=f"C{i}", label=decoder,
            )  # fmt: skip
            for row in rows.itertuples(index=False):
                name = row.model if row.pool == "none" else f"{row.model} {row.pool} {row.amount}"
                name += f" r{row.pretrain_repeat}" if row.pretrain_repeat else ""
                ax.annotate(name, (row.accuracy, row.wer), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")  # fmt: skip
        if sub.empty:
            ax.text(0.5, 0.5, "no cell in both tables", ha="center", transform=ax.transAxes)
        else:
            ax.legend(title="decoder", fontsize=8)
        ax.set_xlabel("phone frame accuracy (%), best probed layer")
        ax.set_ylabel("WER (%)")
        ax.set_title(f"{test_set}: linear phone separability vs WER")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return len(merged)
