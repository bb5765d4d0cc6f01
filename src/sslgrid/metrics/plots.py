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


def _pool_title(frame: pd.DataFrame, pool: str) -> str:
    if {"pool_language", "pool_domain"} <= set(frame.columns):
        rows = frame[frame["pool"] == pool]
        if len(rows):
            row = rows.iloc[0]
            return f"pool {pool} ({row['pool_language']}, {row['pool_domain']})"
    return f"pool {pool}"


def _draw_hours_panel(ax, sub: pd.DataFrame, pool: str) -> None:
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
    ax.legend(fontsize=8)


def plot_wer_vs_hours(frame: pd.DataFrame, path: str | Path, decoder: str | None = None) -> None:
    """WER against hours of pre-training audio, one line per model; one panel per pool (its
    language and domain in the title, where the table has them) and test set.

    Cells pre-trained on a whole pool ("all") are left out: their hours are not in the table's
    coordinates. Without any amount in hours, the panels say so instead of drawing nothing.
    """
    decoder = decoder or sorted(frame["decoder"].unique())[0]
    sub = frame[frame["decoder"] == decoder].copy()
    sub["hours"] = sub["amount"].map(amount_hours)
    sub["test_set"] = sub["corpus"].astype(str) + "/" + sub["split"].astype(str)
    pools = list(dict.fromkeys(p for p in sub["pool"] if p != "none"))
    test_sets = sorted(sub["test_set"].unique())
    ncols, nrows = max(1, len(pools)), max(1, len(test_sets))
    # Shared axes: pools and test sets are compared at a glance, and a pool with one amount
    # (continued pre-training) sits on the same hour scale as the others.
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False, sharex=True, sharey=True
    )
    for row, test_set in zip(axes, test_sets or ["(no test set)"], strict=True):
        of_test = sub[sub["test_set"] == test_set]
        for ax, pool in zip(row, pools or ["(no pre-training pool)"], strict=True):
            _draw_hours_panel(ax, of_test, pool)
            if ax is not row[0]:
                ax.get_legend().remove()
                ax.set_ylabel("")
            ax.set_title(f"{_pool_title(of_test, pool)}\n{test_set} ({decoder})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
