"""CTC beam search with a word n-gram LM: torchaudio's ``ctc_decoder`` (flashlight-text).

Design:

- **Lexicon decoding** is the mode used with an LM. The lexicon is the vocabulary of the LM's
  training text (``NgramLM.vocabulary``), each word spelled in the recogniser's characters, so
  every hypothesis is a sequence of training words that the word LM can score. The price is a
  closed vocabulary: a test word never seen in training cannot be recognised (``unk_score`` is
  -inf), so report the test set's out-of-vocabulary rate next to the WER.
- **Lexicon-free decoding** (``lexicon=None``) runs without an LM: flashlight's lexicon-free
  decoder expects a *token*-level LM, which a word n-gram is not, so the combination is refused.
  With no LM it is a plain CTC prefix beam search over characters.
- **Word boundary**: the ``CharTokenizer`` separates words with the symbol " "; flashlight needs
  a named word-boundary (silence) token, so " " is passed to it as ``|``. Lexicon spellings do
  *not* end in ``|`` (as in wav2letter recipes, whose models emit a final ``|``): the recogniser
  is trained on transcripts without a trailing space, so a spelling ending in ``|`` would make
  the search take a ``|`` from a frame after the last word that the recogniser gave a low
  probability, a penalty on every hypothesis's last word. Between words the ``|`` the
  recogniser emits is consumed as silence (``sil_score``).
- ``lm_weight`` scales the LM's log10 probabilities against the recogniser's natural-log
  probabilities, and ``word_score`` is added per word to counter the LM's preference for short
  hypotheses; both are tuned on dev data with ``tune_lm_weights``.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jiwer
import torch

from sslgrid.asr.tokenizer import BLANK
from sslgrid.text import normalise

log = logging.getLogger(__name__)

WORD_SEPARATOR = " "
WORD_BOUNDARY_TOKEN = "|"
UNKNOWN_WORD = "<unk>"


class BeamSearchDecoder:
    """CTC beam search over a character recogniser's log-probabilities.

    Args:
        tokens: the ``CharTokenizer`` symbols: the blank at index 0, words separated by " ".
        lm_path: a KenLM word n-gram (ARPA or binary) or None for no LM.
        lexicon: the words hypotheses may contain (the LM's training vocabulary), or None for
            lexicon-free decoding, which cannot use a word LM.
        beam_size: hypotheses kept after each frame.
        beam_size_token: tokens tried per hypothesis at each frame, the most probable first
            (None: every token).
        lm_weight: weight of the LM's log10 probability.
        word_score: score added for every word emitted (positive favours more words).
        beam_threshold: hypotheses scoring further than this below the best are pruned.
        sil_score: score added for every word boundary emitted.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        lm_path: str | os.PathLike[str] | None,
        lexicon: Iterable[str] | None,
        *,
        beam_size: int = 50,
        beam_size_token: int | None = None,
        lm_weight: float = 1.0,
        word_score: float = 0.0,
        beam_threshold: float = 50.0,
        sil_score: float = 0.0,
    ) -> None:
        self.tokens = list(tokens)
        self.lm_path = Path(lm_path) if lm_path is not None else None
        self.beam_size = beam_size
        if beam_size_token is not None and beam_size_token < 1:
            raise ValueError(f"beam_size_token is {beam_size_token}; expected 1 or more (or None)")
        self.beam_size_token = beam_size_token
        self.lm_weight = lm_weight
        self.word_score = word_score
        self.beam_threshold = beam_threshold
        self.sil_score = sil_score
        self._decoder_tokens = decoder_tokens(self.tokens)
        if self.lm_path is not None and not self.lm_path.is_file():
            raise FileNotFoundError(f"no KenLM language model at {self.lm_path}")
        if lexicon is None:
            if self.lm_path is not None:
                raise ValueError(
                    f"lexicon-free decoding needs a token-level LM, but {self.lm_path} is a word "
                    "n-gram; pass the LM's vocabulary as the lexicon"
                )
            self.lexicon: dict[str, str] | None = None
        else:
            self.lexicon = spell_words(lexicon, self.tokens)
        self._decoder = self._build()

    def with_weights(self, lm_weight: float, word_score: float) -> BeamSearchDecoder:
        """The same decoder (tokens, LM, lexicon, beam) with another LM weight and word score."""
        return BeamSearchDecoder(
            self.tokens,
            self.lm_path,
            self.words(),
            beam_size=self.beam_size,
            beam_size_token=self.beam_size_token,
            lm_weight=lm_weight,
            word_score=word_score,
            beam_threshold=self.beam_threshold,
            sil_score=self.sil_score,
        )

    def words(self) -> list[str] | None:
        """The lexicon words, or None for a lexicon-free decoder."""
        return None if self.lexicon is None else list(self.lexicon)

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Best word sequence per utterance of (B, T, V) log-probabilities of ``lengths`` frames."""
        if log_probs.ndim != 3 or log_probs.shape[-1] != len(self.tokens):
            raise ValueError(
                f"expected log-probabilities of shape (B, T, {len(self.tokens)}), "
                f"got {tuple(log_probs.shape)}"
            )
        if lengths.shape != log_probs.shape[:1]:
            raise ValueError(
                f"expected {log_probs.shape[0]} lengths, got shape {tuple(lengths.shape)}"
            )
        emissions = log_probs.detach().to("cpu", torch.float32).contiguous()
        results = self._decoder(emissions, lengths.detach().to("cpu", torch.int64))
        return [self._hypothesis_text(nbest[0]) if nbest else "" for nbest in results]

    def _hypothesis_text(self, hypothesis) -> str:
        if self.lexicon is not None:
            return " ".join(hypothesis.words)
        chars = (self.tokens[i] for i in hypothesis.tokens.tolist() if i != 0)
        return " ".join("".join(chars).split())

    def _build(self):
        # Imported here so that the rest of sslgrid works without flashlight-text installed.
        from torchaudio.models.decoder import ctc_decoder

        options = dict(
            tokens=self._decoder_tokens,
            lm=str(self.lm_path) if self.lm_path is not None else None,
            nbest=1,
            beam_size=self.beam_size,
            beam_size_token=self.beam_size_token,
            beam_threshold=self.beam_threshold,
            lm_weight=self.lm_weight,
            word_score=self.word_score,
            sil_score=self.sil_score,
            blank_token=BLANK,
            sil_token=WORD_BOUNDARY_TOKEN,
            unk_word=UNKNOWN_WORD,
        )
        if self.lexicon is None:
            return ctc_decoder(lexicon=None, **options)
        # ctc_decoder reads the lexicon from a file; it is parsed before this returns.
        with tempfile.TemporaryDirectory(prefix="sslgrid-lexicon-") as tmp:
            lexicon_file = Path(tmp) / "lexicon.txt"
            write_lexicon(self.lexicon, lexicon_file)
            return ctc_decoder(lexicon=str(lexicon_file), **options)


def decoder_tokens(tokens: Sequence[str]) -> list[str]:
    """The tokenizer's symbols as flashlight wants them: the word separator renamed ``|``."""
    if not tokens or tokens[0] != BLANK:
        raise ValueError(f"the first token must be the CTC blank {BLANK!r}, got {tokens[:1]}")
    if WORD_SEPARATOR not in tokens:
        raise ValueError(
            "the token list has no word separator ' '; a word-level decoder needs one "
            "(was the tokenizer built from single-word transcripts?)"
        )
    if WORD_BOUNDARY_TOKEN in tokens:
        raise ValueError(
            f"the token list already contains {WORD_BOUNDARY_TOKEN!r}, which the decoder "
            "needs as its word-boundary token"
        )
    return [WORD_BOUNDARY_TOKEN if t == WORD_SEPARATOR else t for t in tokens]


