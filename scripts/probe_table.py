"""phone_probe_table stage: every probe result in results/phone_probe_table.csv."""

from __future__ import annotations

import argparse
from pathlib import Path

from sslgrid.metrics.table import write_text_atomic
from sslgrid.probe.report import probe_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", nargs="+", required=True, help="probe JSON files")
    parser.add_argument("--csv", type=Path, required=True)
    args = parser.parse_args()
    write_text_atomic(args.csv, probe_frame(args.probes).to_csv(index=False))


if __name__ == "__main__":
    main()
