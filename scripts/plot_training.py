"""training_curves stage: pre-training loss and fine-tuning dev CER per epoch, per model."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sslgrid.metrics.curves import METRIC_NAMES, plot_curves, read_histories


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


if __name__ == "__main__":
    main()
