"""Word and character error rates per utterance, with bootstrap confidence intervals.

Scoring compares normalised text only: references and hypotheses both go through
`sslgrid.text.normalise` before they are aligned.

The character error rate counts the space between words as a character (jiwer's default, and
what ESPnet's `<space>` token does): a missing word boundary is a real error for a Dutch
recogniser, since compounds and their split forms are different words.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np
from jiwer.process import AlignmentChunk

Normaliser = Callable[[str], str]

# Upper bound on utterances drawn per bootstrap chunk, so that memory stays in the tens of
# megabytes whatever the test-set size and number of resamples.
_MAX_DRAWS_PER_CHUNK = 1 << 22


class MissingHypothesisError(KeyError):
    """A reference utterance has no hypothesis in the hypothesis file."""

    def __init__(self, utt_id: str, hyp_source: str) -> None:
        super().__init__(utt_id)
        self.utt_id = utt_id
        self.hyp_source = hyp_source

    def __str__(self) -> str:
        return f"no hypothesis for utterance {self.utt_id!r} in {self.hyp_source}"


@dataclass(frozen=True)
class UtteranceScore:
    """Edit counts for one utterance; `ref` and `hyp` are the normalised texts that were aligned.

    Args:
        id: utterance id (the supervision id).
        ref: normalised reference.
        hyp: normalised hypothesis.
        word_errors: substitutions + deletions + insertions over words.
        n_words: words in the normalised reference.
        char_errors: substitutions + deletions + insertions over characters, spaces included.
        n_chars: characters in the normalised reference, spaces included.
    """

    id: str
    ref: str
    hyp: str
    word_errors: int
    n_words: int
    char_errors: int
    n_chars: int


@dataclass(frozen=True)
class CorpusScore:
    """The scored utterances of one test set and the count of those left out.

    Args:
        utterances: one score per utterance whose normalised reference is not empty.
        n_empty_refs_skipped: utterances left out because their normalised reference is empty.
    """

    utterances: tuple[UtteranceScore, ...]
    n_empty_refs_skipped: int

    @property
    def n_utts(self) -> int:
        """Number of scored utterances."""
        return len(self.utterances)

    @property
    def word_errors(self) -> np.ndarray:
        """Word errors per utterance."""
        return np.array([u.word_errors for u in self.utterances], dtype=np.int64)

    @property
    def n_words(self) -> np.ndarray:
        """Reference words per utterance."""
        return np.array([u.n_words for u in self.utterances], dtype=np.int64)

    @property
    def char_errors(self) -> np.ndarray:
        """Character errors per utterance."""
        return np.array([u.char_errors for u in self.utterances], dtype=np.int64)

    @property
    def n_chars(self) -> np.ndarray:
        """Reference characters per utterance."""
        return np.array([u.n_chars for u in self.utterances], dtype=np.int64)

    @property
    def wer(self) -> float:
        """Corpus word error rate as a fraction."""
        return corpus_rate(self.word_errors, self.n_words)

    @property
    def cer(self) -> float:
        """Corpus character error rate as a fraction."""
        return corpus_rate(self.char_errors, self.n_chars)


def default_normaliser() -> Normaliser:
    """Return the project's one Dutch text normaliser.

    Imported on call, not at module load, so that the bootstrap code stays usable on its own.
    """
    from sslgrid.text import normalise

    return normalise


def _clean(text: str, normaliser: Normaliser) -> str:
    """Normalise `text` and collapse whitespace, so that word and character counts agree."""
    return " ".join(normaliser(text).split())


def _edit_errors(alignment: Sequence[AlignmentChunk]) -> int:
    """Count substitutions, deletions and insertions in one jiwer alignment."""
    errors = 0
    for chunk in alignment:
        if chunk.type == "equal":
            continue
        ref_span = chunk.ref_end_idx - chunk.ref_start_idx
        hyp_span = chunk.hyp_end_idx - chunk.hyp_start_idx
        # A substitution spans both sides equally; deletions and insertions span one side.
        errors += max(ref_span, hyp_span)
    return errors


def _align(refs: list[str], hyps: list[str]) -> tuple[list[int], list[int], list[int], list[int]]:
    """Word errors, reference words, char errors and reference chars for each pair."""
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    return (
        [_edit_errors(a) for a in words.alignments],
        [len(r) for r in words.references],
        [_edit_errors(a) for a in chars.alignments],
        [len(r) for r in chars.references],
    )


def score_utterances(
    references: Mapping[str, str],
    hypotheses: Mapping[str, str],
    hyp_source: str = "the hypotheses",
    normaliser: Normaliser | None = None,
) -> CorpusScore:
    """Score every reference utterance against its hypothesis.

    Hypotheses whose id has no reference are ignored: a hypothesis file may cover more than the
    test set, but never less.

    Args:
        references: utterance id to reference text, in the order results are reported.
        hypotheses: utterance id to hypothesis text.
        hyp_source: where the hypotheses came from (a path), named in errors.
        normaliser: applied to both sides before scoring; `sslgrid.text.normalise` by default.

    Raises:
        MissingHypothesisError: a reference has no hypothesis.
    """
    normalise = normaliser if normaliser is not None else default_normaliser()
    ids: list[str] = []
    refs: list[str] = []
    hyps: list[str] = []
    n_empty = 0
    for utt_id, ref_text in references.items():
        if utt_id not in hypotheses:
            raise MissingHypothesisError(utt_id, hyp_source)
        ref = _clean(ref_text, normalise)
        if not ref:
            n_empty += 1
            continue
        ids.append(utt_id)
        refs.append(ref)
        hyps.append(_clean(hypotheses[utt_id], normalise))
    if not ids:
        return CorpusScore(utterances=(), n_empty_refs_skipped=n_empty)
    columns = _align(refs, hyps)
    utterances = tuple(
        UtteranceScore(utt_id, ref, hyp, *counts)
        for utt_id, ref, hyp, *counts in zip(ids, refs, hyps, *columns, strict=True)
    )
    return CorpusScore(utterances=utterances, n_empty_refs_skipped=n_empty)


def read_hypotheses(path: str | Path) -> dict[str, str]:
    """Read a hypothesis file: JSON lines of `{"id": ..., "hyp": ...}`.

    Raises:
        ValueError: a line lacks `id` or `hyp`, or an id appears twice.
    """
    hypotheses: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record.get("id"), str) or not isinstance(record.get("hyp"), str):
                raise ValueError(f"{path}:{line_no}: expected string fields 'id' and 'hyp'")
            if record["id"] in hypotheses:
                raise ValueError(f"{path}:{line_no}: duplicate hypothesis id {record['id']!r}")
            hypotheses[record["id"]] = record["hyp"]
    return hypotheses


def corpus_rate(errors: Iterable[int] | np.ndarray, counts: Iterable[int] | np.ndarray) -> float:
    """Total errors over total reference units (words or characters).

    Raises:
        ValueError: there are no reference units.
    """
    total = float(np.sum(np.asarray(counts, dtype=np.float64)))
    if total <= 0:
        raise ValueError("no reference units to score")
    return float(np.sum(np.asarray(errors, dtype=np.float64))) / total


def _as_columns(*arrays: Sequence[int] | np.ndarray) -> np.ndarray:
    """Stack per-utterance arrays into an (n_utts, k) float matrix, checking their lengths."""
    columns = [np.asarray(a, dtype=np.float64) for a in arrays]
    n = columns[0].shape
    if len(n) != 1 or n[0] == 0:
        raise ValueError("expected a non-empty 1-D array per utterance")
    if any(c.shape != n for c in columns):
        raise ValueError(f"per-utterance arrays differ in length: {[c.shape for c in columns]}")
    return np.stack(columns, axis=1)


def _bootstrap_sums(columns: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Column sums over `n_resamples` resamples of the rows, drawn with replacement.

    Every column is resampled with the same row indices, which is what pairs them.

    Returns:
        An (n_resamples, k) array for an (n_utts, k) input.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    rng = np.random.default_rng(seed)
    n_utts, n_cols = columns.shape
    chunk = max(1, _MAX_DRAWS_PER_CHUNK // (n_utts * n_cols))
    sums = np.empty((n_resamples, n_cols), dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        rows = rng.integers(0, n_utts, size=(stop - start, n_utts))
        sums[start:stop] = columns[rows].sum(axis=1)
    return sums


def bootstrap_interval(
    errors: Sequence[int] | np.ndarray,
    counts: Sequence[int] | np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the corpus error rate, resampling utterances.

    Each resample draws as many utterances as there are, with replacement, and takes the
    ratio of summed errors to summed reference units, as the corpus rate does.

    Args:
        errors: errors per utterance.
        counts: reference units (words or characters) per utterance.
        n_resamples: bootstrap resamples.
        seed: seed of the numpy generator, so that intervals are reproducible.
        level: coverage of the interval, between 0 and 1.

    Returns:
        (low, high) as fractions.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    sums = _bootstrap_sums(_as_columns(errors, counts), n_resamples, seed)
    if np.any(sums[:, 1] <= 0):
        raise ValueError("a resample has no reference units; are all counts zero?")
    rates = sums[:, 0] / sums[:, 1]
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(rates, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_bootstrap_pvalue(
    errors_a: Sequence[int] | np.ndarray,
    errors_b: Sequence[int] | np.ndarray,
    counts: Sequence[int] | np.ndarray,
    n_resamples: int = 1000,
    seed: int = 0,
) -> float:
    """Paired bootstrap test (Koehn 2004; Bisani & Ney 2004) that system A beats system B.

    Both systems are scored on the same utterances; each resample draws the same utterances
    for both. The returned value is the fraction of resamples in which A's error rate is not
    lower than B's: small means A is reliably better, about 0.5 or more means it is not.

    Args:
        errors_a: errors per utterance of system A.
        errors_b: errors per utterance of system B, same utterance order.
        counts: reference units per utterance, shared by both systems.
        n_resamples: bootstrap resamples.
        seed: seed of the numpy generator.
    """
    sums = _bootstrap_sums(_as_columns(errors_a, errors_b, counts), n_resamples, seed)
    if np.any(sums[:, 2] <= 0):
        raise ValueError("a resample has no reference units; are all counts zero?")
    rate_a = sums[:, 0] / sums[:, 2]
    rate_b = sums[:, 1] / sums[:, 2]
    return float(np.mean(rate_a >= rate_b))
