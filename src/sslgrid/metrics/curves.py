"""Training curves of the grid: pre-training loss and fine-tuning dev CER per epoch.

Both read the ``history.tsv`` files the pretrain and finetune stages write beside their models
(one row per epoch); a file's grid coordinates come from its path,
``results/pretrain/<model>/<pool>/<amount>/history.tsv`` or
``results/finetune/<model>/<pool>/<amount>/<finetune>/history.tsv``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sslgrid.grid import NO_PRETRAIN, split_amount_label, split_repeat_suffix  # noqa: E402

STAGES = ("pretrain", "finetune")
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "v", "D")
METRIC_NAMES = {"train_loss": "training loss", "dev_cer": "dev CER", "dev_wer": "dev WER"}


def history_coords(path: str | Path) -> dict[str, str | int]:
    """Grid coordinates of a history file from its path (see the module docstring)."""
    parts = Path(path).parts
    for i, part in enumerate(parts):
        if part in STAGES:
            stage, rest = part, parts[i + 1 : -1]
            break
    else:
        raise ValueError(f"{path}: not under a pretrain/ or finetune/ results folder")
    expected = 3 if stage == "pretrain" else 4
    if len(rest) != expected or Path(path).name != "history.tsv":
        layout = "<model>/<pool>/<amount>" + ("/<finetune>" if stage == "finetune" else "")
        raise ValueError(f"{path}: expected results/{stage}/{layout}/history.tsv")
    amount, repeat = split_amount_label(rest[2])
    coords: dict[str, str | int] = {
        "stage": stage,
        "model": rest[0],
        "pool": rest[1],
        "amount": amount,
        "pretrain_repeat": repeat,
    }
    if stage == "finetune":
        coords["finetune"] = rest[3]
        coords["repeat"] = split_repeat_suffix(rest[3])[1]
    return coords


def read_histories(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per history file and epoch: its coordinates, then its columns."""
    frames = []
    for path in paths:
        history = pd.read_csv(path, sep="\t")
        missing = {"epoch", "train_loss"} - set(history.columns)
        if missing:
            raise ValueError(f"{path}: no {sorted(missing)} column (has {list(history.columns)})")
        frames.append(history.assign(**history_coords(path)))
    if not frames:
        return pd.DataFrame(columns=["stage", "model", "pool", "amount", "epoch", "train_loss"])
    return pd.concat(frames, ignore_index=True)


SUMMARY_KEYS = ("stage", "model", "pool", "amount", "pretrain_repeat", "finetune", "repeat")


