"""Pictures of the results table: WER per model with intervals, and WER against pre-training data.

Both read the long-format table (``results/wer_table.csv``), so they show exactly its numbers.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

BASELINE_MODEL = "fbank"


def amount_hours(amount: str) -> float | None:
    """Hours of pre-training audio of an amount label ("0.5h"); None for "all" / "none"."""
    return float(amount[:-1]) if amount.endswith("h") else None


def largest_amounts(frame: pd.DataFrame) -> pd.DataFrame:
    """Per model and pool, the rows of its largest pre-training amount ("all" counts largest)."""

    def rank(amount: str) -> float:
        hours = amount_hours(amount)
        return float("inf") if hours is None else hours

    ranked = frame.assign(_rank=frame["amount"].map(rank))
    best = ranked.groupby(["model", "pool"])["_rank"].transform("max")
    return ranked[ranked["_rank"] == best].drop(columns="_rank")


def plot_wer_bars(frame: pd.DataFrame, path: str | Path) -> None:
    """WER with its 95% interval per upstream (largest amount), one group per decoder.

    One panel per test set; the fbank baseline is drawn as a dashed line across each group.
    """
    frame = largest_amounts(frame)
    test_sets = sorted({f"{c}/{s}" for c, s in zip(frame["corpus"], frame["split"], strict=True)})
    decoders = sorted(frame["decoder"].unique())
    fig, axes = plt.subplots(
        len(test_sets),
        1,
        figsize=(max(6, 1.1 * len(frame) / len(test_sets) + 2), 3.6 * len(test_sets)),
        squeeze=False,
    )
    for ax, test_set in zip(axes[:, 0], test_sets, strict=True):
        corpus, split = test_set.split("/")
        sub = frame[(frame["corpus"] == corpus) & (frame["split"] == split)]
        cells = sub[["model", "pool"]].drop_duplicates().sort_values(["model", "pool"])
        labels = [m if p == "none" else f"{m}\n{p}" for m, p in cells.itertuples(index=False)]
        width = 0.8 / len(decoders)
        for d, decoder in enumerate(decoders):
            rows = sub[sub["decoder"] == decoder].set_index(["model", "pool"])
            xs, ys, lo, hi = [], [], [], []
            for i, key in enumerate(cells.itertuples(index=False)):
                if tuple(key) in rows.index:
                    row = rows.loc[tuple(key)]
                    xs.append(i + (d - (len(decoders) - 1) / 2) * width)
                    ys.append(row["wer"])
                    lo.append(row["wer"] - row["wer_low"])
                    hi.append(row["wer_high"] - row["wer"])
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=decoder)
            base = (
                rows.loc[(BASELINE_MODEL, "none"), "wer"]
                if (BASELINE_MODEL, "none") in rows.index
                else None
            )
            if base is not None:
                ax.axhline(base, linestyle="--", linewidth=0.8, color=f"C{d}")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylabel("WER (%)")
        ax.set_title(f"{test_set}: WER with 95% bootstrap interval (dashed: fbank)")
        ax.legend(title="decoder", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_wer_vs_hours(frame: pd.DataFrame, path: str | Path, decoder: str | None = None) -> None:
    """WER against hours of pre-training audio, one line per model, one panel per pool.

    Cells pre-trained on a whole pool ("all") are left out: their hours are not in the table's
    coordinates. Without any amount in hours, the panels say so instead of drawing nothing.
    """
    decoder = decoder or sorted(frame["decoder"].unique())[0]
    sub = frame[frame["decoder"] == decoder].copy()
    sub["hours"] = sub["amount"].map(amount_hours)
    pools = sorted(p for p in sub["pool"].unique() if p != "none")
    fig, axes = plt.subplots(
        1, max(1, len(pools)), figsize=(4.5 * max(1, len(pools)), 3.6), squeeze=False
    )
    for ax, pool in zip(axes[0], pools or ["(no pre-training pool)"], strict=True):
        cells = sub[(sub["pool"] == pool) & sub["hours"].notna()]
        for i, (model, rows) in enumerate(cells.groupby("model")):
            rows = rows.sort_values("hours")
            ax.errorbar(
                rows["hours"], rows["wer"],
                yerr=[rows["wer"] - rows["wer_low"], rows["wer_high"] - rows["wer"]],
                marker="o", capsize=3, label=model, color=f"C{i}",
            )  # fmt: skip
        base = sub[sub["model"] == BASELINE_MODEL]
        if len(base):
            ax.axhline(base["wer"].iloc[0], linestyle="--", color="grey", label="fbank")
        if cells.empty:
            ax.text(0.5, 0.5, "no amounts in hours in this grid", ha="center",
                    transform=ax.transAxes)  # fmt: skip
        else:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("pre-training audio (hours)")
        ax.set_ylabel("WER (%)")
        ax.set_title(f"pool {pool} ({decoder})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
