"""Pre-training repeats (pretrain.repeats): grid cells, labels, commands, tables and plots."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_repeats import run_table_scripts, write_score_file
from workflow_project import run, snakemake_args, tool_env

from sslgrid.config import load_config
from sslgrid.grid import (
    NO_PRETRAIN,
    UpstreamCell,
    finetune_cells,
    first_upstream_cells,
    headline_cells,
    pretrain_amount_label,
    pretrain_repeats,
    split_amount_label,
    split_pretrain_repeat,
    stage_cells,
    upstream_cells,
)
from sslgrid.metrics.table import WerTable, first_finetunings, first_repeats, repeat_summary

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def grid(finetune: dict | None = None, **repeats) -> dict:
    overrides: dict = {"pretrain": {"repeats": repeats}}
    if finetune is not None:
        overrides["finetune"] = {"repeats": finetune}
    return load_config(REPO / "config.yaml", overrides=overrides)


def pretrained(cells: list[UpstreamCell]) -> list[UpstreamCell]:
    return [c for c in cells if c.pool != NO_PRETRAIN]


def test_headline_cells_are_pre_trained_count_times_each_fine_tuned_once():
    config = grid(count=3, cells="headline")
    once = grid(count=1)
    assert pretrain_repeats(once) == [] and upstream_cells(once) == first_upstream_cells(config)
    # Repeats come after the grid's own cells, whose paths stay those of a grid without them.
    assert upstream_cells(config) == first_upstream_cells(config) + pretrain_repeats(config)
    headline = pretrained(headline_cells(config))
    assert headline_cells(config) == headline_cells(once)
    assert [c.path for c in pretrain_repeats(config)] == [
        f"{c.path}-r{r}" for c in headline for r in (1, 2)
    ]
    for cell in pretrain_repeats(config):
        assert (cell.hours, cell.repeat) == ("0.5h", int(cell.amount[-1]))
        # Each repeat is fine-tuned once (finetune.repeats: headline means first pre-trainings).
        assert [s.repeat for c, s in finetune_cells(config) if c == cell] == [0]
    # Later stages on headline cells probe the first pre-training; "all" takes every one.
    assert stage_cells(config, "probe") == headline_cells(config)
    config["probe"]["cells"] = "all"
    assert stage_cells(config, "probe") == upstream_cells(config)


def test_all_repeats_every_pre_trained_cell_and_fine_tuning_repeats_can_cross_them():
    config = grid(count=2, cells="all")
    assert len(pretrain_repeats(config)) == len(pretrained(first_upstream_cells(config)))
    crossed = grid({"count": 2, "cells": "all"}, count=2, cells="headline")
    repeat = pretrain_repeats(crossed)[0]
    assert [s.repeat for c, s in finetune_cells(crossed) if c == repeat] == [0, 1]


def test_a_repeated_continued_pool_brings_the_same_repeat_of_its_start_pool():
    """Repeat r of cs-then-nl continues from repeat r of fillets-cs: a chain of its own."""
    config = load_config(
        REPO / "config.yaml",
        overrides={
            "pretrain": {
                "pools": ["cs-then-nl", "fillets-nl", "fillets-cs"],
                "models": ["apc"],
                "repeats": {"count": 2, "cells": "headline"},
            },
            "finetune": {"upstreams": ["fbank", "apc"]},
        },
    )
    assert [c.path for c in pretrain_repeats(config)] == [
        "apc/cs-then-nl/0.5h-r1",
        "apc/fillets-cs/0.5h-r1",
    ]


def test_amount_labels_carry_the_repeat_and_split_back():
    assert pretrain_amount_label("0.5h", 0) == "0.5h"
    assert pretrain_amount_label("0.5h", 2) == "0.5h-r2"
    assert pretrain_amount_label("all", 1) == "all-r1"
    for label, parts in [("0.5h-r2", ("0.5h", 2)), ("all-r11", ("all", 11)), ("0.5h", ("0.5h", 0)),
                         ("none", ("none", 0)), ("0.5h-r0", ("0.5h-r0", 0))]:  # fmt: skip
        assert split_amount_label(label) == parts
    with pytest.raises(ValueError, match="pre-training repeat -1"):
        pretrain_amount_label("0.5h", -1)
    coords = {"model": "apc", "pool": "p", "amount": "1h-r3", "corpus": "c"}
    assert split_pretrain_repeat(coords) == {**coords, "amount": "1h", "pretrain_repeat": 3}
    assert split_pretrain_repeat({"model": "fbank", "amount": "none"})["pretrain_repeat"] == 0
    assert coords["amount"] == "1h-r3"  # the caller's dict is left alone


def test_schema_names_a_bad_repeat_setting():
    with pytest.raises(Exception, match="pretrain.repeats|repeats"):
        grid(count=0)
    with pytest.raises(Exception, match="pretrain.repeats|repeats"):
        grid(count=2, cells="some")


def test_dry_run_plans_a_pre_training_per_repeat_under_its_label(tmp_path: Path):
    """Snakemake plans one pre-training per repeat (the label reaches the script and the
    scores' coordinates); the first pre-trainings keep their commands."""
    (tmp_path / "repeats.yaml").write_text(
        "pretrain:\n  repeats: {count: 3, cells: headline}\n", encoding="utf-8"
    )
    args = snakemake_args(REPO, tmp_path / "repeats.yaml", cores=8)
    proc = run([*args, "-n", "-p", "--forceall", "--", "results/wer_repeats.csv"], REPO, tool_env())
    out = proc.stdout + proc.stderr
    config = grid(count=3, cells="headline")
    assert out.count("rule pretrain:") == len(pretrained(upstream_cells(config)))
    assert out.count("rule finetune:") == len(finetune_cells(config))
    for r in (1, 2):
        assert out.count(f"--pool fillets-nl --amount 0.5h-r{r} --out") == 6
        assert out.count(f"--coord amount=0.5h-r{r} ") == 6  # scoring
    assert "results/finetune/cpc/fillets-nl/0.5h-r2/frozen-fillets-nl-0.5h/model.pt" in out
    assert "--amount 0.5h --out results/pretrain/apc/fillets-nl/0.5h/model.pt" in out


def score(model: str, pt: int, ft: int, wer: float, cer: float) -> dict:
    amount = "none" if model == "fbank" else pretrain_amount_label("0.5h", pt)
    return {
        "coords": split_pretrain_repeat({
            "model": model,
            "pool": "none" if model == "fbank" else "p",
            "amount": amount,
            "finetune": "frozen-c-0.5h" + (f"-r{ft}" if ft else ""),
            "finetune_mode": "frozen",
            "labelled": "0.5h",
            "repeat": ft,
            "decoder": "greedy",
            "corpus": "c",
            "split": "test",
        }),
        "n_utts": 10,
        "n_words": 100,
        **{k: wer / 100 for k in ("wer", "wer_low", "wer_high")},
        **{k: cer / 100 for k in ("cer", "cer_low", "cer_high")},
    }  # fmt: skip


def test_summary_separates_pre_training_from_fine_tuning_spread():
    scores = [score("fbank", 0, 0, 90, 70), score("fbank", 0, 1, 94, 74)]
    # apc: three pre-trainings, the first also fine-tuned twice.
    scores += [
        score("apc", pt, 0, w, c) for pt, (w, c) in enumerate([(80, 60), (86, 62), (83, 67)])
    ]
    scores.append(score("apc", 0, 1, 70, 50))
    frame = WerTable(scores).frame()
    assert list(frame.columns[:6]) == ["model", "pool", "amount", "pretrain_repeat", "finetune",
                                       "finetune_mode"]  # fmt: skip
    summary = repeat_summary(frame).set_index(["over", "model"])
    assert list(summary.index) == [
        ("fine-tuning", "fbank"),
        ("fine-tuning", "apc"),
        ("pre-training", "apc"),
    ]
    tuned, trained = summary.loc[("fine-tuning", "apc")], summary.loc[("pre-training", "apc")]
    assert (tuned["repeats"], tuned["wer_mean"], tuned["pretrain_repeat"]) == (2, 75, 0)
    assert tuned["wer_vs_fbank"] == 75 - 92
    # Over pre-trainings: each one's first fine-tuning only (not the 70 of the second).
    assert (trained["repeats"], trained["wer_mean"], trained["wer_min"]) == (3, 83, 80)
    assert (trained["cer_mean"], trained["cer_max"]) == (63, 67)
    assert trained["wer_vs_fbank"] == 83 - 90  # fbank's first fine-tuning
    assert trained["finetune"] == "frozen-c-0.5h" and pd.isna(trained["pretrain_repeat"])
    assert len(first_repeats(frame)) == 2 and len(first_finetunings(frame)) == 4


def test_table_script_splits_the_label_and_the_plots_draw_every_pre_training(tmp_path: Path):
    paths = []
    runs = {("fbank", 0): (90, 70), ("apc", 0): (80, 60), ("apc", 1): (84, 64)}
    for (model, pt), (w, c) in runs.items():
        record = score(model, pt, 0, w, c)
        record["coords"]["amount"] = pretrain_amount_label(record["coords"].pop("amount"), pt)
        del record["coords"]["pretrain_repeat"]  # as scripts/score.py writes them
        paths.append(write_score_file(tmp_path / model / str(pt), record))
    out = tmp_path / "out"
    run_table_scripts(paths, out)
    table = pd.read_csv(out / "wer_table.csv", dtype={"amount": str})
    assert list(table["amount"]) == ["none", "0.5h", "0.5h"]
    assert list(table["pretrain_repeat"]) == [0, 0, 1]
    assert table["p_vs_fbank"].notna().sum() == 2  # both pre-trainings against fbank
    summary = pd.read_csv(out / "wer_repeats.csv")
    assert list(summary["over"]) == ["pre-training"] and list(summary["wer_mean"]) == [82]
    assert "over pre-training" not in (out / "wer_table.md").read_text()
    assert "| pre-training | apc |" in (out / "wer_table.md").read_text()

    from sslgrid.metrics.plots import plot_wer_bars, plot_wer_vs_hours

    plot_wer_bars(table, tmp_path / "bars.png")
    plot_wer_vs_hours(table, tmp_path / "hours.png")
    for name in ("bars.png", "hours.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_probe_and_translation_tables_split_the_label_too(tmp_path: Path):
    from sslgrid.probe.report import probe_frame
    from sslgrid.st.table import st_row

    record = {
        "coords": {"model": "apc", "pool": "p", "amount": "0.5h-r2", "corpus": "c",
                   "split": "test"},
        "rows": [{"layer_choice": "all", "layer": 0, "num_layers": 1, "n_utts": 3,
                  "n_frames": 30, "accuracy": 0.5, "accuracy_low": 0.4, "accuracy_high": 0.6,
                  "majority": 0.2, "train_accuracy": 0.55}],
    }  # fmt: skip
    (tmp_path / "probe.json").write_text(json.dumps(record))
    row = probe_frame([tmp_path / "probe.json"]).iloc[0]
    assert (row["amount"], row["pretrain_repeat"]) == ("0.5h", 2)
    coords = {**record["coords"], "llm": "l", "adapter": "a", "task": "translate"}
    row = st_row({"coords": coords}, "score.json")
    assert (row["amount"], row["pretrain_repeat"]) == ("0.5h", 2)


def test_the_probe_plot_matches_pre_trainings_and_reads_an_older_probe_table(tmp_path: Path):
    from sslgrid.probe.report import plot_accuracy_vs_wer

    probes = pd.DataFrame(
        [{"model": m, "pool": p, "amount": a, "pretrain_repeat": r, "corpus": "c",
          "split": "test", "layer": 0, "accuracy": acc, "accuracy_low": acc - 1,
          "accuracy_high": acc + 1}
         for m, p, a, r, acc in (("fbank", "none", "none", 0, 40.0), ("apc", "p", "0.5h", 0, 50.0),
                                 ("apc", "p", "0.5h", 1, 55.0))]
    )  # fmt: skip
    wer = WerTable(
        [score("fbank", 0, 0, 90, 70), score("apc", 0, 0, 80, 60), score("apc", 0, 1, 81, 61),
         score("apc", 1, 0, 84, 64)]
    ).frame()  # fmt: skip
    # Each pre-training's probe against its first fine-tuning's WER: 3 points, not 4.
    assert plot_accuracy_vs_wer(probes, wer, tmp_path / "a.png") == 3
    # A probe table written before pre-training repeats: its cells are first pre-trainings.
    older = probes[probes["pretrain_repeat"] == 0].drop(columns="pretrain_repeat")
    assert plot_accuracy_vs_wer(older, wer, tmp_path / "b.png") == 2
    old_wer = wer[wer["pretrain_repeat"] == 0].drop(columns="pretrain_repeat")
    assert plot_accuracy_vs_wer(older, old_wer, tmp_path / "c.png") == 2
