"""Scores of the speech LLM: sacrebleu BLEU and chrF for translation, WER/CER for transcripts.

Transcripts are scored by the ASR table's own code (``sslgrid.metrics.wer``: the project's
normaliser, the same edit counts and bootstrap). Translations are scored as written (cased,
punctuated, sacrebleu's default 13a tokenisation), and each score records sacrebleu's
signature. Intervals are percentile bootstraps over utterances, drawn like the WER intervals
(``sslgrid.metrics.wer``): BLEU and chrF are functions of summed per-sentence statistics
(n-gram matches and counts), so each resample sums the drawn sentences' statistics and
recomputes the corpus score.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.metrics.base import Metric

from sslgrid.metrics.wer import (
    MissingHypothesisError,
    _as_columns,
    _bootstrap_sums,
    bootstrap_interval,
    score_utterances,
)


def paired_texts(
    references: Mapping[str, str | None], hypotheses: Mapping[str, str], hyp_source: str
) -> tuple[list[str], list[str], list[str], int]:
    """Ids, references and hypotheses of the utterances with a reference, in reference order,
    and the number of utterances without one (not scored)."""
    ids, refs, hyps, skipped = [], [], [], 0
    for utt_id, ref in references.items():
        if not ref or not ref.strip():
            skipped += 1
            continue
        if utt_id not in hypotheses:
            raise MissingHypothesisError(utt_id, hyp_source)
        ids.append(utt_id)
        refs.append(ref.strip())
        hyps.append(hypotheses[utt_id])
    return ids, refs, hyps, skipped


def metric_interval(
    metric: Metric,
    hyps: list[str],
    refs: list[str],
    n_resamples: int,
    seed: int,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a corpus-level sacrebleu metric, resampling sentences."""
    stats = np.asarray(metric._extract_corpus_statistics(hyps, [refs]), dtype=np.float64)
    sums = _bootstrap_sums(_as_columns(*stats.T), n_resamples, seed)
    scores = [metric._compute_score_from_stats(row.astype(np.int64).tolist()).score for row in sums]
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(scores, [tail, 1.0 - tail])
    return float(low), float(high)


def translation_scores(
    references: Mapping[str, str | None],
    hypotheses: Mapping[str, str],
    n_resamples: int = 1000,
    seed: int = 0,
    hyp_source: str = "the hypotheses",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Corpus BLEU and chrF (0-100) with bootstrap intervals and signatures; per-utterance rows.

    Utterances without a reference translation are not scored and are counted.
    """
    ids, refs, hyps, skipped = paired_texts(references, hypotheses, hyp_source)
    if not ids:
        raise ValueError(f"no utterance with a reference translation to score ({hyp_source})")
    record: dict[str, Any] = {"n_utts": len(ids), "n_without_reference": skipped}
    for name, metric in (("bleu", BLEU()), ("chrf", CHRF())):
        record[name] = metric.corpus_score(hyps, [refs]).score
        record[f"{name}_low"], record[f"{name}_high"] = metric_interval(
            metric, hyps, refs, n_resamples, seed
        )
        record[f"{name}_signature"] = str(metric.get_signature())
    record["n_words"] = sum(len(r.split()) for r in refs)
    chrf = CHRF()
    rows = [
        {"id": i, "ref": r, "hyp": h, "chrf": round(chrf.sentence_score(h, [r]).score, 2)}
        for i, r, h in zip(ids, refs, hyps, strict=True)
    ]
    return record, rows


def transcription_scores(
    references: Mapping[str, str | None],
    hypotheses: Mapping[str, str],
    n_resamples: int = 1000,
    seed: int = 0,
    hyp_source: str = "the hypotheses",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """WER and CER (fractions) with bootstrap intervals, as the ASR table computes them."""
    score = score_utterances(
        {k: v or "" for k, v in references.items()}, hypotheses, hyp_source=hyp_source
    )
    if score.n_utts == 0:
        raise ValueError(f"no utterance with a non-empty transcript to score ({hyp_source})")
    wer_low, wer_high = bootstrap_interval(score.word_errors, score.n_words, n_resamples, seed)
    cer_low, cer_high = bootstrap_interval(score.char_errors, score.n_chars, n_resamples, seed)
    record = {
        "n_utts": score.n_utts,
        "n_words": int(score.n_words.sum()),
        "n_without_reference": score.n_empty_refs_skipped,
        "wer": score.wer,
        "wer_low": wer_low,
        "wer_high": wer_high,
        "cer": score.cer,
        "cer_low": cer_low,
        "cer_high": cer_high,
    }
    rows = [
        {
            "id": u.id,
            "ref": u.ref,
            "hyp": u.hyp,
            "word_errors": u.word_errors,
            "n_words": u.n_words,
        }
        for u in score.utterances
    ]
    return record, rows