def training_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per history file (stage, then grid coordinates): epochs trained, training time,
    first and last training loss and, where the history has a dev CER, the selected epoch.

    ``best_epoch`` is the first epoch with the lowest dev CER, the one fine-tuning keeps;
    ``best_at_last`` says it was the last epoch trained, so the recogniser was still improving
    when its budget ran out. Pre-trainings (no dev CER) leave both empty and carry
    ``last_loss_drop``, the relative decrease of the training loss over their last epoch.
    """
    keys = [k for k in SUMMARY_KEYS if k in frame]
    columns = [*keys, "epochs", "seconds", "train_loss_first", "train_loss_last",
               "last_loss_drop", "best_epoch", "dev_cer_best", "best_at_last"]  # fmt: skip
    rows = []
    for _, cell in frame.groupby(keys, sort=False, dropna=False) if len(frame) else []:
        cell = cell.sort_values("epoch")
        top, last = cell.iloc[0], cell.iloc[-1]
        row = {k: top[k] for k in keys}
        losses = cell["train_loss"].astype(float)
        row.update(
            epochs=int(last["epoch"]),
            seconds=float(cell["seconds"].sum()) if "seconds" in cell else None,
            train_loss_first=losses.iloc[0],
            train_loss_last=losses.iloc[-1],
            last_loss_drop=None,
            best_epoch=None,
            dev_cer_best=None,
            best_at_last=None,
        )
        dev = cell["dev_cer"].astype(float) if "dev_cer" in cell else pd.Series(dtype=float)
        if dev.notna().any():
            best = int(cell["epoch"].loc[dev.idxmin()])
            row.update(best_epoch=best, dev_cer_best=dev.min(), best_at_last=best == row["epochs"])
        elif len(losses) > 1 and losses.iloc[-2] > 0:
            row["last_loss_drop"] = 1 - losses.iloc[-1] / losses.iloc[-2]
        rows.append(row)
    summary = pd.DataFrame(rows, columns=columns)
    # Whole epochs, empty for pre-trainings (not 1.0 and NaN in the CSV).
    summary["best_epoch"] = summary["best_epoch"].astype("Int64")
    for column in ("pretrain_repeat", "repeat"):
        if column in summary:
            summary[column] = summary[column].fillna(0).astype(int)
    return summary


def plot_curves(frame: pd.DataFrame, metric: str, path: str | Path, title: str) -> int:
    """``metric`` against epoch, one panel per model, one line per cell (colour: pool, line
    style: amount; pre-training and fine-tuning repeats after the first thinner, without a
    legend entry); returns the number of lines drawn.

    A model without any value of ``metric`` gets a panel that says so instead of an empty one.
    """
    models = list(dict.fromkeys(frame["model"])) if len(frame) else []
    ncols = min(4, max(1, len(models)))
    nrows = max(1, -(-len(models) // ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False, sharex=True
    )
    frame = frame.copy()
    for column in ("pretrain_repeat", "repeat"):
        frame[column] = frame[column].fillna(0).astype(int) if column in frame else 0
    if "finetune" in frame:
        frame["setting"] = [split_repeat_suffix(str(f))[0] for f in frame["finetune"]]
    settings = list(dict.fromkeys(frame.get("setting", pd.Series(dtype=str))))
    # Colours by pool and line styles by amount, the same in every figure of one grid: pools
    # in the order met (fbank, not pre-trained, in black), amounts from small to large.
    pools = [p for p in dict.fromkeys(frame.get("pool", [])) if p != NO_PRETRAIN]
    amounts = sorted(
        (a for a in dict.fromkeys(frame.get("amount", [])) if a != NO_PRETRAIN), key=_amount_order
    )
    cells = [c for c in ("pool", "amount", "pretrain_repeat", "finetune") if c in frame]
    drawn = 0
    for ax, model in zip(axes.flat, models or ["(no history)"], strict=False):
        rows = frame[frame["model"] == model]
        lines = 0
        for _, cell in rows.groupby(cells, sort=False) if len(rows) else []:
            cell = cell.sort_values("epoch").dropna(subset=[metric])
            if cell.empty:
                continue
            top = cell.iloc[0]
            first = top["pretrain_repeat"] == 0 and top["repeat"] == 0
            ax.plot(
                cell["epoch"], cell[metric],
                color=_pool_colour(top["pool"], pools),
                linestyle=_amount_style(top["amount"], amounts),
                linewidth=1.4 if first else 0.6,
                marker=("o" if first else None) if len(settings) < 2 else
                MARKERS[settings.index(top["setting"]) % len(MARKERS)],
                markersize=3,
            )  # fmt: skip
            lines += 1
        drawn += lines
        if not lines:
            ax.text(0.5, 0.5, f"no {metric} recorded", ha="center", transform=ax.transAxes)
        ax.set_title(model, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(METRIC_NAMES.get(metric, metric))
    for ax in list(axes.flat)[max(1, len(models)) :]:
        ax.set_visible(False)
    has_baseline = (frame.get("pool", pd.Series(dtype=str)) == NO_PRETRAIN).any()
    keys = _legend_keys(pools, amounts, settings, has_baseline)
    # About 1.7 inches an entry; the figure grows by the legend's rows so the panels keep size.
    columns = max(1, min(len(keys), int(4.2 * ncols / 1.7)))
    rows = -(-len(keys) // columns)
    legend_inches = 0.25 * rows + 0.15
    fig.set_figheight(3.2 * nrows + legend_inches)
    fig.legend(handles=keys, loc="lower center", ncol=columns, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, legend_inches / (3.2 * nrows + legend_inches), 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def _legend_keys(
    pools: list[str], amounts: list[str], settings: list[str], has_baseline: bool
) -> list[Line2D]:
    """One legend for every panel: colour is the pool, line style the amount (and the marker
    the fine-tuning setting when there are several)."""
    keys = [Line2D([], [], color=_pool_colour(p, pools), label=f"pool {p}") for p in pools]
    if has_baseline:
        keys.insert(0, Line2D([], [], color="black", label="not pre-trained"))
    keys += [
        Line2D([], [], color="grey", linestyle=_amount_style(a, amounts), label=a) for a in amounts
    ]
    if len(settings) > 1:
        keys += [
            Line2D([], [], color="grey", linestyle="", marker=MARKERS[i % len(MARKERS)], label=s)
            for i, s in enumerate(settings)
        ]
    keys.append(Line2D([], [], color="grey", linewidth=0.6, label="repeats (thin)"))
    return keys


def _pool_colour(pool: str, pools: list[str]) -> str:
    return "black" if pool == NO_PRETRAIN else f"C{pools.index(pool) % 10}"


def _amount_style(amount: str, amounts: list[str]) -> str:
    if amount == NO_PRETRAIN:
        return "-"
    return LINE_STYLES[amounts.index(amount) % len(LINE_STYLES)]


def _amount_order(amount: str) -> float:
    """Hours of an amount label; ``all`` after every amount in hours."""
    return float(amount[:-1]) if amount.endswith("h") else float("inf")
