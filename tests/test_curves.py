"""Training curves (training_curves stage): history files to per-model figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sslgrid.metrics.curves import (
    history_coords,
    plot_curves,
    read_histories,
    training_summary,
)

REPO = Path(__file__).resolve().parents[1]


def write_history(root: Path, relative: str, rows: list[tuple], columns: str) -> Path:
    path = root / "results" / relative / "history.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [columns.replace(" ", "\t")] + ["\t".join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


PRETRAIN = "epoch train_loss lr seconds"
FINETUNE = "epoch train_loss lr dev_cer dev_wer seconds"


def test_coordinates_come_from_the_path_repeats_included(tmp_path: Path):
    assert history_coords("results/pretrain/apc/fillets-nl/0.5h-r2/history.tsv") == {
        "stage": "pretrain", "model": "apc", "pool": "fillets-nl", "amount": "0.5h",
        "pretrain_repeat": 2,
    }  # fmt: skip
    coords = history_coords(
        tmp_path / "results/finetune/fbank/none/none/frozen-c-0.5h-r1/history.tsv"
    )
    assert (coords["model"], coords["amount"], coords["pretrain_repeat"]) == ("fbank", "none", 0)
    assert (coords["finetune"], coords["repeat"]) == ("frozen-c-0.5h-r1", 1)
    with pytest.raises(ValueError, match="not under a pretrain/ or finetune/"):
        history_coords("results/decode/apc/p/1h/history.tsv")
    with pytest.raises(ValueError, match=r"expected results/finetune/<model>/<pool>/<amount>/"):
        history_coords("results/finetune/apc/p/1h/history.tsv")
    with pytest.raises(ValueError, match="expected results/pretrain"):
        history_coords("results/pretrain/apc/p/1h/log.tsv")


def test_a_history_without_its_columns_is_named(tmp_path: Path):
    bad = write_history(tmp_path, "pretrain/apc/p/1h", [(1, 2.0)], "epoch loss")
    with pytest.raises(ValueError, match=r"pretrain/apc/p/1h/history.tsv: no \['train_loss'\]"):
        read_histories([bad])


def test_one_line_per_cell_and_panels_without_the_metric_say_so(tmp_path: Path):
    files = [
        write_history(tmp_path, "finetune/fbank/none/none/frozen-c", [(1, 3, 0.1, 1.0, 1.0, 1),
                      (2, 2, 0.1, 0.8, 1.0, 1)], FINETUNE),
        write_history(tmp_path, "finetune/apc/p/0.5h/frozen-c", [(1, 3, 0.1, 0.9, 1.0, 1)],
                      FINETUNE),
        write_history(tmp_path, "finetune/apc/p/0.5h/frozen-c-r1", [(1, 3, 0.1, 0.7, 1.0, 1)],
                      FINETUNE),
        write_history(tmp_path, "finetune/apc/p/0.5h-r1/frozen-c", [(1, 3, 0.1, 0.6, 1.0, 1)],
                      FINETUNE),
        write_history(tmp_path, "finetune/cpc/q/all/full-c", [(1, 3, 0.1, 0.5, 1.0, 1)],
                      FINETUNE),
    ]  # fmt: skip
    frame = read_histories(files)
    assert len(frame) == 6 and list(frame["model"].unique()) == ["fbank", "apc", "cpc"]
    assert plot_curves(frame, "dev_cer", tmp_path / "ft.png", "dev CER") == 5
    assert (tmp_path / "ft.png").read_bytes()[:4] == b"\x89PNG"
    # A metric no history has: every panel says so, nothing is drawn.
    assert plot_curves(frame.assign(dev_cer=None), "dev_cer", tmp_path / "none.png", "x") == 0
    assert plot_curves(read_histories([]), "train_loss", tmp_path / "empty.png", "x") == 0


def test_the_script_draws_both_figures(tmp_path: Path):
    pretrain = [
        write_history(tmp_path, f"pretrain/{m}/p/{a}", [(1, 4.0, 1e-3, 2), (2, 3.5, 5e-4, 2)],
                      PRETRAIN)
        for m in ("apc", "wav2vec2") for a in ("0.25h", "0.5h", "0.5h-r1")
    ]  # fmt: skip
    finetune = [
        write_history(tmp_path, "finetune/apc/p/0.5h/frozen-c", [(1, 3, 0.1, 0.9, 1.0, 1)],
                      FINETUNE)
    ]  # fmt: skip
    out = tmp_path / "plots"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plot_training.py"),
         "--pretrain", *map(str, pretrain), "--finetune", *map(str, finetune),
         "--pretrain-out", str(out / "pt.png"), "--finetune-out", str(out / "ft.png")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "6 pre-training curves" in done.stderr and "1 fine-tuning curves" in done.stderr
    for name in ("pt.png", "ft.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_the_summary_has_one_row_per_training_with_its_selected_epoch(tmp_path: Path):
    files = [
        write_history(tmp_path, "pretrain/apc/p/0.5h", [(1, 4.0, 1e-3, 2.5), (2, 3.0, 5e-4, 2.0)],
                      PRETRAIN),
        # Best dev CER at epoch 2 of 4, the tie at epoch 4 does not move it: stopped early.
        write_history(tmp_path, "finetune/apc/p/0.5h/frozen-c", [
            (1, 3, 0.1, 0.9, 1.0, 1), (2, 2, 0.1, 0.5, 0.9, 1), (3, 1.5, 0.1, 0.6, 0.9, 1),
            (4, 1.2, 0.1, 0.5, 0.9, 1)], FINETUNE),
        # Still improving at its last epoch.
        write_history(tmp_path, "finetune/fbank/none/none/frozen-c-r1", [
            (1, 3, 0.1, 0.9, 1.0, 4), (2, 2, 0.1, 0.7, 1.0, 4)], FINETUNE),
    ]  # fmt: skip
    summary = training_summary(read_histories(files))
    rows = summary.to_dict("records")
    assert [r["stage"] for r in rows] == ["pretrain", "finetune", "finetune"]
    pretrain, stopped, improving = rows
    assert (pretrain["epochs"], pretrain["seconds"]) == (2, 4.5)
    assert (pretrain["train_loss_first"], pretrain["train_loss_last"]) == (4.0, 3.0)
    assert pretrain["last_loss_drop"] == pytest.approx(0.25)
    assert pd.isna(pretrain["best_epoch"]) and pd.isna(pretrain["best_at_last"])
    assert (stopped["epochs"], stopped["best_epoch"], stopped["dev_cer_best"]) == (4, 2, 0.5)
    assert stopped["best_at_last"] is False and pd.isna(stopped["last_loss_drop"])
    assert (improving["model"], improving["repeat"], improving["finetune"]) == (
        "fbank",
        1,
        "frozen-c-r1",
    )
    assert (improving["best_epoch"], improving["best_at_last"], improving["seconds"]) == (
        2,
        True,
        8,
    )
    assert training_summary(read_histories([])).empty


def test_the_script_writes_the_summary_and_names_recognisers_still_improving(tmp_path: Path):
    pretrain = write_history(tmp_path, "pretrain/apc/p/0.5h", [(1, 4.0, 1e-3, 2)], PRETRAIN)
    finetune = [
        write_history(tmp_path, "finetune/apc/p/0.5h/frozen-c",
                      [(1, 3, 0.1, 0.9, 1.0, 1), (2, 2, 0.1, 0.95, 1.0, 1)], FINETUNE),
        write_history(tmp_path, "finetune/cpc/p/0.5h/frozen-c",
                      [(1, 3, 0.1, 0.9, 1.0, 1), (2, 2, 0.1, 0.8, 1.0, 1)], FINETUNE),
    ]  # fmt: skip
    out = tmp_path / "plots"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "plot_training.py"),
         "--pretrain", str(pretrain), "--finetune", *map(str, finetune),
         "--pretrain-out", str(out / "pt.png"), "--finetune-out", str(out / "ft.png"),
         "--summary-out", str(tmp_path / "summary.csv")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "1 of 2 fine-tunings had their best dev CER at their last epoch" in done.stderr
    assert "cpc/p/0.5h/frozen-c" in done.stderr and "apc/p/0.5h/frozen-c" not in done.stderr
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert list(summary["stage"]) == ["pretrain", "finetune", "finetune"]
    assert list(summary["best_epoch"].iloc[1:]) == [1, 2]
    assert (tmp_path / "summary.csv").read_text().splitlines()[2].split(",")[-3] == "1"
