"""corpus stage: Debian packages to 16 kHz FLAC audio and Lhotse manifests with level splits.

    python scripts/prepare_corpus.py --config config.yaml --corpus fillets-nl \\
        --download-dir data/downloads --audio-dir data/audio/fillets-nl \\
        --manifest-dir data/manifests/fillets-nl --log logs/corpus/fillets-nl.log

Everything about the corpus (packages and their SHA256, language, region, domain, split
fractions, seed) comes from the config's ``corpora.<name>`` entry.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from sslgrid.config import load_config
from sslgrid.corpora.fillets import prepare_fillets
from sslgrid.logs import setup_logging

log = logging.getLogger("prepare_corpus")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="sslgrid config file")
    parser.add_argument("--corpus", required=True, help="corpus name, e.g. fillets-nl")
    parser.add_argument("--download-dir", type=Path, required=True)
    parser.add_argument("--audio-dir", type=Path, required=True)
    parser.add_argument("--manifest-dir", type=Path, required=True)
    parser.add_argument("--exclude-level", action="append", default=[], dest="exclude_levels")
    parser.add_argument("--log", type=Path, default=None, help="also log to this file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.log)
    started = time.monotonic()
    config = load_config(args.config)
    if args.corpus not in config["corpora"]:
        raise SystemExit(
            f"{args.config}: no corpus {args.corpus!r} under corpora; "
            f"defined: {sorted(config['corpora'])}"
        )
    corpus = config["corpora"][args.corpus]
    report = prepare_fillets(
        corpus["packages"],
        corpus=args.corpus,
        language=corpus["language"],
        download_dir=args.download_dir,
        audio_dir=args.audio_dir,
        manifest_dir=args.manifest_dir,
        region=corpus["region"],
        domain=corpus["domain"],
        dev_fraction=corpus["dev_fraction"],
        test_fraction=corpus["test_fraction"],
        seed=config["seed"],
        max_clips=corpus["max_clips"],
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
