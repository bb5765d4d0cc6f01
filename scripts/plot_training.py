"""training_curves stage: pre-training loss and fine-tuning dev CER per epoch, per model, and a
table of what each training did (epochs, time, losses, selected epoch)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from sslgrid.metrics.curves import METRIC_NAMES, plot_curves, read_histories, training_summary
from sslgrid.metrics.table import write_text_atomic


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pretrain", nargs="*", default=[], help="results/pretrain/.../history.tsv files"
    )
    parser.add_argument(
        "--finetune", nargs="*", default=[], help="results/finetune/.../history.tsv files"
    )
    parser.add_argument("--pretrain-out", type=Path, required=True, help="PNG: training loss")
    parser.add_argument("--finetune-out", type=Path, required=True, help="PNG: dev CER")
    parser.add_argument(
        "--summary-out", type=Path, help="CSV: one row per training (see training_summary)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    pretrain = read_histories(args.pretrain)
    lines = plot_curves(pretrain, "train_loss", args.pretrain_out, "pre-training loss per epoch")
    logging.info("%s: %d pre-training curves", args.pretrain_out, lines)
    finetune = read_histories(args.finetune)
    metric = "dev_cer" if "dev_cer" in finetune else "train_loss"
    name = METRIC_NAMES[metric]
    lines = plot_curves(finetune, metric, args.finetune_out, f"fine-tuning: {name} per epoch")
    logging.info("%s: %d fine-tuning curves", args.finetune_out, lines)
    if args.summary_out is not None:
        write_summary(pd.concat([pretrain, finetune], ignore_index=True), args.summary_out)


def write_summary(histories: pd.DataFrame, path: Path) -> None:
    """The summary CSV, and a warning naming the recognisers still improving at their end."""
    summary = training_summary(histories)
    write_text_atomic(path, summary.to_csv(index=False))
    tuned = summary[summary["best_epoch"].notna()]
    still = tuned[tuned["best_at_last"].astype(bool)]
    logging.info("%s: %d trainings, %d with a dev CER", path, len(summary), len(tuned))
    if len(still):
        cells = ", ".join(
            "/".join(str(r[k]) for k in ("model", "pool", "amount", "finetune"))
            for _, r in still.iterrows()
        )
        logging.warning(
            "%d of %d fine-tunings had their best dev CER at their last epoch, so more epochs "
            "may still help: %s",
            len(still),
            len(tuned),
            cells,
        )


if __name__ == "__main__":
    main()
