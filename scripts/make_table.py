"""Collect score JSON files into the results table (CSV) and its report (Markdown).

Each cell also gets the paired bootstrap p-value against the fbank baseline of its setting,
from the per-utterance TSVs beside the score files.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import yaml

from sslgrid.config import load_config
from sslgrid.grid import finetune_setting, pool_columns, split_pretrain_repeat
from sslgrid.metrics.compare import pvalues_against_baseline
from sslgrid.metrics.table import (
    PVALUE_COLUMN,
    WerTable,
    describe_environment,
    write_text_atomic,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scores", nargs="+", required=True, help="score JSON files")
    parser.add_argument("--csv", required=True, help="long-format CSV to write")
    parser.add_argument("--md", required=True, help="Markdown report to write")
    parser.add_argument(
        "--data-reports", nargs="*", default=[], help="data reports (report.md) to link to"
    )
    parser.add_argument(
        "--config", type=Path, help="effective config: adds each pool's language and domain"
    )
    parser.add_argument(
        "--config-out", type=Path, help="where to write the validated config (for the report)"
    )
    return parser.parse_args(argv)


def add_pool_columns(scores: list[dict], columns: dict[str, dict[str, str]]) -> None:
    """Give each score the language and domain of its pre-training pool as coordinates."""
    for score in scores:
        pool = score["coords"].get("pool")
        if pool not in columns:
            raise KeyError(f"pool {pool!r} of a score file is not a pool of the config")
        score["coords"]["pool_language"] = columns[pool]["language"]
        score["coords"]["pool_domain"] = columns[pool]["domain"]


def add_finetune_columns(scores: list[dict], config: dict) -> None:
    """Give each score its fine-tuning mode, hours of labelled data and repeat number (0: the
    first fine-tuning) as coordinates."""
    for score in scores:
        setting = finetune_setting(config, score["coords"]["finetune"])
        score["coords"]["finetune_mode"] = setting.mode
        score["coords"]["labelled"] = setting.amount
        score["coords"]["repeat"] = setting.repeat


def main(argv: list[str] | None = None) -> None:
    """Read the score files and write both tables."""
    args = parse_args(argv)
    scores = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.scores]
    for score in scores:
        # amount "0.5h-r1" (pre-training repeat 1 of 0.5 h): amount 0.5h, pretrain_repeat 1.
        score["coords"] = split_pretrain_repeat(score["coords"])
    if args.config is not None:
        config = load_config(args.config)
        add_pool_columns(scores, pool_columns(config))
        add_finetune_columns(scores, config)
        if args.config_out is not None:
            write_text_atomic(args.config_out, yaml.safe_dump(config, sort_keys=False))
    for score, pvalue in zip(scores, pvalues_against_baseline(args.scores), strict=True):
        score[PVALUE_COLUMN] = pvalue
    table = WerTable(scores)
    table.to_csv(args.csv)
    links = [
        f"data report: [{Path(r).parent.name}]({os.path.relpath(r, Path(args.md).parent)})"
        for r in args.data_reports
    ]
    table.to_markdown(args.md, describe_environment() + links)


if __name__ == "__main__":
    main()
