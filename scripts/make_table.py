"""Collect score JSON files into the results table (CSV) and its report (Markdown)."""

from __future__ import annotations

import argparse

from sslgrid.metrics.table import WerTable


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scores", nargs="+", required=True, help="score JSON files")
    parser.add_argument("--csv", required=True, help="long-format CSV to write")
    parser.add_argument("--md", required=True, help="Markdown report to write")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Read the score files and write both tables."""
    args = parse_args(argv)
    table = WerTable.from_files(args.scores)
    table.to_csv(args.csv)
    table.to_markdown(args.md)


if __name__ == "__main__":
    main()
