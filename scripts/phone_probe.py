"""phone_probe stage: linear phone probes on the frozen layers of one upstream.

Each probed layer's frames (20 ms models repeated to 10 ms) of the corpus' training split train
a linear classifier to the phone labels of the ``phone_labels`` stage; its frame accuracy on
the test split, with a bootstrap interval over utterances, goes to one JSON file per cell.
Which layers: ``probe.layers`` (``last``, ``all``, ``finetune`` = the layer the fine-tuned
recogniser's learnable layer weights favour, or a list of indices).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from sslgrid.asr.finetune import encode_frozen, frame_repeat_for
from sslgrid.config import load_config
from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import FeatureCache, load_cache
from sslgrid.grid import cache_name, family, is_imported
from sslgrid.logs import setup_logging
from sslgrid.metrics.table import write_text_atomic
from sslgrid.models.factory import build_upstream, load_upstream
from sslgrid.models.upstream import Upstream
from sslgrid.probe.phones import PHONES
from sslgrid.probe.probe import ProbeSettings, fit_and_score, match_length

# Utterances encoded at once: bounds memory to one chunk of all layers plus the kept layers.
ENCODE_CHUNK = 64


def frozen_upstream(
    name: str, pretrained: Path | None, config: dict[str, Any], cmvn_path: Path
) -> Upstream:
    """The upstream as the finetune stage builds it (fbank, imported as it is, or pre-trained)."""
    if name == "fbank":
        upstream = build_upstream("fbank", {}, FbankConfig(**config["features"]))
        cmvn = torch.load(cmvn_path)
        upstream.frontend.set_cmvn(cmvn["mean"], cmvn["std"])
    elif pretrained is None and is_imported(name, config):
        from sslgrid.models.importers import import_upstream

        upstream, _ = import_upstream(
            config["imported"][name]["path"],
            fbank=FbankConfig(**config["features"]),
            family=family(name, config),
        )
    elif pretrained is None:
        raise ValueError(f"--pretrained is required for upstream {name!r}")
    else:
        upstream = load_upstream(pretrained)
    for p in upstream.parameters():
        p.requires_grad_(False)
    return upstream.eval()


def finetune_layer(finetuned: Path) -> int:
    """The layer with the largest learnable weight in a fine-tuned recogniser's layer sum."""
    state = torch.load(finetuned, map_location="cpu", weights_only=False)["model"]
    key = "layer_sum.weights"
    if key not in state:
        raise KeyError(f"{finetuned}: no {key} in the fine-tuned model's weights")
    return int(torch.argmax(state[key]))


def chosen_layers(choice: Any, num_layers: int, finetuned: Path | None) -> list[int]:
    """Layer indices for ``probe.layers``; an index out of range is an error naming it."""
    if choice == "last":
        return [num_layers - 1]
    if choice == "all":
        return list(range(num_layers))
    if choice == "finetune":
        if finetuned is None:
            raise ValueError("probe.layers: 'finetune' needs --finetuned (the fine-tuned model)")
        return [finetune_layer(finetuned)]
    layers = sorted({i if i >= 0 else num_layers + i for i in choice})
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise ValueError(f"probe.layers: {bad} out of range for an upstream of {num_layers} layers")
    return layers


def encoded_with_labels(
    upstream: Upstream,
    cache: FeatureCache,
    labels_file: Path,
    layers: list[int],
    repeat: int,
    tolerance: int,
    batch_seconds: float,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per aligned utterance: the chosen layers' frames (K, T, D) and labels matched to T."""
    data = torch.load(labels_file, weights_only=False)
    labels = dict(zip(data["ids"], data["labels"], strict=True))
    ids = [i for i in cache.ids if i in labels]
    if not ids:
        raise ValueError(f"{labels_file}: no labelled utterance is in the feature cache")
    out = []
    for start in range(0, len(ids), ENCODE_CHUNK):
        chunk = ids[start : start + ENCODE_CHUNK]
        encoded = encode_frozen(
            upstream, cache.subset(chunk), batch_seconds, repeat, progress=False
        )
        for utt_id, hidden in zip(chunk, encoded, strict=True):
            y = match_length(labels[utt_id], hidden.shape[1], tolerance, utt_id)
            out.append((hidden[layers].clone(), y))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--pretrained", type=Path)
    parser.add_argument("--finetuned", type=Path, help="fine-tuned model (probe.layers: finetune)")
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--labels-dir", type=Path, required=True, help="the phone_labels output")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--coord", action="append", default=[], help="key=value grid coordinate")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    setup_logging(args.log)
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    settings = config["probe"]
    feats = args.data_dir / "features" / args.corpus
    upstream = frozen_upstream(args.upstream, args.pretrained, config, feats / "cmvn.pt")
    layers = chosen_layers(settings["layers"], upstream.num_layers, args.finetuned)
    repeat = frame_repeat_for(upstream, 10.0)
    logging.info(
        "%s: probing layers %s of %d (frames repeated %dx)",
        args.upstream,
        layers,
        upstream.num_layers,
        repeat,
    )

    def split_data(split: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return encoded_with_labels(
            upstream,
            load_cache(feats / cache_name(args.upstream, split, config)),
            args.labels_dir / f"labels_{split}.pt",
            layers,
            repeat,
            settings["frame_tolerance"],
            config["finetune"]["batch_seconds"],
        )

    started = time.monotonic()
    train, test = split_data("train"), split_data(args.split)
    encoded = time.monotonic()
    probe_settings = ProbeSettings(
        epochs=settings["epochs"],
        batch_frames=settings["batch_frames"],
        learning_rate=settings["learning_rate"],
    )
    coords = dict(c.split("=", 1) for c in args.coord)
    coords.update(corpus=args.corpus, split=args.split)
    rows = []
    for k, layer in enumerate(layers):
        result = fit_and_score(
            [(x[k], y) for x, y in train],
            [(x[k], y) for x, y in test],
            len(PHONES),
            probe_settings,
            seed=config["seed"],
        )
        rows.append(
            {
                "layer_choice": str(settings["layers"]),
                "layer": layer,
                "num_layers": upstream.num_layers,
                **asdict(result),
            }
        )
        logging.info(
            "layer %d: frame accuracy %.3f [%.3f, %.3f] (majority %.3f)",
            layer,
            result.accuracy,
            result.accuracy_low,
            result.accuracy_high,
            result.majority,
        )
    record = {
        "coords": coords,
        "rows": rows,
        "seconds": {
            "encode": round(encoded - started, 1),
            "probe": round(time.monotonic() - encoded, 1),
        },
    }
    write_text_atomic(args.out, json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