def spell_words(words: Iterable[str], tokens: Sequence[str]) -> dict[str, str]:
    """``{word: space-separated characters}`` for every word the recogniser can spell.

    Words with a character outside ``tokens`` cannot be produced by the recogniser and are
    left out (with a warning) rather than failing the whole lexicon.
    """
    known = set(tokens) - {BLANK, WORD_SEPARATOR}
    spelled: dict[str, str] = {}
    unspellable = []
    for word in words:
        if not word or word == UNKNOWN_WORD or word in spelled:
            continue
        if any(c not in known for c in word):
            unspellable.append(word)
            continue
        spelled[word] = " ".join(word)
    if unspellable:
        log.warning(
            "%d lexicon word(s) use characters the recogniser does not have and are left out, "
            "e.g. %s",
            len(unspellable),
            unspellable[:5],
        )
    if not spelled:
        raise ValueError("none of the lexicon words can be spelled with the recogniser's tokens")
    return spelled


def write_lexicon(spellings: dict[str, str], path: str | os.PathLike[str]) -> None:
    """Write a flashlight lexicon: one ``word<TAB>c h a r s`` line per word."""
    Path(path).write_text(
        "".join(f"{word}\t{spelling}\n" for word, spelling in spellings.items()),
        encoding="utf-8",
    )


