"""dutch_lm stage: the causal LM tuned on Standard Dutch that speech is aligned to.

From ``st.llms.<name>``: loads ``base`` (a local Hugging Face directory) or builds a small LM
from scratch, tunes it on Dutch text that holds no dev/test sentence, and writes a Hugging Face
directory (config, weights, tokenizer) with ``lm_text.json`` (sources, counts, losses) and
``text/<phase>.jsonl``, the exact text of each training phase.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from sslgrid.config import load_config
from sslgrid.logs import setup_logging
from sslgrid.st.cells import held_out_corpora, st_corpus
from sslgrid.st.dutch_lm import build_lm, save_lm
from sslgrid.st.lm_text import gather_lm_text, split_texts
from sslgrid.train.distributed import pick_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--llm", required=True, help="an entry of st.llms")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--download-dir", type=Path, default=Path("data/downloads"))
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument(
        "--checkpoint-dir", type=Path, help="resumable training state (default: beside out-dir)"
    )
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
    if args.llm not in config["st"]["llms"]:
        parser.error(f"--llm {args.llm!r} is not in st.llms {sorted(config['st']['llms'])}")
    settings = config["st"]["llms"][args.llm]
    manifests = args.data_dir / "manifests"
    corpus = st_corpus(config)
    text = gather_lm_text(
        settings["text"], manifests, corpus, held_out_corpora(config), args.download_dir
    )
    dev = [nl for nl, _ in split_texts(manifests / corpus / "cuts_dev.jsonl.gz")]
    checkpoints = args.checkpoint_dir or args.out_dir.with_name(f".{args.out_dir.name}.checkpoints")
    model, tokenizer, report, texts = build_lm(
        settings,
        text,
        config["st"]["prompts"]["translate"],
        checkpoints,
        config["seed"],
        dev_dutch=dev,
        progress=not args.no_progress,
        device=pick_device(args.device, 0),
    )
    report = {"text": text.report, **report}
    # One JSON string per line: prompts hold line breaks.
    files = {
        f"text/{phase}.jsonl": "".join(
            json.dumps(line, ensure_ascii=False) + "\n" for line in lines
        )
        for phase, lines in texts.items()
    }
    files["lm_text.json"] = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    save_lm(model, tokenizer, args.out_dir, files)
    logging.info(
        "LM %s: %d parameters, vocabulary %d, written to %s",
        args.llm,
        report["parameters"],
        report["vocab_size"],
        args.out_dir,
    )


if __name__ == "__main__":
    main()
