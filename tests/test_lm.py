"""Tests of the word n-gram LM (KenLM) and CTC beam-search decoding with it.

Decoding tests use a bigram ARPA file written by hand, so they run without KenLM's lmplz;
the tests that estimate an LM with lmplz are skipped when it is not built
(``scripts/build_kenlm.sh .venv``).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("flashlight.lib.text", reason="flashlight-text is not installed")

from sslgrid.asr.beam import (  # noqa: E402
    BeamSearchDecoder,
    WeightGrid,
    decoder_tokens,
    dev_wer,
    tune_lm_weights,
)
from sslgrid.asr.downstream import greedy_decode  # noqa: E402
from sslgrid.asr.tokenizer import CharTokenizer  # noqa: E402
from sslgrid.lm.ngram import (  # noqa: E402
    HeldOutTextInLMError,
    KenLMToolNotFoundError,
    arpa_ngram_counts,
    check_no_held_out_text,
    out_of_vocabulary_rate,
    read_vocabulary,
    train_ngram,
)

TRAIN_SENTENCES = [
    "de kat zit op de mat",
    "de hond zit op de mat",
    "de kar rijdt uit",
]
VOCABULARY = sorted({w for s in TRAIN_SENTENCES for w in s.split()})

# A bigram in which "de kat zit" is far likelier than "de kar zit": the LM margin for kat over
# kar in "de ka? zit" is (-0.4 - -0.9) + (-0.1 - (-0.3 + -1.2)) = 1.9 (log10) per unit weight.
HAND_BIGRAM_ARPA = """\
\\data\\
ngram 1=12
ngram 2=13

\\1-grams:
-2.0\t<unk>\t0
-99\t<s>\t-0.3
-1.0\t</s>\t0
-0.7\tde\t-0.3
-1.5\tkat\t-0.3
-1.5\tkar\t-0.3
-1.5\thond\t-0.3
-1.2\tzit\t-0.3
-1.2\top\t-0.3
-1.5\tmat\t-0.3
-1.5\trijdt\t-0.3
-1.5\tuit\t-0.3

\\2-grams:
-0.1\t<s> de
-0.4\tde kat
-0.4\tde hond
-0.6\tde mat
-0.9\tde kar
-0.1\tkat zit
-0.1\thond zit
-0.1\tzit op
-0.1\top de
-0.1\tmat </s>
-0.1\tkar rijdt
-0.1\trijdt uit
-0.1\tuit </s>

\\end\\
"""


def find_lmplz() -> Path | None:
    beside_python = Path(sys.executable).parent / "lmplz"
    if beside_python.is_file():
        return beside_python
    on_path = shutil.which("lmplz")
    return Path(on_path) if on_path else None


needs_lmplz = pytest.mark.skipif(
    find_lmplz() is None,
    reason="KenLM's lmplz is not built (neither next to python nor on PATH); "
    "run scripts/build_kenlm.sh .venv",
)


@pytest.fixture(scope="module")
def tokens() -> list[str]:
    return CharTokenizer.from_texts(TRAIN_SENTENCES).symbols


@pytest.fixture(scope="module")
def hand_arpa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lm") / "bigram.arpa"
    path.write_text(HAND_BIGRAM_ARPA, encoding="utf-8")
    return path


def spoken(items: list[str | dict[str, float]], tokens: list[str]) -> torch.Tensor:
    """(T, V) CTC log-probabilities saying ``items`` one character per frame, blanks between.

    A string item is a sequence of confidently recognised characters (" " for a word break);
    a dict item is one frame whose probability is shared between several characters.
    """
    frames: list[dict[str, float]] = []
    for item in items:
        for frame in [{c: 0.97} for c in item] if isinstance(item, str) else [item]:
            frames += [frame, {tokens[0]: 0.97}]
    probs = torch.full((len(frames), len(tokens)), 1e-4)
    for t, frame in enumerate(frames):
        for char, p in frame.items():
            probs[t, tokens.index(char)] = p
    return (probs / probs.sum(-1, keepdim=True)).log()


def batch(utterances: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad (T, V) utterances into (B, T, V) with garbage after each length."""
    lengths = torch.tensor([u.shape[0] for u in utterances])
    padded = torch.randn(len(utterances), int(lengths.max()), utterances[0].shape[1])
    padded = padded.log_softmax(-1)
    for i, u in enumerate(utterances):
        padded[i, : u.shape[0]] = u
    return padded, lengths


def greedy_texts(log_probs: torch.Tensor, lengths: torch.Tensor, tokens: list[str]) -> list[str]:
    tokenizer = CharTokenizer(tokens)
    return [tokenizer.decode(ids) for ids in greedy_decode(log_probs, lengths)]


