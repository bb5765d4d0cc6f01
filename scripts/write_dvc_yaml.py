"""Write dvc.yaml from the grid in config.yaml (the same stages Snakemake runs)."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from sslgrid.config import load_config
from sslgrid.dvc_pipeline import render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--out", type=Path, default=Path("dvc.yaml"))
    args = parser.parse_args()
    written = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    args.out.write_text(render(load_config(args.config), written), encoding="utf-8")


if __name__ == "__main__":
    main()
