"""align_llm stage: a frozen upstream aligned to a causal LM (layer weights, projector, LoRA).

Trains on the (utterance, task) examples of the ST corpus' training split, keeps the epoch with
the lowest dev loss, and writes one checkpoint holding the trained parameters, the upstream's
weights and everything that rebuilds the speech LLM around the LM directory it names.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch
from lhotse import CutSet

from sslgrid.asr.finetune import encode_frozen
from sslgrid.config import load_config
from sslgrid.features.store import FeatureCache, load_cache
from sslgrid.grid import cache_name
from sslgrid.logs import setup_logging
from sslgrid.st.cells import st_corpus
from sslgrid.st.dutch_lm import load_causal_lm
from sslgrid.st.encoder import load_encoder
from sslgrid.st.model import SpeechLLM, SpeechLLMConfig
from sslgrid.st.projector import stack_for
from sslgrid.st.train import align_llm, make_examples
from sslgrid.train.checkpoint import input_fingerprints
from sslgrid.train.distributed import pick_device


def task_targets(cuts_path: Path, cache: FeatureCache) -> list[dict[str, str | None]]:
    """Per cached utterance: its Dutch transcript and English translation (None if unknown)."""
    texts = {}
    for cut in CutSet.from_file(cuts_path):
        sup = cut.supervisions[0]
        texts[cut.id] = {
            "transcribe": " ".join(s.text or "" for s in cut.supervisions),
            "translate": (sup.custom or {}).get("translation"),
        }
    missing = [i for i in cache.ids if i not in texts]
    if missing:
        raise KeyError(f"{cuts_path}: no cut for cached utterances {missing[:5]}")
    return [texts[i] for i in cache.ids]


def short_enough(cache: FeatureCache, max_seconds: float, where: str) -> FeatureCache:
    keep = [
        i for i, n in zip(cache.ids, cache.frames(), strict=True) if n <= max_seconds * cache.rate
    ]
    if len(keep) < len(cache):
        logging.warning(
            "%s: %d utterances longer than %.0f s left out",
            where,
            len(cache) - len(keep),
            max_seconds,
        )
    return cache.subset(keep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--upstream", required=True, help="'fbank' or a model of the grid")
    parser.add_argument("--pretrained", type=Path, help="pre-trained upstream checkpoint")
    parser.add_argument("--llm-dir", type=Path, required=True, help="the LM tuned on Dutch")
    parser.add_argument("--adapter", choices=["frozen", "lora"], required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA if any"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    setup_logging(args.log)
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    st = config["st"]
    corpus = st_corpus(config)
    feats = args.data_dir / "features" / corpus
    manifests = args.data_dir / "manifests" / corpus
    upstream, spec = load_encoder(args.upstream, args.pretrained, config, feats / "cmvn.pt")
    for p in upstream.parameters():
        p.requires_grad_(False)

    llm, tokenizer = load_causal_lm(args.llm_dir)
    frame_ms = upstream.downsample_rate / 16.0
    speech_config = SpeechLLMConfig(
        upstream_dim=upstream.output_dim,
        upstream_layers=upstream.num_layers,
        stack=stack_for(frame_ms, st["projector"]["stack_ms"]),
        projector_hidden=st["projector"]["hidden_size"],
        prompts={task: st["prompts"][task] for task in st["tasks"]},
        adapter=args.adapter,
        lora=dict(st["lora"]) if args.adapter == "lora" else {},
    )
    torch.manual_seed(config["seed"])
    device = pick_device(args.device, 0)
    model = SpeechLLM(llm, tokenizer, speech_config).to(device)
    upstream.to(device)
    splits = {}
    for split in ("train", "dev"):
        cache = short_enough(
            load_cache(feats / cache_name(args.upstream, split, config)),
            st["max_utterance_seconds"],
            f"{corpus}/{split}",
        )
        encoded = encode_frozen(upstream, cache, st["batch_seconds"], 1, not args.no_progress)
        examples = make_examples(
            model,
            task_targets(manifests / f"cuts_{split}.jsonl.gz", cache),
            [x.shape[1] for x in encoded],
            st["tasks"],
        )
        logging.info(
            "%s/%s: %d examples from %d utterances; left out: %s",
            corpus,
            split,
            len(examples),
            len(cache),
            examples.left_out or "none",
        )
        splits[split] = (encoded, examples)
    run_config = {
        "upstream": spec,
        "pretrained": str(args.pretrained) if args.pretrained else None,
        "llm_dir": str(args.llm_dir),
        # A rerun on a re-trained encoder or LM, or re-computed features, starts over.
        "inputs": input_fingerprints(
            args.pretrained,
            args.llm_dir,
            *(feats / cache_name(args.upstream, split, config) for split in ("train", "dev")),
            *(manifests / f"cuts_{split}.jsonl.gz" for split in ("train", "dev")),
        ),
        "speech_llm": speech_config.to_dict(),
        "corpus": corpus,
        "training": {
            k: st[k] for k in ("epochs", "batch_seconds", "learning_rate", "max_utterance_seconds")
        },
        "seed": config["seed"],
    }
    logging.info(
        "%s (%.0f ms frames, %d per LM position) -> %s, adapter %s",
        args.upstream,
        frame_ms,
        speech_config.stack,
        args.llm_dir,
        args.adapter,
    )
    align_llm(
        model,
        splits["train"],
        splits["dev"],
        run_config,
        args.out,
        epochs=st["epochs"],
        batch_frames=int(st["batch_seconds"] * 1000 / frame_ms),
        learning_rate=st["learning_rate"],
        seed=config["seed"],
        extra={"upstream": {k: v.cpu() for k, v in upstream.state_dict().items()}},
        progress=not args.no_progress,
    )


if __name__ == "__main__":
    main()
