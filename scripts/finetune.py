"""finetune stage: a CTC recogniser on a frozen upstream (or on plain filterbanks)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from lhotse import CutSet

from sslgrid.asr.downstream import DownstreamConfig, LinearHeadConfig
from sslgrid.asr.finetune import finetune_frozen, finetune_full, frame_repeat_for
from sslgrid.config import load_config
from sslgrid.corpora.subsets import SubsetError, nested_subset_by_hours, parse_amount
from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import FeatureCache, load_cache
from sslgrid.grid import cache_name, family, is_imported, repeat_seed
from sslgrid.logs import setup_logging
from sslgrid.models.factory import build_upstream, load_upstream, upstream_spec
from sslgrid.train.checkpoint import input_fingerprints
from sslgrid.train.distributed import close_world, init_world
from sslgrid.train.loop import EarlyStopping


def transcripts(
    cuts_path: Path, cache: FeatureCache, max_seconds: float
) -> tuple[FeatureCache, list[str]]:
    """Pair each cached utterance with its normalised transcript; drop over-long ones."""
    texts = {
        cut.id: " ".join(s.text for s in cut.supervisions) for cut in CutSet.from_file(cuts_path)
    }
    max_items = max_seconds * cache.rate
    keep = [i for i, n in zip(cache.ids, cache.frames(), strict=True) if n <= max_items]
    if len(keep) < len(cache):
        logging.warning(
            "%s: %d utterances longer than the maximum are left out",
            cuts_path,
            len(cache) - len(keep),
        )
    missing = [i for i in keep if i not in texts]
    if missing:
        raise KeyError(f"{cuts_path}: no transcript for cached utterances {missing[:5]}")
    return cache.subset(keep), [texts[i] for i in keep]


def labelled_subset(
    train: tuple[FeatureCache, list[str]], cuts_path: Path, labelled: str, config: dict
) -> tuple[FeatureCache, list[str]]:
    """The nested subset of ``labelled`` hours of the training data ("all": all of it)."""
    if labelled == "all":
        return train
    cache, texts = train
    durations = {cut.id: cut.duration for cut in CutSet.from_file(cuts_path)}
    try:
        hours = parse_amount(labelled, "labelled amount")
        ids = nested_subset_by_hours(
            cache.ids, [durations[i] for i in cache.ids], hours, config["seed"]
        )
    except SubsetError as err:
        raise SubsetError(f"finetune.amounts: {labelled}: {err}") from None
    text_of = dict(zip(cache.ids, texts, strict=True))
    logging.info("labelled subset %s: %d of %d utterances", labelled, len(ids), len(cache))
    return cache.subset(ids), [text_of[i] for i in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--upstream", required=True, help="'fbank' or a pre-trained model name")
    parser.add_argument("--pretrained", type=Path, help="pre-trained upstream checkpoint")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the job")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA if any"
    )
    parser.add_argument("--log", type=Path)
    parser.add_argument(
        "--mode", choices=["frozen", "full"], default="frozen", help="see finetune.modes"
    )
    parser.add_argument(
        "--labelled", default="all", help="hours of labelled data: 'all' or e.g. '0.5h'"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=0,
        help="fine-tuning repeat (finetune.repeats): same labels, another training seed",
    )
    args = parser.parse_args()
    if args.repeat < 0:
        parser.error(f"--repeat {args.repeat}: expected 0 or more")
    # Under torchrun: one process per GPU, which share the job's threads; rank 0 logs progress.
    world = init_world(args.device)
    setup_logging(args.log, logging.INFO if world.is_main else logging.WARNING)
    config = load_config(args.config)
    torch.set_num_threads(max(1, args.threads // world.local_size))
    ft = config["finetune"]
    corpus = ft["corpus"]
    fbank = FbankConfig(**config["features"])

    if args.upstream == "fbank":
        upstream = build_upstream("fbank", {}, fbank)
        cmvn = torch.load(args.data_dir / "features" / corpus / "cmvn.pt")
        upstream.frontend.set_cmvn(cmvn["mean"], cmvn["std"])
        spec = upstream_spec("fbank", {}, fbank)
    elif args.pretrained is None and is_imported(args.upstream, config):
        # An off-the-shelf checkpoint as it is (the study's English / XLSR-53 rows).
        from sslgrid.models.importers import import_upstream

        upstream, arch = import_upstream(
            config["imported"][args.upstream]["path"],
            fbank=fbank,
            family=family(args.upstream, config),
        )
        spec = upstream_spec(family(args.upstream, config), arch, fbank)
    else:
        if args.pretrained is None:
            parser.error(f"--pretrained is required for upstream {args.upstream!r}")
        upstream = load_upstream(args.pretrained)
        spec = torch.load(args.pretrained, map_location="cpu", weights_only=False)["config"][
            "upstream"
        ]

    max_seconds = ft["max_utterance_seconds"]
    feats = args.data_dir / "features" / corpus
    manifests = args.data_dir / "manifests" / corpus
    train, dev = (
        transcripts(
            manifests / f"cuts_{split}.jsonl.gz",
            load_cache(feats / cache_name(args.upstream, split, config)),
            max_seconds,
        )
        for split in ("train", "dev")
    )
    if args.mode == "full" and args.upstream == "fbank":
        parser.error("the fbank baseline has nothing to fine-tune: it is only ever 'frozen'")
    train = labelled_subset(train, manifests / "cuts_train.jsonl.gz", args.labelled, config)
    stopping = ft.get("early_stopping")  # absent or null: every epoch
    learning_rate = ft["full"]["learning_rate"] if args.mode == "full" else ft["learning_rate"]
    frame_repeat = frame_repeat_for(upstream, ft["frame_rate_ms"])
    downstream: DownstreamConfig | LinearHeadConfig
    if args.mode == "full":
        downstream = LinearHeadConfig(dropout=ft["full"]["dropout"], frame_repeat=frame_repeat)
    else:
        downstream = DownstreamConfig(**ft["downstream"], frame_repeat=frame_repeat)
    imported = config["imported"].get(args.upstream) if args.pretrained is None else None
    # The labelled subset above is drawn with the grid's seed whatever the repeat; the
    # recogniser's initialisation, batch order and dropout follow the repeat's own seed.
    seed = repeat_seed(config["seed"], args.repeat)
    run_config = {
        "upstream": spec,
        "pretrained": str(args.pretrained) if args.pretrained else None,
        # A rerun on a re-trained upstream or re-computed features starts over (see there).
        "inputs": input_fingerprints(
            args.pretrained,
            imported["path"] if imported else None,
            *(feats / cache_name(args.upstream, split, config) for split in ("train", "dev")),
            *(manifests / f"cuts_{split}.jsonl.gz" for split in ("train", "dev")),
            feats / "cmvn.pt" if args.upstream == "fbank" else None,
        ),
        "corpus": corpus,
        "mode": args.mode,
        "labelled": args.labelled,
        "labelled_utterances": len(train[1]),
        "downstream": downstream.to_dict(),
        "training": {
            **{k: ft[k] for k in ("epochs", "batch_seconds", "max_utterance_seconds")},
            "learning_rate": learning_rate,
            # Only when set: checkpoints of runs without it keep their configuration.
            **({"early_stopping": stopping} if stopping else {}),
        },
        "seed": seed,
        # Only repeats after the first say so: the first trains as a grid without repeats.
        **({"repeat": args.repeat} if args.repeat else {}),
    }
    logging.info(
        "fine-tuning on %s: %d train, %d dev utterances", corpus, len(train[1]), len(dev[1])
    )
    if args.repeat:
        logging.info("repeat %d: training seed %d", args.repeat, seed)
    train_recogniser = finetune_full if args.mode == "full" else finetune_frozen
    train_recogniser(
        upstream,
        train,
        dev,
        downstream,
        run_config,
        args.out,
        epochs=ft["epochs"],
        batch_seconds=ft["batch_seconds"],
        learning_rate=learning_rate,
        seed=seed,
        grad_accum=ft["grad_accum"],
        nonfinite=ft["nonfinite"],
        world=world,
        early_stopping=EarlyStopping("dev_cer", **stopping) if stopping else None,
    )


if __name__ == "__main__":
    try:
        main()
    finally:
        close_world()