# "ka?" with r slightly likelier than t: the acoustics alone say "kar", the LM says "kat".
AMBIGUOUS_KAT = ["de ka", {"r": 0.52, "t": 0.45}, " zit op de mat"]
# "h?nd" with u likelier than o: the best path spells the non-word "hund".
AMBIGUOUS_HOND = ["de h", {"u": 0.6, "o": 0.37}, "nd zit op de mat"]
# A clear "kar" in a context where the LM prefers "kat": a heavy LM weight overrides it.
CLEAR_KAR = ["de ka", {"r": 0.99, "t": 0.005}, " zit op de mat"]


def test_lm_and_lexicon_beat_greedy_on_ambiguous_characters(
    tokens: list[str], hand_arpa: Path
) -> None:
    refs = ["de kat zit op de mat", "de hond zit op de mat"]
    log_probs, lengths = batch([spoken(AMBIGUOUS_KAT, tokens), spoken(AMBIGUOUS_HOND, tokens)])

    greedy = greedy_texts(log_probs, lengths, tokens)
    decoder = BeamSearchDecoder(tokens, hand_arpa, VOCABULARY, beam_size=20, lm_weight=1.0)
    beam = decoder.decode(log_probs, lengths)

    assert greedy == ["de kar zit op de mat", "de hund zit op de mat"]
    assert beam == refs
    assert dev_wer(refs, greedy) > dev_wer(refs, beam) == 0.0


def test_beam_size_token_extends_only_the_likeliest_characters(
    tokens: list[str], hand_arpa: Path
) -> None:
    log_probs, lengths = batch([spoken(AMBIGUOUS_KAT, tokens)])

    def decode(beam_size_token: int | None) -> list[str]:
        decoder = BeamSearchDecoder(
            tokens, hand_arpa, VOCABULARY, beam_size=20, beam_size_token=beam_size_token
        )
        # Another weight keeps the setting (the tuning grid rebuilds the decoder).
        return decoder.with_weights(1.0, 0.0).decode(log_probs, lengths)

    # r (0.52) and t (0.45) are the two likeliest characters: with both tried the LM picks
    # "kat", as with every character; with one only, "t" is never tried.
    assert decode(None) == decode(2) == ["de kat zit op de mat"]
    assert decode(1) == ["de kar zit op de mat"]
    with pytest.raises(ValueError, match="beam_size_token is 0"):
        BeamSearchDecoder(tokens, hand_arpa, VOCABULARY, beam_size_token=0)


def test_lexicon_free_beam_without_lm_equals_greedy_on_peaked_log_probs(
    tokens: list[str],
) -> None:
    generator = torch.Generator().manual_seed(0)
    utterances = []
    for length in (40, 25, 33):
        best = torch.randint(0, len(tokens), (length,), generator=generator)
        best[torch.rand(length, generator=generator) < 0.4] = 0  # CTC output is mostly blank
        logits = torch.randn(length, len(tokens), generator=generator)
        logits[torch.arange(length), best] += 8.0
        utterances.append(logits.log_softmax(-1))
    log_probs, lengths = batch(utterances)

    decoder = BeamSearchDecoder(tokens, None, None, beam_size=10, lm_weight=0.0)

    greedy = greedy_texts(log_probs, lengths, tokens)
    assert all(greedy)
    assert decoder.decode(log_probs, lengths) == greedy


def test_decoding_reads_only_the_frames_within_each_length(
    tokens: list[str], hand_arpa: Path
) -> None:
    short = spoken(["de mat"], tokens)
    long = spoken(["de hond zit op de mat"], tokens)
    log_probs, lengths = batch([short, long])
    decoder = BeamSearchDecoder(tokens, hand_arpa, VOCABULARY, lm_weight=1.0)
    assert decoder.decode(log_probs, lengths) == ["de mat", "de hond zit op de mat"]


def test_tuning_picks_the_lm_weight_with_the_lowest_dev_wer(
    tokens: list[str], hand_arpa: Path
) -> None:
    refs = ["de kat zit op de mat", "de kar zit op de mat"]
    log_probs, lengths = batch([spoken(AMBIGUOUS_KAT, tokens), spoken(CLEAR_KAR, tokens)])
    decoder = BeamSearchDecoder(tokens, hand_arpa, VOCABULARY, beam_size=20)
    # The fixture's premise: no LM keeps "kar" in both, a heavy LM makes "kat" of both.
    assert dev_wer(refs, decoder.with_weights(0.0, 0.0).decode(log_probs, lengths)) > 0
    assert dev_wer(refs, decoder.with_weights(5.0, 0.0).decode(log_probs, lengths)) > 0

    grid = WeightGrid(lm_weights=(0.0, 1.0, 5.0), word_scores=(0.0, 1.0))
    # Two batches of one utterance each, to see that batches and references line up.
    best = tune_lm_weights(
        decoder,
        [log_probs[:1], log_probs[1:]],
        [lengths[:1], lengths[1:]],
        refs,
        grid,
    )

    assert (best.lm_weight, best.word_score, best.dev_wer) == (1.0, 0.0, 0.0)


