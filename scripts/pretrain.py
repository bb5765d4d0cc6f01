"""pretrain stage: pre-train one upstream on a nested subset of a pool's training audio."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from lhotse import CutSet

from sslgrid.config import load_config
from sslgrid.corpora.subsets import nested_subset_by_hours, parse_amount
from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import load_cache
from sslgrid.grid import cache_name, family, is_imported, model_args
from sslgrid.logs import setup_logging
from sslgrid.models.factory import build_upstream, upstream_spec
from sslgrid.models.importers import import_upstream
from sslgrid.train.distributed import close_world, init_world
from sslgrid.train.pretrain import pretrain_upstream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--pool", required=True, help="corpus whose training split is used")
    parser.add_argument("--amount", required=True, help="'all' or hours such as '0.5h'")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the job")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA if any"
    )
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    # Under torchrun: one process per GPU, which share the job's threads; rank 0 logs progress.
    world = init_world(args.device)
    setup_logging(args.log, logging.INFO if world.is_main else logging.WARNING)
    config = load_config(args.config)
    torch.set_num_threads(max(1, args.threads // world.local_size))
    pt = config["pretrain"]

    cache_file = cache_name(args.model, "train", config)
    cache = load_cache(args.data_dir / "features" / args.pool / cache_file)
    cuts = CutSet.from_file(args.data_dir / "manifests" / args.pool / "cuts_train.jsonl.gz")
    durations = {cut.id: cut.duration for cut in cuts}
    ids = nested_subset_by_hours(
        cache.ids, [durations[i] for i in cache.ids], parse_amount(args.amount), config["seed"]
    )
    cache = cache.subset(ids)
    fbank = FbankConfig(**config["features"])
    logging.info(
        "pool %s, amount %s: %d utterances, %.3f h", args.pool, args.amount, len(ids), cache.hours()
    )

    # Initial weights from the seed too: torch's own start seed differs between processes.
    torch.manual_seed(config["seed"])
    if is_imported(args.model, config):
        # Continued pre-training: start from the checkpoint, quantiser and all.
        path = config["imported"][args.model]["path"]
        model, arch = import_upstream(path)
        logging.info("continuing the pre-training of %s (%s)", args.model, path)
    else:
        arch = model_args(config, args.model)
        model = build_upstream(args.model, arch, fbank)
    if model.input_kind == "fbank":
        cmvn = torch.load(args.data_dir / "features" / args.pool / "cmvn.pt")
        model.frontend.set_cmvn(cmvn["mean"], cmvn["std"])
    logging.info(
        "%s: %.2f M parameters", args.model, sum(p.numel() for p in model.parameters()) / 1e6
    )
    run_config = {
        "upstream": upstream_spec(family(args.model, config), arch, fbank),
        "init": config["imported"][args.model]["path"] if is_imported(args.model, config) else None,
        "pool": args.pool,
        "amount": args.amount,
        "utterances": len(ids),
        "training": {
            k: pt[k] for k in ("epochs", "batch_seconds", "learning_rate", "max_utterance_seconds")
        },
        "seed": config["seed"],
    }
    pretrain_upstream(
        model,
        cache,
        run_config,
        args.out,
        epochs=pt["epochs"],
        batch_frames=int(pt["batch_seconds"] * cache.rate),
        learning_rate=pt["learning_rate"],
        seed=config["seed"],
        max_frames=int(pt["max_utterance_seconds"] * cache.rate),
        grad_accum=pt["grad_accum"],
        nonfinite=pt["nonfinite"],
        world=world,
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        close_world()
