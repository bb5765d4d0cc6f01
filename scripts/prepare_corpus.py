"""Prepare the embedded Fish Fillets corpus: Debian packages to FLAC audio and Lhotse manifests.

    python scripts/prepare_corpus.py --corpus fillets-nl --packages-json packages.json \\
        --download-dir D --audio-dir A --manifest-dir M --log prepare.log

``--packages-json`` is a JSON list (or a path to a file holding one) of
``{"name", "url", "sha256"}`` entries.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from sslgrid.corpora.fillets import prepare_fillets
from sslgrid.logs import setup_logging

log = logging.getLogger("prepare_corpus")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="corpus name, e.g. fillets-nl")
    parser.add_argument("--packages-json", required=True, help="JSON list, or a file with one")
    parser.add_argument("--download-dir", type=Path, required=True)
    parser.add_argument("--audio-dir", type=Path, required=True)
    parser.add_argument("--manifest-dir", type=Path, required=True)
    parser.add_argument("--language", default="nl", help="voice track: nl, cs, ...")
    parser.add_argument("--region", default="nl", help="vl (Flemish) or nl (Netherlands)")
    parser.add_argument("--domain", default="game-dialogue")
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-clips", type=int, default=None, help="keep a small subset")
    parser.add_argument("--exclude-level", action="append", default=[], dest="exclude_levels")
    parser.add_argument("--log", type=Path, default=None, help="also log to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def load_packages(spec: str) -> list[dict[str, Any]]:
    """The package list from inline JSON or from a JSON file."""
    text = spec if spec.lstrip().startswith("[") else Path(spec).read_text()
    packages = json.loads(text)
    if not isinstance(packages, list) or not all(isinstance(p, dict) for p in packages):
        raise SystemExit(f"--packages-json: expected a JSON list of objects, got {spec!r}")
    return packages


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log)
    started = time.monotonic()
    report = prepare_fillets(
        load_packages(args.packages_json),
        corpus=args.corpus,
        language=args.language,
        download_dir=args.download_dir,
        audio_dir=args.audio_dir,
        manifest_dir=args.manifest_dir,
        region=args.region,
        domain=args.domain,
        dev_fraction=args.dev_fraction,
        test_fraction=args.test_fraction,
        seed=args.seed,
        max_clips=args.max_clips,
        exclude_levels=args.exclude_levels,
        progress=not args.no_progress,
    )
    for split, summary in report["splits"].items():
        log.info(
            "%s: %d utterances, %.3f h, %d speakers, %d levels",
            split,
            summary["utterances"],
            summary["hours"],
            summary["num_speakers"],
            len(summary["levels"]),
        )
    log.info("done in %.1f s", time.monotonic() - started)


if __name__ == "__main__":
    main()
