"""features stage: log-mel filterbank cache for each split of a corpus, plus training CMVN."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from lhotse import CutSet

from sslgrid.config import load_config
from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import cmvn_of, compute_cache, save_cache
from sslgrid.logs import setup_logging
from sslgrid.train.checkpoint import atomic_save


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest-dir", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--splits", nargs="+", default=["train", "dev", "test"])
    parser.add_argument("--config", type=Path, required=True, help="sslgrid config file")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    setup_logging(args.log)
    torch.set_num_threads(args.threads)

    config = FbankConfig(**load_config(args.config)["features"])
    for split in args.splits:
        cuts = CutSet.from_file(args.manifest_dir / f"cuts_{split}.jsonl.gz")
        cache = compute_cache(cuts, config)
        save_cache(cache, args.out_dir / f"fbank_{split}.pt")
        frames = sum(cache.frames())
        logging.info(
            "%s: %d utterances, %d frames (%.2f h)",
            split,
            len(cache),
            frames,
            frames * config.frame_shift_ms / 1000 / 3600,
        )
        if split == "train":
            stats = cmvn_of(cache)
            atomic_save(stats, args.out_dir / "cmvn.pt")


if __name__ == "__main__":
    main()