def test_tuning_checks_that_references_match_the_utterances(
    tokens: list[str], hand_arpa: Path
) -> None:
    log_probs, lengths = batch([spoken(AMBIGUOUS_KAT, tokens)])
    decoder = BeamSearchDecoder(tokens, hand_arpa, VOCABULARY)
    with pytest.raises(ValueError, match="1 dev utterances in the batches but 2 references"):
        tune_lm_weights(decoder, [log_probs], [lengths], ["a", "b"], [(1.0, 0.0)])


def test_a_word_lm_without_a_lexicon_is_refused(tokens: list[str], hand_arpa: Path) -> None:
    with pytest.raises(ValueError, match="lexicon-free decoding needs a token-level LM"):
        BeamSearchDecoder(tokens, hand_arpa, None)


def test_a_missing_lm_file_is_named(tokens: list[str], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing.arpa"):
        BeamSearchDecoder(tokens, tmp_path / "nothing.arpa", VOCABULARY)


def test_the_word_separator_becomes_the_decoders_word_boundary() -> None:
    assert decoder_tokens(["<blank>", " ", "a"]) == ["<blank>", "|", "a"]
    with pytest.raises(ValueError, match="no word separator"):
        decoder_tokens(["<blank>", "a", "b"])
    with pytest.raises(ValueError, match="already contains '|'"):
        decoder_tokens(["<blank>", " ", "|"])


def test_held_out_sentences_in_the_lm_text_are_refused() -> None:
    check_no_held_out_text(TRAIN_SENTENCES, ["de kat rijdt uit"])
    # Compared after normalisation, as scoring compares them.
    with pytest.raises(HeldOutTextInLMError, match="'de hond zit op de mat'"):
        check_no_held_out_text(TRAIN_SENTENCES, ["iets anders", "De hond zit op de mat!"])
    # Short turns like "ja" are in every split of spontaneous speech; they can be exempted.
    check_no_held_out_text(["ja", *TRAIN_SENTENCES], ["ja"], min_words=2)


def test_train_ngram_refuses_held_out_text_before_running_kenlm(tmp_path: Path) -> None:
    with pytest.raises(HeldOutTextInLMError):
        train_ngram(
            TRAIN_SENTENCES,
            3,
            tmp_path / "lm",
            held_out=["de kar rijdt uit"],
            lmplz=tmp_path / "no-lmplz",
        )
    assert not (tmp_path / "lm" / "lm.arpa").exists()


def test_a_missing_lmplz_is_named_with_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(KenLMToolNotFoundError, match=r"no-lmplz .*build_kenlm\.sh"):
        train_ngram(TRAIN_SENTENCES, 3, tmp_path, held_out=(), lmplz=tmp_path / "no-lmplz")


def test_out_of_vocabulary_rate_counts_running_words() -> None:
    assert out_of_vocabulary_rate(["de kat", "De vis, de kat."], VOCABULARY) == pytest.approx(1 / 6)


def test_arpa_header_counts(hand_arpa: Path) -> None:
    assert arpa_ngram_counts(hand_arpa) == {1: 12, 2: 13}


@needs_lmplz
def test_train_ngram_writes_every_order_and_the_training_vocabulary(tmp_path: Path) -> None:
    lm = train_ngram(TRAIN_SENTENCES, 3, tmp_path / "lm", held_out=["de kat rijdt uit"])

    counts = arpa_ngram_counts(lm.arpa)
    assert sorted(counts) == [1, 2, 3]
    # The words, <s>, </s> and <unk>.
    assert counts[1] == len(VOCABULARY) + 3
    assert lm.binary is not None and lm.binary.stat().st_size > 0
    assert read_vocabulary(lm.vocabulary) == VOCABULARY
    assert lm.corpus.read_text(encoding="utf-8").splitlines() == TRAIN_SENTENCES
    assert not list((tmp_path / "lm").glob(".lm-*")), "temporary files left behind"


@needs_lmplz
def test_a_kenlm_trained_lm_decodes_the_ambiguous_word(tokens: list[str], tmp_path: Path) -> None:
    lm = train_ngram(TRAIN_SENTENCES, 2, tmp_path / "lm", held_out=())
    log_probs, lengths = batch([spoken(AMBIGUOUS_KAT, tokens)])
    decoder = BeamSearchDecoder(tokens, lm.path, read_vocabulary(lm.vocabulary), lm_weight=1.0)
    assert decoder.decode(log_probs, lengths) == ["de kat zit op de mat"]
