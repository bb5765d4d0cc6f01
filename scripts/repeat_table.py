"""wer_repeats stage: mean and spread over fine-tuning and pre-training repeats, from
results/wer_table.csv."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from sslgrid.metrics.table import write_repeat_summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True, help="results/wer_table.csv")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    frame = pd.read_csv(args.table, dtype={"amount": str, "pool": str, "labelled": str})
    summary = write_repeat_summary(frame, args.out)
    logging.info("%s: %d cells fine-tuned more than once", args.out, len(summary))


if __name__ == "__main__":
    main()
