"""phone_labels stage: phone labels per 10 ms frame for every split of a transcribed corpus.

The normalised transcripts are phonemised with espeak-ng's Dutch voice, a CTC phone recogniser
is trained on the training split's fbank frames, and every utterance is force-aligned
(``sslgrid.probe.align``). Writes ``aligner.pt``, ``labels_<split>.pt`` (ids, one int64 label
per fbank frame, utterances that could not be aligned and why) and ``report.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from pathlib import Path

import torch
from lhotse import CutSet
from tqdm import tqdm

from sslgrid.config import load_config
from sslgrid.features.store import FeatureCache, load_cache
from sslgrid.logs import setup_logging
from sslgrid.metrics.table import write_text_atomic
from sslgrid.probe.align import (
    AlignerConfig,
    PhoneRecogniser,
    align_utterance,
    regions_to_labels,
    train_recogniser,
)
from sslgrid.probe.phones import PHONES, EspeakPhonemiser, phone_ids
from sslgrid.train.checkpoint import atomic_save

SPLITS = ("train", "dev", "test")


def transcripts(cuts_path: Path) -> dict[str, str]:
    return {
        cut.id: " ".join(s.text for s in cut.supervisions) for cut in CutSet.from_file(cuts_path)
    }


def normalised_frames(cache: FeatureCache, cmvn: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    std = cmvn["std"].clamp_min(1e-5)
    return [(x.float() - cmvn["mean"]) / std for x in cache.feats]


def phone_targets(
    cache: FeatureCache, texts: dict[str, str], phonemiser: EspeakPhonemiser
) -> tuple[list[list[int] | None], dict[str, str]]:
    """Phone ids per cached utterance; ``None`` (and why) where there is nothing to align."""
    missing = {i: "no transcript in the manifest" for i in cache.ids if i not in texts}
    phones = phonemiser.phonemise([texts.get(i, "") for i in cache.ids])
    targets: list[list[int] | None] = []
    for utt_id, p in zip(cache.ids, phones, strict=True):
        if utt_id in missing:
            targets.append(None)
        elif not p:
            missing[utt_id] = "no phones in the transcript"
            targets.append(None)
        else:
            targets.append(phone_ids(p))
    return targets, missing


def label_split(
    model: PhoneRecogniser,
    ids: list[str],
    feats: list[torch.Tensor],
    targets: list[list[int] | None],
    skipped: dict[str, str],
    progress: bool,
) -> dict:
    labels: dict[str, torch.Tensor] = {}
    unaligned = dict(skipped)
    for utt_id, x, y in tqdm(
        list(zip(ids, feats, targets, strict=True)),
        desc="align",
        disable=not progress,
        mininterval=5,
    ):
        if y is None:
            continue
        regions = align_utterance(model, x, y)
        if regions is None:
            unaligned[utt_id] = f"{len(y)} phones do not fit {x.shape[0]} frames"
            continue
        labels[utt_id] = regions_to_labels(regions, x.shape[0])
    return {"ids": list(labels), "labels": list(labels.values()), "unaligned": unaligned}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    setup_logging(args.log)
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    aligner_config = AlignerConfig(**config["probe"]["aligner"])
    feats_dir = args.data_dir / "features" / args.corpus
    cmvn = torch.load(feats_dir / "cmvn.pt")
    phonemiser = EspeakPhonemiser(workers=max(1, args.threads))
    started = time.monotonic()

    data = {}
    for split in SPLITS:
        cache = load_cache(feats_dir / f"fbank_{split}.pt")
        texts = transcripts(args.data_dir / "manifests" / args.corpus / f"cuts_{split}.jsonl.gz")
        targets, skipped = phone_targets(cache, texts, phonemiser)
        data[split] = (cache, normalised_frames(cache, cmvn), targets, skipped)
    phonemised = time.monotonic()

    cache, feats, targets, _ = data["train"]
    train = [(x, y) for x, y in zip(feats, targets, strict=True) if y is not None]
    model, history = train_recogniser(
        [x for x, _ in train],
        [y for _, y in train],
        aligner_config,
        seed=config["seed"],
        frames_per_second=cache.rate,
        progress=not args.no_progress,
    )
    trained = time.monotonic()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_save(
        {
            "model": model.state_dict(),
            "config": aligner_config.to_dict(),
            "phones": PHONES,
            "input_dim": feats[0].shape[1],
            "history": history,
        },
        args.out_dir / "aligner.pt",
    )
    frame_shift_ms = 1000.0 / cache.rate
    report: dict = {
        "corpus": args.corpus,
        "phones": list(PHONES),
        "frame_shift_ms": frame_shift_ms,
        "aligner": aligner_config.to_dict(),
        "history": history,
        "unknown_mnemonics": dict(phonemiser.unknown.most_common()),
        "splits": {},
    }
    for split, (cache, feats, targets, skipped) in data.items():
        out = label_split(model, cache.ids, feats, targets, skipped, not args.no_progress)
        out.update(phones=PHONES, frame_shift_ms=frame_shift_ms)
        atomic_save(out, args.out_dir / f"labels_{split}.pt")
        counts = Counter()
        for labels in out["labels"]:
            counts.update(dict(enumerate(torch.bincount(labels, minlength=len(PHONES)).tolist())))
        report["splits"][split] = {
            "aligned": len(out["ids"]),
            "unaligned": len(out["unaligned"]),
            "unaligned_examples": dict(list(out["unaligned"].items())[:10]),
            "frames": int(sum(counts.values())),
            "frames_per_phone": {PHONES[i]: n for i, n in sorted(counts.items()) if n},
        }
        logging.info(
            "%s/%s: %d aligned, %d not", args.corpus, split, len(out["ids"]), len(out["unaligned"])
        )
    report["seconds"] = {
        "phonemise": round(phonemised - started, 1),
        "train": round(trained - phonemised, 1),
        "align": round(time.monotonic() - trained, 1),
    }
    write_text_atomic(
        args.out_dir / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    )


if __name__ == "__main__":
    main()
