"""corpus stage: one corpus of the config to Lhotse manifests with train/dev/test splits.

    python scripts/prepare_corpus.py --config config.yaml --corpus fillets-nl \\
        --download-dir data/downloads --audio-dir data/audio/fillets-nl \\
        --manifest-dir data/manifests/fillets-nl --log logs/corpus/fillets-nl.log

Everything about the corpus (its recipe, packages and their SHA256 or local root, language,
region, domain, split fractions, seed) comes from the config's ``corpora.<name>`` entry.
Recipes: ``fillets`` (the embedded Debian voice track), ``synthetic`` (espeak-ng speech of
Dutch message catalogues), ``cgn``, ``commonvoice`` (+ CoVoST 2), ``mls``, ``fleurs`` and
``voxpopuli`` (local copies of those corpora).
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from lhotse import CutSet

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
    parser.add_argument("--workers", type=int, default=1, help="parallel synthesis jobs")
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
    report = prepare(args, corpus, config)
    for split, summary in report["splits"].items():
        log.info(
            "%s: %d utterances, %.3f h, %d speakers",
            split,
            summary["utterances"],
            summary["hours"],
            summary.get("num_speakers", len(summary.get("speakers", []))),
        )
    log.info("done in %.1f s", time.monotonic() - started)


def held_out_texts(manifest_root: Path, corpora: list[str]) -> set[str]:
    """Dev and test transcripts of ``corpora`` (their manifests must exist)."""
    texts = set()
    for name in corpora:
        for split in ("dev", "test"):
            for cut in CutSet.from_file(manifest_root / name / f"cuts_{split}.jsonl.gz"):
                texts.update(s.text for s in cut.supervisions if s.text)
    return texts


def held_out_levels(manifest_root: Path, corpora: list[str]) -> set[str]:
    """Game levels of the dev and test splits of ``corpora`` (their manifests must exist)."""
    levels = set()
    for name in corpora:
        for split in ("dev", "test"):
            path = manifest_root / name / f"cuts_{split}.jsonl.gz"
            for cut in CutSet.from_file(path):
                for sup in cut.supervisions:
                    level = (sup.custom or {}).get("level")
                    if level is None:
                        raise ValueError(
                            f"{path}: cut {cut.id!r} has no level; exclude_levels_of needs "
                            "a Fish Fillets corpus"
                        )
                    levels.add(level)
    return levels


def prepare(args: argparse.Namespace, corpus: dict, config: dict) -> dict:
    recipe = corpus["recipe"]
    progress = not args.no_progress
    if recipe == "synthetic":
        from sslgrid.corpora.synthetic import prepare_synthetic

        exclude = corpus.get("exclude_text_of", [])
        settings = {k: v for k, v in corpus.items() if k != "exclude_text_of"}
        return prepare_synthetic(
            settings,
            args.download_dir,
            args.audio_dir,
            args.manifest_dir,
            config["seed"],
            exclude_texts=held_out_texts(args.manifest_dir.parent, exclude),
            progress=progress,
            corpus=args.corpus,
            workers=args.workers,
        )
    if recipe != "fillets":
        from sslgrid.corpora import cgn, public

        prepare_local = {
            "cgn": cgn.prepare_cgn,
            "commonvoice": public.prepare_commonvoice,
            "mls": public.prepare_mls,
            "fleurs": public.prepare_fleurs,
            "voxpopuli": public.prepare_voxpopuli,
        }[recipe]
        return prepare_local(
            {**corpus, "name": args.corpus},
            args.audio_dir,
            args.manifest_dir,
            config["seed"],
            progress=progress,
        )
    return prepare_fillets(
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
        exclude_levels=sorted(
            set(args.exclude_levels)
            | held_out_levels(args.manifest_dir.parent, corpus.get("exclude_levels_of", []))
        ),
        progress=progress,
    )


if __name__ == "__main__":
    main()
