"""Word n-gram language models trained with KenLM's ``lmplz`` on the training transcripts only.

An LM that has seen a dev or test sentence makes the WER of that set meaningless, so the API
keeps the two apart on purpose: ``train_ngram`` takes the training transcripts and, as a
required keyword, the held-out (dev/test) sentences, and refuses to train when any of them
occurs in the training text (``check_no_held_out_text``). The model directory keeps the exact
text the LM was trained on (``corpus.txt``), so the separation can be audited later.

Both sides are put through ``sslgrid.text.normalise`` first, the form that transcripts,
hypotheses and references are compared in; it is idempotent, so already normalised
transcripts pass unchanged.

The KenLM tools are not on PyPI as binaries; ``scripts/build_kenlm.sh`` builds them from the
``kenlm`` source distribution into the virtual environment's ``bin``, where
``find_kenlm_tool`` looks first.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sslgrid.text import normalise

log = logging.getLogger(__name__)

LMPLZ = "lmplz"
BUILD_BINARY = "build_binary"
BUILD_HINT = "build it with `scripts/build_kenlm.sh .venv` (or `make setup`)"

_NGRAM_COUNT = re.compile(r"^ngram (\d+)=(\d+)$")


class KenLMToolNotFoundError(FileNotFoundError):
    """``lmplz`` or ``build_binary`` is neither where it was asked for nor installed."""


class HeldOutTextInLMError(ValueError):
    """A dev/test sentence occurs in the text a language model would be trained on."""


@dataclass(frozen=True)
class NgramLM:
    """The files of one trained word n-gram.

    Args:
        arpa: the model in ARPA text format.
        binary: the same model in KenLM's binary format (loads much faster), or None.
        corpus: the normalised training sentences the model was estimated on, one per line.
        vocabulary: the words of ``corpus``, sorted, one per line: the decoder's lexicon.
        order: the n-gram order.
    """

    arpa: Path
    binary: Path | None
    corpus: Path
    vocabulary: Path
    order: int

    @property
    def path(self) -> Path:
        """The file a decoder should load: the binary when there is one."""
        return self.binary if self.binary is not None else self.arpa


def find_kenlm_tool(name: str) -> Path | None:
    """``name`` next to the running Python (the venv's ``bin``), else on PATH, else None."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    on_path = shutil.which(name)
    return Path(on_path) if on_path else None


def kenlm_tool(name: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """The executable to run for KenLM tool ``name``: ``explicit`` if given, else found."""
    if explicit is not None:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise KenLMToolNotFoundError(f"{path} is not an executable KenLM {name}; {BUILD_HINT}")
        return path
    found = find_kenlm_tool(name)
    if found is None:
        raise KenLMToolNotFoundError(
            f"KenLM's {name} is neither in {Path(sys.executable).parent} nor on PATH; {BUILD_HINT}"
        )
    return found


def lm_sentences(texts: Iterable[str]) -> list[str]:
    """Normalised, non-empty sentences of ``texts``, in order (duplicates kept: they are counts)."""
    sentences = (normalise(text) for text in texts)
    return [sentence for sentence in sentences if sentence]


def word_vocabulary(sentences: Iterable[str]) -> list[str]:
    """The sorted distinct words of ``sentences`` (split on spaces, as normalised text is)."""
    return sorted({word for sentence in sentences for word in sentence.split()})


def out_of_vocabulary_rate(texts: Iterable[str], vocabulary: Iterable[str]) -> float:
    """Share of the running words of ``texts`` not in ``vocabulary``: with a lexicon decoder,
    a lower bound on the word error rate of those texts."""
    known = set(vocabulary)
    words = [word for sentence in lm_sentences(texts) for word in sentence.split()]
    if not words:
        raise ValueError("no words to measure an out-of-vocabulary rate on")
    return sum(word not in known for word in words) / len(words)


def check_no_held_out_text(
    train_texts: Iterable[str],
    held_out_texts: Iterable[str],
    *,
    min_words: int = 1,
) -> None:
    """Raise ``HeldOutTextInLMError`` if a held-out sentence occurs in the LM training text.

    Sentences are compared whole, after normalisation. ``min_words`` > 1 ignores held-out
    sentences shorter than that: in spontaneous speech, one-word turns such as "ja" occur in
    every split and say nothing about leakage. The default checks every sentence.
    """
    train = set(lm_sentences(train_texts))
    leaked = sorted(
        {
            sentence
            for sentence in lm_sentences(held_out_texts)
            if len(sentence.split()) >= min_words and sentence in train
        }
    )
    if leaked:
        examples = "; ".join(repr(s) for s in leaked[:5])
        raise HeldOutTextInLMError(
            f"{len(leaked)} held-out sentence(s) occur in the language-model training text, "
            f"e.g. {examples}. The LM must be estimated on training transcripts only."
        )


def train_ngram(
    train_texts: Iterable[str],
    order: int,
    out_dir: str | os.PathLike[str],
    *,
    held_out: Iterable[str],
    lmplz: str | os.PathLike[str] | None = None,
    build_binary: str | os.PathLike[str] | None = None,
    memory: str = "1G",
    binary: bool = True,
) -> NgramLM:
    """Estimate a modified Kneser-Ney word n-gram on training transcripts with KenLM.

    Args:
        train_texts: the TRAINING transcripts, and nothing else: never dev or test text.
        order: n-gram order (2 or more).
        out_dir: directory for ``lm.arpa``, ``lm.bin``, ``corpus.txt`` and ``words.txt``;
            each file appears only when complete.
        held_out: every dev/test sentence the LM will be used on; training stops with
            ``HeldOutTextInLMError`` if one of them is in ``train_texts``. Pass ``()`` only
            when there is truly nothing to protect.
        lmplz, build_binary: the KenLM executables; found with ``find_kenlm_tool`` if None.
        memory: ``lmplz -S``, its sorting memory; fixed rather than lmplz's default of 80% of
            RAM so that it stays inside a batch job's memory request.
        binary: also write the KenLM binary ``lm.bin``.

    ``--discount_fallback`` is always passed: on small corpora lmplz cannot estimate the
    Kneser-Ney discounts from the counts of counts and would otherwise abort; on corpora large
    enough to estimate them it changes nothing.
    """
    if order < 2:
        raise ValueError(f"a word n-gram for decoding needs order >= 2, not {order}")
    sentences = lm_sentences(train_texts)
    if not sentences:
        raise ValueError("no non-empty training sentence to estimate a language model on")
    check_no_held_out_text(sentences, held_out)
    lmplz_exe = kenlm_tool(LMPLZ, lmplz)
    build_binary_exe = kenlm_tool(BUILD_BINARY, build_binary) if binary else None

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".lm-") as tmp_name:
        tmp = Path(tmp_name)
        corpus = tmp / "corpus.txt"
        corpus.write_text("".join(f"{s}\n" for s in sentences), encoding="utf-8")
        vocabulary = tmp / "words.txt"
        vocabulary.write_text(
            "".join(f"{w}\n" for w in word_vocabulary(sentences)), encoding="utf-8"
        )
        arpa = tmp / "lm.arpa"
        options = ["-o", str(order), "-S", memory, "-T", str(tmp), "--discount_fallback"]
        _run_kenlm(
            [lmplz_exe, *options, "--text", str(corpus), "--arpa", str(arpa)],
            f"estimating an order-{order} LM on {len(sentences)} sentences",
        )
        _check_arpa_orders(arpa, order)
        names = ["corpus.txt", "words.txt", "lm.arpa"]
        if build_binary_exe is not None:
            _run_kenlm(
                [build_binary_exe, str(arpa), str(tmp / "lm.bin")],
                f"converting {arpa.name} to KenLM's binary format",
            )
            names.append("lm.bin")
        for name in names:
            os.replace(tmp / name, out / name)
    log.info("order-%d LM on %d training sentences written to %s", order, len(sentences), out)
    return NgramLM(
        arpa=out / "lm.arpa",
        binary=out / "lm.bin" if binary else None,
        corpus=out / "corpus.txt",
        vocabulary=out / "words.txt",
        order=order,
    )


def arpa_ngram_counts(path: str | os.PathLike[str]) -> dict[int, int]:
    """``{order: number of n-grams}`` from the ``\\data\\`` header of an ARPA file."""
    counts: dict[int, int] = {}
    with open(path, encoding="utf-8") as fh:
        in_header = False
        for line in fh:
            line = line.strip()
            if line == "\\data\\":
                in_header = True
            elif in_header and (match := _NGRAM_COUNT.match(line)):
                counts[int(match.group(1))] = int(match.group(2))
            elif in_header and line.startswith("\\"):
                break
    if not counts:
        raise ValueError(f"{path} has no ARPA \\data\\ header with 'ngram N=count' lines")
    return counts


def read_vocabulary(path: str | os.PathLike[str]) -> list[str]:
    """The words of a ``words.txt`` written by ``train_ngram``, one per line."""
    words = Path(path).read_text(encoding="utf-8").split()
    if not words:
        raise ValueError(f"{path} lists no words; expected one word per line")
    return words


def _run_kenlm(command: list[str | os.PathLike[str]], doing: str) -> None:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise RuntimeError(
            f"{Path(command[0]).name} failed ({doing}), exit status {result.returncode}: "
            f"{' '.join(str(part) for part in command)}\n{tail}"
        )
    log.debug("%s: %s", doing, result.stderr.strip().splitlines()[-1:] or "")


def _check_arpa_orders(arpa: Path, order: int) -> None:
    """lmplz should write every order from 1 to ``order``; anything else is a broken model."""
    counts = arpa_ngram_counts(arpa)
    if sorted(counts) != list(range(1, order + 1)):
        raise RuntimeError(
            f"{arpa} has n-gram orders {sorted(counts)}; "
            f"expected 1 to {order} from lmplz -o {order}"
        )