class LMWeights(NamedTuple):
    """The tuned pair and the dev WER it gave."""

    lm_weight: float
    word_score: float
    dev_wer: float


@dataclass(frozen=True)
class WeightGrid:
    """LM weights and word scores to try; every combination is decoded."""

    lm_weights: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
    word_scores: Sequence[float] = (-1.0, 0.0, 1.0, 2.0)

    def pairs(self) -> list[tuple[float, float]]:
        return list(itertools.product(self.lm_weights, self.word_scores))


def tune_lm_weights(
    decoder: BeamSearchDecoder,
    log_probs_list: Sequence[torch.Tensor],
    lengths_list: Sequence[torch.Tensor],
    refs: Sequence[str],
    grid: WeightGrid | Iterable[tuple[float, float]] | None = None,
) -> LMWeights:
    """The (lm_weight, word_score) pair with the lowest dev WER, and that WER.

    Args:
        decoder: the decoder to tune (its tokens, LM and lexicon are kept).
        log_probs_list: dev log-probabilities, batches of shape (B, T, V).
        lengths_list: the frame counts of each batch, shape (B,).
        refs: the dev references, in batch order.
        grid: the pairs to try (default: ``WeightGrid()``). Ties go to the pair tried first.

    References and hypotheses are normalised and utterances with an empty reference are left
    out, as in scoring (``sslgrid.metrics.wer``).
    """
    if len(log_probs_list) != len(lengths_list):
        raise ValueError(
            f"{len(log_probs_list)} log-probability batches but {len(lengths_list)} length batches"
        )
    n_utts = sum(int(lp.shape[0]) for lp in log_probs_list)
    if n_utts != len(refs):
        raise ValueError(f"{n_utts} dev utterances in the batches but {len(refs)} references")
    pairs = grid.pairs() if isinstance(grid, WeightGrid) else list(grid or WeightGrid().pairs())
    if not pairs:
        raise ValueError("the weight grid is empty")
    best: LMWeights | None = None
    for lm_weight, word_score in pairs:
        candidate = decoder.with_weights(lm_weight, word_score)
        hyps = [
            hyp
            for log_probs, lengths in zip(log_probs_list, lengths_list, strict=True)
            for hyp in candidate.decode(log_probs, lengths)
        ]
        wer = dev_wer(refs, hyps)
        log.info("lm_weight %.3g, word_score %.3g: dev WER %.4f", lm_weight, word_score, wer)
        if best is None or wer < best.dev_wer:
            best = LMWeights(float(lm_weight), float(word_score), wer)
    assert best is not None
    return best


def dev_wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus WER of normalised ``hyps`` against normalised non-empty ``refs``."""
    pairs = [(normalise(r), normalise(h)) for r, h in zip(refs, hyps, strict=True)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        raise ValueError("every dev reference is empty after normalisation; nothing to tune on")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))
