"""phone_probe_plot stage: phone frame accuracy against WER per grid cell."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from sslgrid.probe.report import plot_accuracy_vs_wer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe-table", type=Path, required=True)
    parser.add_argument("--wer-table", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dtypes = {"amount": str, "pool": str}
    plot_accuracy_vs_wer(
        pd.read_csv(args.probe_table, dtype=dtypes),
        pd.read_csv(args.wer_table, dtype=dtypes),
        args.out,
    )


if __name__ == "__main__":
    main()
