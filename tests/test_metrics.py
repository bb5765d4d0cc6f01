"""Tests of scoring (WER/CER, bootstrap intervals, paired test) and the results table."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sslgrid.metrics.table import COORDINATE_ORDER, WerTable, markdown_table
from sslgrid.metrics.wer import (
    MissingHypothesisError,
    bootstrap_interval,
    corpus_rate,
    paired_bootstrap_pvalue,
    read_hypotheses,
    score_utterances,
)

REPO = Path(__file__).resolve().parents[1]


def identity(text: str) -> str:
    """A normaliser for text that is already normalised."""
    return text


def lower_no_punct(text: str) -> str:
    """A stand-in normaliser that differs from identity, to see that both sides go through it."""
    return text.lower().translate(str.maketrans("", "", string.punctuation))


# Normalised Dutch references and hypotheses with one kind of error each.
REFS = {
    "sub": "de kat zit op de mat",
    "del": "een twee drie",
    "ins": "ja",
}
HYPS = {
    "sub": "de hond zit op de mat",
    "del": "een drie",
    "ins": "ja ja",
}


def test_substitution_deletion_insertion_counts() -> None:
    score = score_utterances(REFS, HYPS, normaliser=identity)
    by_id = {u.id: u for u in score.utterances}
    # kat -> hond: three substituted letters and one inserted.
    assert (by_id["sub"].word_errors, by_id["sub"].n_words) == (1, 6)
    assert (by_id["sub"].char_errors, by_id["sub"].n_chars) == (4, 20)
    # "twee " deleted: four letters and one space.
    assert (by_id["del"].word_errors, by_id["del"].n_words) == (1, 3)
    assert (by_id["del"].char_errors, by_id["del"].n_chars) == (5, 13)
    # " ja" inserted: a space and two letters.
    assert (by_id["ins"].word_errors, by_id["ins"].n_words) == (1, 1)
    assert (by_id["ins"].char_errors, by_id["ins"].n_chars) == (3, 2)
    assert score.wer == pytest.approx(3 / 10)
    assert score.cer == pytest.approx(12 / 35)


def test_empty_hypothesis_is_all_deletions() -> None:
    score = score_utterances({"a": "goede morgen"}, {"a": ""}, normaliser=identity)
    assert score.wer == 1.0
    assert score.utterances[0].char_errors == len("goede morgen")


def test_perfect_hypothesis_scores_zero() -> None:
    score = score_utterances(REFS, REFS, normaliser=identity)
    assert score.wer == 0.0 and score.cer == 0.0


def test_normaliser_applied_to_both_sides_before_scoring() -> None:
    refs = {"a": "De kat, zit op de mat.", "b": "Een twee drie!"}
    hyps = {"a": "de KAT zit op de mat", "b": "een, twee; drie"}
    assert score_utterances(refs, hyps, normaliser=identity).wer > 0
    score = score_utterances(refs, hyps, normaliser=lower_no_punct)
    assert score.wer == 0.0 and score.cer == 0.0
    assert score.utterances[0].ref == "de kat zit op de mat"


def test_whitespace_differences_do_not_count() -> None:
    score = score_utterances({"a": "de  kat "}, {"a": " de kat"}, normaliser=identity)
    assert score.cer == 0.0


@pytest.mark.skipif(
    importlib.util.find_spec("sslgrid.text") is None, reason="sslgrid.text not written yet"
)
def test_default_normaliser_ignores_case_and_punctuation() -> None:
    score = score_utterances({"a": "De kat zit op de mat."}, {"a": "de kat zit op de mat"})
    assert score.wer == 0.0


def test_empty_reference_is_skipped_but_counted() -> None:
    refs = {"a": "de kat", "b": "?!", "c": "   "}
    hyps = {"a": "de kat", "b": "ruis", "c": "ruis"}
    score = score_utterances(refs, hyps, normaliser=lower_no_punct)
    assert score.n_utts == 1
    assert score.n_empty_refs_skipped == 2
    assert score.wer == 0.0


def test_missing_hypothesis_raises_naming_id_and_file() -> None:
    with pytest.raises(MissingHypothesisError, match=r"'del'.*hyps\.jsonl"):
        score_utterances(REFS, {"sub": "x", "ins": "y"}, "out/hyps.jsonl", normaliser=identity)


def test_extra_hypotheses_are_ignored() -> None:
    score = score_utterances(REFS, {**HYPS, "other": "iets"}, normaliser=identity)
    assert score.n_utts == 3


def test_read_hypotheses_rejects_duplicate_ids(tmp_path: Path) -> None:
    path = tmp_path / "hyps.jsonl"
    path.write_text('{"id": "a", "hyp": "x"}\n{"id": "a", "hyp": "y"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate"):
        read_hypotheses(path)


def test_corpus_rate_is_ratio_of_sums() -> None:
    assert corpus_rate([1, 0, 3], [2, 2, 4]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        corpus_rate([0], [0])


def _utterances(n: int, error_rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random per-utterance (errors, words) with a given expected error rate."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(3, 20, size=n)
    return rng.binomial(counts, error_rate), counts


def test_bootstrap_interval_contains_point_estimate() -> None:
    errors, counts = _utterances(200, 0.2, seed=1)
    low, high = bootstrap_interval(errors, counts)
    assert low < corpus_rate(errors, counts) < high
    assert 0.1 < low < high < 0.3


def test_bootstrap_interval_shrinks_with_more_utterances() -> None:
    small_low, small_high = bootstrap_interval(*_utterances(30, 0.2, seed=2))
    large_low, large_high = bootstrap_interval(*_utterances(3000, 0.2, seed=2))
    assert (large_high - large_low) < (small_high - small_low) / 5


def test_bootstrap_interval_is_reproducible_and_seeded() -> None:
    errors, counts = _utterances(50, 0.3, seed=3)
    assert bootstrap_interval(errors, counts, seed=7) == bootstrap_interval(errors, counts, seed=7)
    assert bootstrap_interval(errors, counts, seed=7) != bootstrap_interval(errors, counts, seed=8)


def test_bootstrap_interval_widens_with_level() -> None:
    errors, counts = _utterances(100, 0.3, seed=4)
    low90, high90 = bootstrap_interval(errors, counts, level=0.90)
    low99, high99 = bootstrap_interval(errors, counts, level=0.99)
    assert low99 < low90 and high90 < high99


def test_bootstrap_chunks_give_the_same_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    import sslgrid.metrics.wer as wer

    errors, counts = _utterances(100, 0.3, seed=5)
    whole = bootstrap_interval(errors, counts)
    # Forces one resample per chunk: the draws from the generator must not depend on chunking.
    monkeypatch.setattr(wer, "_MAX_DRAWS_PER_CHUNK", 1)
    assert bootstrap_interval(errors, counts) == pytest.approx(whole)


def test_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        bootstrap_interval([], [])
    with pytest.raises(ValueError):
        bootstrap_interval([1, 2], [3])
    with pytest.raises(ValueError):
        bootstrap_interval([1], [3], level=1.0)


def test_paired_bootstrap_small_when_a_clearly_better() -> None:
    errors_b, counts = _utterances(300, 0.3, seed=6)
    errors_a = np.random.default_rng(0).binomial(counts, 0.2)
    assert paired_bootstrap_pvalue(errors_a, errors_b, counts) < 0.01
    # The test is one-sided: B is not better than A.
    assert paired_bootstrap_pvalue(errors_b, errors_a, counts) > 0.99


def test_paired_bootstrap_large_when_systems_equal() -> None:
    errors, counts = _utterances(300, 0.3, seed=7)
    assert paired_bootstrap_pvalue(errors, errors, counts) == 1.0
    other, _ = _utterances(300, 0.3, seed=8)
    # Same error rate, different utterances wrong: no evidence either way.
    assert 0.05 < paired_bootstrap_pvalue(other, errors, counts) < 0.95


def _score_record(**coords: str) -> dict[str, object]:
    return {
        "coords": coords,
        "n_utts": 10,
        "n_words": 100,
        "n_chars": 500,
        "wer": 0.23412,
        "wer_low": 0.21019,
        "wer_high": 0.259,
        "cer": 0.1,
        "cer_low": 0.08,
        "cer_high": 0.12,
        "n_empty_refs_skipped": 0,
        "hyps": "h.jsonl",
        "cuts": "c.jsonl.gz",
    }


def test_table_columns_rows_and_percentages() -> None:
    table = WerTable(
        [
            _score_record(split="test", model="apc", lm="none", amount="1h"),
            _score_record(model="wav2vec2", split="dev", amount="10h"),
        ]
    )
    frame = table.frame()
    assert list(frame.columns) == [
        "model", "amount", "split", "lm",
        "n_utts", "n_words", "wer", "wer_low", "wer_high", "cer", "cer_low", "cer_high",
    ]  # fmt: skip
    assert len(frame) == 2
    assert frame.loc[0, "wer"] == 23.41 and frame.loc[0, "wer_low"] == 21.02
    assert frame.loc[1, "model"] == "wav2vec2" and pd.isna(frame.loc[1, "lm"])
    assert set(COORDINATE_ORDER) >= {"model", "amount", "split"}


def test_table_rejects_incomplete_records() -> None:
    record = _score_record(model="apc")
    del record["cer_high"]
    with pytest.raises(ValueError, match="cer_high"):
        WerTable([record])


def test_markdown_has_environment_header_above_table(tmp_path: Path) -> None:
    table = WerTable([_score_record(model="apc", split="test")])
    out = tmp_path / "wer_table.md"
    table.to_markdown(out)
    text = out.read_text(encoding="utf-8")
    for field in ("date:", "git commit:", "python:", "torch:", "torchaudio:", "lhotse:",
                  "snakemake:", "jiwer:", "CPU:", "GPU:"):  # fmt: skip
        assert f"- {field}" in text
        assert text.index(f"- {field}") < text.index("| model")
    assert "| apc | test | 10 | 100 | 23.41 [21.02, 25.90] | 10.00 [8.00, 12.00] |" in text


def test_markdown_table_escapes_pipes_and_aligns_numbers() -> None:
    rendered = markdown_table(pd.DataFrame({"name": ["a|b"], "n": [3]}))
    assert rendered.splitlines() == ["| name | n |", "|---|---:|", "| a\\|b | 3 |"]


def _write_tiny_cutset(directory: Path) -> Path:
    """Three one-supervision cuts over a generated half-second wav."""
    import soundfile as sf
    from lhotse import CutSet, MonoCut, Recording, SupervisionSegment

    wav = directory / "tone.wav"
    t = np.arange(8000) / 16000
    sf.write(wav, 0.1 * np.sin(2 * np.pi * 440 * t), 16000)
    recording = Recording.from_file(wav, recording_id="tone")
    texts = {"utt1": "de kat zit op de mat", "utt2": "een twee drie", "utt3": "ja"}
    cuts = [
        MonoCut(
            id=f"cut-{utt_id}",
            start=0.0,
            duration=recording.duration,
            channel=0,
            recording=recording,
            supervisions=[SupervisionSegment(utt_id, "tone", 0.0, recording.duration, text=text)],
        )
        for utt_id, text in texts.items()
    ]
    path = directory / "cuts.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    return path


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(
    importlib.util.find_spec("sslgrid.text") is None, reason="sslgrid.text not written yet"
)
def test_score_and_make_table_scripts(tmp_path: Path) -> None:
    cuts = _write_tiny_cutset(tmp_path)
    hyps = tmp_path / "hyps.jsonl"
    # Hypotheses in a different order from the cuts, with the punctuation a decoder may emit.
    lines = [("utt3", "Ja, ja!"), ("utt1", "de hond zit op de mat"), ("utt2", "een drie")]
    hyps.write_text(
        "".join(json.dumps({"id": i, "hyp": h}) + "\n" for i, h in lines), encoding="utf-8"
    )
    score_json, per_utt = tmp_path / "score.json", tmp_path / "per_utt.tsv"
    done = _run(
        "score.py", "--cuts", str(cuts), "--hyps", str(hyps),
        "--coord", "model=apc", "--coord", "split=test",
        "--out", str(score_json), "--per-utt", str(per_utt), "--n-resamples", "200",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(score_json.read_text(encoding="utf-8"))
    assert record["coords"] == {"model": "apc", "split": "test"}
    assert (record["n_utts"], record["n_words"]) == (3, 10)
    assert record["wer"] == pytest.approx(0.3)
    assert record["wer_low"] <= record["wer"] <= record["wer_high"]
    assert record["n_empty_refs_skipped"] == 0
    with open(per_utt, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["id"] for r in rows] == ["utt1", "utt2", "utt3"]
    assert rows[1]["word_errors"] == "1" and rows[1]["n_chars"] == "13"

    csv_out, md_out = tmp_path / "wer_table.csv", tmp_path / "wer_table.md"
    done = _run("make_table.py", "--scores", str(score_json), "--csv", str(csv_out),
                "--md", str(md_out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(csv_out)
    assert list(frame["model"]) == ["apc"] and frame.loc[0, "wer"] == 30.0
    md = md_out.read_text(encoding="utf-8")
    assert re.search(r"- git commit: [0-9a-f]{40}", md)
    assert re.search(r"\| apc \| test \| 3 \| 10 \| 30\.00 \[", md)


@pytest.mark.skipif(
    importlib.util.find_spec("sslgrid.text") is None, reason="sslgrid.text not written yet"
)
def test_score_script_names_missing_hypothesis(tmp_path: Path) -> None:
    cuts = _write_tiny_cutset(tmp_path)
    hyps = tmp_path / "hyps.jsonl"
    hyps.write_text(json.dumps({"id": "utt1", "hyp": "de kat"}) + "\n", encoding="utf-8")
    out, per_utt = tmp_path / "s.json", tmp_path / "u.tsv"
    done = _run("score.py", "--cuts", str(cuts), "--hyps", str(hyps),
                "--out", str(out), "--per-utt", str(per_utt))  # fmt: skip
    assert done.returncode != 0
    assert "utt2" in done.stderr and str(hyps) in done.stderr
    assert not out.exists() and not per_utt.exists()


@pytest.mark.skipif(
    importlib.util.find_spec("sslgrid.text") is None, reason="sslgrid.text not written yet"
)
def test_score_script_scores_every_decoder_in_one_run(tmp_path: Path) -> None:
    cuts = _write_tiny_cutset(tmp_path)
    runs = {"greedy": "de kat", "lm": "de kat zit op de mat"}
    for decoder, utt1 in runs.items():
        (tmp_path / decoder).mkdir()
        lines = [("utt1", utt1), ("utt2", "een twee drie"), ("utt3", "ja")]
        (tmp_path / decoder / "hyps.jsonl").write_text(
            "".join(json.dumps({"id": i, "hyp": h}) + "\n" for i, h in lines), encoding="utf-8"
        )
    each = f"{tmp_path}/{{decoder}}"
    done = _run("score.py", "--cuts", str(cuts), "--decoder", "greedy", "lm",
                "--hyps", f"{each}/hyps.jsonl", "--coord", "model=apc",
                "--coord", "decoder={decoder}", "--coord", "split=test",
                "--out", f"{each}/score.json", "--per-utt", f"{each}/per_utt.tsv",
                "--n-resamples", "50")  # fmt: skip
    assert done.returncode == 0, done.stderr
    records = {d: json.loads((tmp_path / d / "score.json").read_text()) for d in runs}
    for decoder, record in records.items():
        assert record["coords"] == {"model": "apc", "decoder": decoder, "split": "test"}
        assert record["hyps"] == f"{tmp_path}/{decoder}/hyps.jsonl"
        assert (tmp_path / decoder / "per_utt.tsv").read_text().count("\n") == 4
    # greedy misses four of utt1's six words, lm none, out of ten words in all.
    assert records["greedy"]["wer"] == pytest.approx(0.4)
    assert records["lm"]["wer"] == 0.0


@pytest.mark.skipif(
    importlib.util.find_spec("sslgrid.text") is None, reason="sslgrid.text not written yet"
)
def test_score_script_writes_no_decoder_unless_every_one_scores(tmp_path: Path) -> None:
    cuts = _write_tiny_cutset(tmp_path)
    (tmp_path / "greedy").mkdir()
    (tmp_path / "lm").mkdir()
    full = [("utt1", "de kat"), ("utt2", "een"), ("utt3", "ja")]
    for decoder, lines in {"greedy": full, "lm": full[:2]}.items():
        (tmp_path / decoder / "hyps.jsonl").write_text(
            "".join(json.dumps({"id": i, "hyp": h}) + "\n" for i, h in lines), encoding="utf-8"
        )
    each = f"{tmp_path}/{{decoder}}"
    args = ["--cuts", str(cuts), "--decoder", "greedy", "lm", "--hyps", f"{each}/hyps.jsonl",
            "--out", f"{each}/score.json"]  # fmt: skip
    done = _run("score.py", *args, "--per-utt", f"{each}/per_utt.tsv")
    assert done.returncode != 0
    assert "utt3" in done.stderr and f"{tmp_path}/lm/hyps.jsonl" in done.stderr
    assert not list(tmp_path.glob("*/score.json")) and not list(tmp_path.glob("*/per_utt.tsv"))
    # Two decoders writing one file would overwrite each other.
    done = _run("score.py", *args, "--per-utt", str(tmp_path / "per_utt.tsv"))
    assert done.returncode == 2
    assert f"--per-utt {tmp_path / 'per_utt.tsv'}: no {{decoder}}" in done.stderr


def test_cells_get_a_paired_pvalue_against_the_fbank_baseline(tmp_path: Path) -> None:
    from sslgrid.metrics.compare import pvalues_against_baseline

    rng = np.random.default_rng(0)
    n_words = rng.integers(3, 12, size=60)
    errors = {
        "fbank": (n_words * 0.5).astype(int),
        "good": (n_words * 0.2).astype(int),
        "same": (n_words * 0.5).astype(int),
    }
    paths = []
    for model, errs in errors.items():
        folder = tmp_path / model
        folder.mkdir()
        rows = ["id\tref\thyp\tword_errors\tn_words\tchar_errors\tn_chars"]
        rows += [
            f"u{i}\tr\th\t{e}\t{n}\t0\t1"
            for i, (e, n) in enumerate(zip(errs, n_words, strict=True))
        ]
        (folder / "per_utt.tsv").write_text("\n".join(rows) + "\n")
        coords = {"model": model, "pool": "p", "amount": "all", "decoder": "greedy"}
        (folder / "score.json").write_text(json.dumps({"coords": coords}))
        paths.append(folder / "score.json")
    fbank, good, same = pvalues_against_baseline(paths, n_resamples=300)
    assert fbank is None
    assert good < 0.05
    assert same > 0.5  # equal systems: never reliably better


def test_plots_draw_every_cell_of_the_table(tmp_path: Path) -> None:
    from sslgrid.metrics.plots import largest_amounts, plot_wer_bars, plot_wer_vs_hours

    rows = [("fbank", "none", "none", 80.0)]
    rows += [(m, "pool-a", a, w) for m in ["apc", "cpc"] for a, w in [("0.5h", 70), ("all", 60)]]
    frame = pd.DataFrame(
        [
            {"model": m, "pool": p, "amount": a, "decoder": d, "corpus": "c", "split": "test",
             "wer": w, "wer_low": w - 3, "wer_high": w + 3}
            for m, p, a, w in rows
            for d in ["greedy", "lm"]
        ]
    )  # fmt: skip
    largest = largest_amounts(frame)
    assert set(largest["amount"]) == {"none", "all"} and len(largest) == 6
    plot_wer_bars(frame, tmp_path / "bars.png")
    plot_wer_vs_hours(frame, tmp_path / "hours.png")
    for name in ["bars.png", "hours.png"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
