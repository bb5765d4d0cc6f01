"""lm stage: a KenLM word n-gram on the training transcripts of one corpus.

    python scripts/train_lm.py --config config.yaml --corpus fillets-nl \\
        --out-dir results/lm/fillets-nl

Only the training split's text goes in. A training transcript that is also a dev or test
sentence (of this corpus or any corpus in ``test_sets``; short lines such as "ja" recur across
game levels) is left out and counted, so the LM never holds a sentence it is tuned or tested
on; ``train_ngram`` checks that again before estimating.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lhotse import CutSet

from sslgrid.config import load_config
from sslgrid.lm.ngram import lm_sentences, train_ngram
from sslgrid.logs import setup_logging
from sslgrid.text import normalise


def transcripts(path: Path) -> list[str]:
    return [s.text for cut in CutSet.from_file(path) for s in cut.supervisions if s.text]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--corpus", required=True, help="corpus whose training text is used")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    setup_logging(args.log)
    config = load_config(args.config)
    manifests = args.data_dir / "manifests"
    train = transcripts(manifests / args.corpus / "cuts_train.jsonl.gz")
    held_out_corpora = sorted({args.corpus, *(t.split("/")[0] for t in config["test_sets"])})
    held_out = [
        text
        for corpus in held_out_corpora
        for split in ("dev", "test")
        for text in transcripts(manifests / corpus / f"cuts_{split}.jsonl.gz")
    ]
    held_out_set = set(lm_sentences(held_out))
    kept = [t for t in train if normalise(t) not in held_out_set]
    logging.info(
        "%d training transcripts, %d left out because they are also dev/test sentences",
        len(train),
        len(train) - len(kept),
    )
    lm = train_ngram(kept, config["decode"]["lm"]["order"], args.out_dir, held_out=held_out)
    logging.info("LM from %d training sentences: %s", len(kept), lm.path)


if __name__ == "__main__":
    main()
