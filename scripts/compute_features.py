"""features stage: the input cache of one kind for each split of a corpus.

``fbank``: log-mel filterbanks plus the training split's CMVN; ``wav``: 16-bit waveforms.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from lhotse import CutSet

from sslgrid.config import load_config
from sslgrid.corpora.validate import validation_settings
from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import KINDS, cmvn_of, compute_cache, save_cache
from sslgrid.logs import setup_logging
from sslgrid.train.checkpoint import atomic_save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest-dir", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--splits", nargs="+", default=["train", "dev", "test"])
    parser.add_argument("--config", type=Path, required=True, help="sslgrid config file")
    parser.add_argument("--kind", choices=KINDS, default="fbank", help="what the cache holds")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    setup_logging(args.log)
    torch.set_num_threads(args.threads)

    settings = load_config(args.config)
    config = FbankConfig(**settings["features"])
    # strict: the first bad clip stops the stage, naming its file; skip: it is left out and
    # listed in the cache (FeatureCache.dropped) and the log.
    policy, limits = validation_settings(settings)
    for split in args.splits:
        cuts = CutSet.from_file(args.manifest_dir / f"cuts_{split}.jsonl.gz")
        cache = compute_cache(cuts, config, args.kind, policy=policy, limits=limits)
        save_cache(cache, args.out_dir / f"{args.kind}_{split}.pt")
        logging.info("%s %s: %d utterances (%.2f h)", args.kind, split, len(cache), cache.hours())
        for cut_id, why in cache.dropped.items():
            logging.warning("%s %s: left out %s (%s)", args.kind, split, cut_id, why)
        if split == "train" and args.kind == "fbank":
            stats = cmvn_of(cache)
            atomic_save(stats, args.out_dir / "cmvn.pt")


if __name__ == "__main__":
    main()
