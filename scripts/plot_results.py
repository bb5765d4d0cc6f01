"""plots stage: pictures of results/wer_table.csv into results/plots/."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from sslgrid.metrics.plots import plot_wer_bars, plot_wer_vs_hours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, required=True, help="results/wer_table.csv")
    parser.add_argument("--bars", type=Path, required=True, help="PNG: WER per upstream")
    parser.add_argument("--hours", type=Path, required=True, help="PNG: WER against hours")
    args = parser.parse_args()
    frame = pd.read_csv(args.table, dtype={"amount": str, "pool": str})
    args.bars.parent.mkdir(parents=True, exist_ok=True)
    plot_wer_bars(frame, args.bars)
    plot_wer_vs_hours(frame, args.hours)


if __name__ == "__main__":
    main()
