"""st_table and st_plots stages: the ST score files as results/st_table.csv; BLEU against the
encoder's ASR WER (results/wer_table.csv) as a plot."""

from __future__ import annotations

import argparse
import logging

import pandas as pd

from sslgrid.st.table import plot_bleu_vs_wer, st_table, write_st_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="collect score files into the CSV")
    table.add_argument("--scores", nargs="+", required=True)
    table.add_argument("--csv", required=True)
    plot = sub.add_parser("plot", help="BLEU against the encoder's WER")
    plot.add_argument("--table", required=True, help="results/st_table.csv")
    plot.add_argument("--wer-table", required=True, help="results/wer_table.csv")
    plot.add_argument("--finetune", help="the WER table's fine-tuning setting to read")
    plot.add_argument("--out", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "table":
        write_st_table(st_table(args.scores), args.csv)
        return
    points = plot_bleu_vs_wer(
        pd.read_csv(args.table), pd.read_csv(args.wer_table), args.out, finetune=args.finetune
    )
    logging.info("%d cells with both BLEU and WER drawn in %s", points, args.out)


if __name__ == "__main__":
    main()
