"""Pictures of the results table: error rates per model with intervals, and against hours of
pre-training data.

Both read the long-format table (``results/wer_table.csv``), so they show exactly its numbers.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sslgrid.metrics.table import first_repeats  # noqa: E402

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


def metrics_of(frame: pd.DataFrame) -> list[str]:
    """The error rates the table has (``wer``, and ``cer`` where scored), in that order."""
    return [m for m in ("wer", "cer") if m in frame.columns]


def plot_wer_bars(frame: pd.DataFrame, path: str | Path) -> None:
    """Error rate with its 95% interval per model at its largest amount, one bar per decoder.

    One panel per pre-training pool (columns) and test set and rate (rows, WER then CER); the
    fbank baseline is a dashed line in the decoder's colour across every panel. Bars and lines
    are each cell's first pre-training and fine-tuning; where a cell was pre-trained or
    fine-tuned more than once (``pretrain.repeats``, ``finetune.repeats``), a black dot marks
    every run's rate on its bar.
    """
    every = largest_amounts(frame)
    frame = first_repeats(every)
    test_sets = sorted({f"{c}/{s}" for c, s in zip(frame["corpus"], frame["split"], strict=True)})
    pools = list(dict.fromkeys(p for p in frame["pool"] if p != "none")) or ["none"]
    decoders = sorted(frame["decoder"].unique())
    views = [(t, m) for t in test_sets for m in metrics_of(frame)]
    models = sorted(m for m in frame["model"].unique() if m != BASELINE_MODEL)
    fig, axes = plt.subplots(
        len(views), len(pools), figsize=(max(5, 0.9 * len(models) + 1.5) * len(pools),
        3.4 * len(views)), squeeze=False, sharey="row",
    )  # fmt: skip
    width = 0.8 / len(decoders)
    for row, (test_set, metric) in zip(axes, views, strict=True):
        corpus, split = test_set.split("/")
        of_test = frame[(frame["corpus"] == corpus) & (frame["split"] == split)]
        for ax, pool in zip(row, pools, strict=True):
            for d, decoder in enumerate(decoders):
                rows = of_test[of_test["decoder"] == decoder]
                cells = rows[rows["pool"] == pool].set_index("model")
                xs = [i for i, m in enumerate(models) if m in cells.index]
                values = cells.loc[[models[i] for i in xs]]
                shift = (d - (len(decoders) - 1) / 2) * width
                ax.bar(
                    [x + shift for x in xs], values[metric], width,
                    yerr=[values[metric] - values[f"{metric}_low"],
                          values[f"{metric}_high"] - values[metric]],
                    capsize=2, label=decoder, color=f"C{d}",
                )  # fmt: skip
                _draw_repeats(ax, every, test_set, pool, decoder, models, shift, metric)
                base = rows[rows["model"] == BASELINE_MODEL]
                if len(base):
                    ax.axhline(base[metric].iloc[0], linestyle="--", linewidth=0.8, color=f"C{d}")
            ax.set_xticks(range(len(models)), models, fontsize=8, rotation=30)
            ax.set_title(f"{_pool_title(of_test, pool)}\n{test_set}, largest amount", fontsize=9)
            if ax is row[0]:
                ax.set_ylabel(f"{metric.upper()} (%)")
                ax.legend(title="decoder (dashed: fbank)", fontsize=7, title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw_repeats(
    ax, frame: pd.DataFrame, test_set: str, pool: str, decoder: str, models: list[str],
    shift: float, metric: str,
) -> None:  # fmt: skip
    """Every repeat's rate as a dot over its model's bar (cells with repeats)."""
    runs = [c for c in ("pretrain_repeat", "repeat") if c in frame.columns]
    if not runs:
        return
    corpus, split = test_set.split("/")
    rows = frame[
        (frame["corpus"] == corpus) & (frame["split"] == split) & (frame["decoder"] == decoder)
        & (frame["pool"] == pool) & frame["model"].isin(models)
    ]  # fmt: skip
    if rows.empty:
        return
    run = rows[runs].astype(str).agg("/".join, axis=1)
    repeated = run.groupby(rows["model"]).transform("nunique") > 1
    rows = rows[repeated]
    if len(rows):
        xs = [models.index(m) + shift for m in rows["model"]]
        ax.scatter(xs, rows[metric], s=8, color="black", zorder=3)


def _pool_title(frame: pd.DataFrame, pool: str) -> str:
    if {"pool_language", "pool_domain"} <= set(frame.columns):
        rows = frame[frame["pool"] == pool]
        if len(rows):
            row = rows.iloc[0]
            return f"pool {pool} ({row['pool_language']}, {row['pool_domain']})"
    return f"pool {pool}"


def _draw_hours_panel(ax, sub: pd.DataFrame, pool: str, metric: str = "wer") -> None:
    cells = sub[(sub["pool"] == pool) & sub["hours"].notna()]
    for i, (model, rows) in enumerate(cells.groupby("model")):
        rows = rows.sort_values("hours")
        ax.errorbar(
            rows["hours"], rows[metric],
            yerr=[rows[metric] - rows[f"{metric}_low"], rows[f"{metric}_high"] - rows[metric]],
            marker="o", capsize=3, label=model, color=f"C{i}",
        )  # fmt: skip
    base = sub[sub["model"] == BASELINE_MODEL]
    if len(base):
        ax.axhline(base[metric].iloc[0], linestyle="--", color="grey", label="fbank")
    if cells.empty:
        ax.text(0.5, 0.5, "no amounts in hours in this grid", ha="center",
                transform=ax.transAxes)  # fmt: skip
    else:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("pre-training audio (hours)")
    ax.set_ylabel(f"{metric.upper()} (%)")
    ax.legend(fontsize=8)


def plot_wer_vs_hours(frame: pd.DataFrame, path: str | Path) -> None:
    """Error rate against hours of pre-training audio, one line per model; one panel per pool
    (its language and domain in the title, where the table has them) in columns, and per test
    set, decoder and rate (WER, and CER where scored) in rows.

    Each cell's first pre-training and fine-tuning is drawn (repeats: see the bars). Cells
    pre-trained on a whole pool ("all") are left out: their hours are not in the table's
    coordinates. Without any amount in hours, the panels say so instead of drawing nothing.
    """
    sub = first_repeats(frame).copy()
    sub["hours"] = sub["amount"].map(amount_hours)
    sub["test_set"] = sub["corpus"].astype(str) + "/" + sub["split"].astype(str)
    pools = list(dict.fromkeys(p for p in sub["pool"] if p != "none"))
    views = [
        (t, d, m)
        for t in sorted(sub["test_set"].unique())
        for d in sorted(sub["decoder"].unique())
        for m in metrics_of(sub)
    ]
    ncols, nrows = max(1, len(pools)), max(1, len(views))
    # Shared x axes: a pool with one amount (continued pre-training) sits on the same hour
    # scale as the others; y is shared along a row, so pools compare at a glance.
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False, sharex=True, sharey="row"
    )
    for row, view in zip(axes, views or [("(no test set)", "", "wer")], strict=True):
        test_set, decoder, metric = view
        of_view = sub[(sub["test_set"] == test_set) & (sub["decoder"] == decoder)]
        for ax, pool in zip(row, pools or ["(no pre-training pool)"], strict=True):
            _draw_hours_panel(ax, of_view, pool, metric)
            if ax is not row[0]:
                ax.get_legend().remove()
                ax.set_ylabel("")
            ax.set_title(
                f"{_pool_title(of_view, pool)}\n{test_set} ({decoder}, {metric.upper()})",
                fontsize=9,
            )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
