"""pretrain stage: pre-train one upstream on a nested subset of a pool's training audio."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from lhotse import CutSet

from sslgrid.config import load_config
from sslgrid.corpora.subsets import SubsetError, nested_subset_by_hours, parse_amount
from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import pool_cache, pool_id, pooled_cmvn
from sslgrid.grid import (
    cache_name,
    continued_from,
    family,
    is_imported,
    model_args,
    pool_corpora,
    pretrain_settings,
    repeat_seed,
    split_amount_label,
)
from sslgrid.logs import setup_logging
from sslgrid.models.factory import build_upstream, load_upstream, spec_args, upstream_spec
from sslgrid.train.checkpoint import input_fingerprints
from sslgrid.train.distributed import close_world, init_world
from sslgrid.train.pretrain import pretrain_upstream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--pool", required=True, help="pool: a corpus, a mix or a continued pool of the config"
    )
    parser.add_argument(
        "--amount",
        required=True,
        help="'all' or hours such as '0.5h', plus '-r<r>' for pre-training repeat r > 0",
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the job")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA if any"
    )
    parser.add_argument("--log", type=Path)
    parser.add_argument(
        "--init", type=Path, help="pre-trained checkpoint a continued pool starts from"
    )
    args = parser.parse_args()
    # Under torchrun: one process per GPU, which share the job's threads; rank 0 logs progress.
    world = init_world(args.device)
    setup_logging(args.log, logging.INFO if world.is_main else logging.WARNING)
    config = load_config(args.config)
    torch.set_num_threads(max(1, args.threads // world.local_size))
    pt = pretrain_settings(config, args.model)
    own = {k: v for k, v in pt.items() if v != config["pretrain"].get(k)}
    if own:
        logging.info("models.%s.pretrain: %s (instead of the pretrain section's)", args.model, own)

    corpora = pool_corpora(args.pool, config)
    cache = pool_cache(args.data_dir, corpora, cache_name(args.model, "train", config))
    durations = {
        (pool_id(corpus, cut.id) if len(corpora) > 1 else cut.id): cut.duration
        for corpus in corpora
        for cut in CutSet.from_file(args.data_dir / "manifests" / corpus / "cuts_train.jsonl.gz")
    }
    amount, repeat = split_amount_label(args.amount)
    try:
        # The same audio for every repeat: the subset is drawn with the grid's seed.
        ids = nested_subset_by_hours(
            cache.ids, [durations[i] for i in cache.ids], parse_amount(amount), config["seed"]
        )
    except SubsetError as err:
        raise SubsetError(
            f"pretrain.amounts / pool {args.pool!r} ({'+'.join(corpora)}): {err}"
        ) from None
    cache = cache.subset(ids)
    fbank = FbankConfig(**config["features"])
    logging.info(
        "pool %s (%s), amount %s: %d utterances, %.3f h",
        args.pool,
        " + ".join(corpora),
        args.amount,
        len(ids),
        cache.hours(),
    )

    # Initial weights, masks and batch order follow the repeat's seed (the grid's for the
    # first); torch's own start seed differs between processes.
    seed = repeat_seed(config["seed"], repeat, "pre-training")
    if repeat:
        logging.info("pre-training repeat %d: training seed %d", repeat, seed)
    torch.manual_seed(seed)
    start = continued_from(args.pool, config)
    init: str | None = None
    if start is not None:
        # Continued pre-training from another pool's model (e.g. Czech, then Dutch). Its
        # input normalisation is part of what it learnt, so it is kept.
        if args.init is None:
            parser.error(f"--init is required: pool {args.pool!r} continues from pool {start!r}")
        init = str(args.init)
        model = load_upstream(init)
        arch = spec_args(
            torch.load(init, map_location="cpu", weights_only=False)["config"]["upstream"]
        )
        logging.info("continuing the pre-training of %s from %s", args.model, init)
    elif is_imported(args.model, config):
        # Continued pre-training: start from the checkpoint, quantiser and all.
        init = config["imported"][args.model]["path"]
        from sslgrid.models.importers import import_upstream

        model, arch = import_upstream(init, fbank=fbank, family=family(args.model, config))
        logging.info("continuing the pre-training of %s (%s)", args.model, init)
    else:
        arch = model_args(config, args.model)
        model = build_upstream(args.model, arch, fbank)
    if model.input_kind == "fbank" and start is None:
        cmvn = pooled_cmvn(
            [torch.load(args.data_dir / "features" / c / "cmvn.pt") for c in corpora]
        )
        model.frontend.set_cmvn(cmvn["mean"], cmvn["std"])
    logging.info(
        "%s: %.2f M parameters", args.model, sum(p.numel() for p in model.parameters()) / 1e6
    )
    run_config = {
        "upstream": upstream_spec(family(args.model, config), arch, fbank),
        "init": init,
        # A rerun on a re-trained initial model or re-computed features starts over.
        "inputs": input_fingerprints(
            init,
            *(
                args.data_dir / folder / c / name
                for c in corpora
                for folder, name in (
                    ("features", cache_name(args.model, "train", config)),
                    ("features", "cmvn.pt"),
                    ("manifests", "cuts_train.jsonl.gz"),
                )
            ),
        ),
        "pool": args.pool,
        "amount": args.amount,
        "utterances": len(ids),
        "training": {
            k: pt[k] for k in ("epochs", "batch_seconds", "learning_rate", "max_utterance_seconds")
        },
        "seed": seed,
        # Only repeats after the first say so: the first trains as a grid without repeats.
        **({"pretrain_repeat": repeat} if repeat else {}),
    }
    pretrain_upstream(
        model,
        cache,
        run_config,
        args.out,
        epochs=pt["epochs"],
        batch_frames=int(pt["batch_seconds"] * cache.rate),
        learning_rate=pt["learning_rate"],
        seed=seed,
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
