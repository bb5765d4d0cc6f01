"""Fine-tuning repeats (finetune.repeats): grid cells, seeds, commands, table and plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sslgrid.config import load_config
from sslgrid.grid import (
    finetune_cells,
    finetune_flags,
    finetune_setting,
    headline_cells,
    repeat_seed,
    upstream_cells,
)
from sslgrid.metrics.table import WerTable, first_repeats, repeat_summary, write_repeat_summary

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def grid(**repeats) -> dict:
    return load_config(REPO / "config.yaml", overrides={"finetune": {"repeats": repeats}})


def test_headline_cells_are_fine_tuned_count_times_and_the_rest_once():
    config = grid(count=3, cells="headline")
    cells = finetune_cells(config)
    headline = set(headline_cells(config))
    for cell in upstream_cells(config):
        repeats = [s.repeat for c, s in cells if c == cell]
        assert repeats == ([0, 1, 2] if cell in headline else [0]), cell
    assert len(cells) == len(upstream_cells(config)) + 2 * len(headline)
    # The first repeat keeps the label (and so the paths) of a grid without repeats.
    labels = {s.label for c, s in cells if c.model == "fbank"}
    assert labels == {
        "frozen-fillets-nl-0.5h",
        "frozen-fillets-nl-0.5h-r1",
        "frozen-fillets-nl-0.5h-r2",
    }
    once = finetune_cells(grid(count=1))
    assert [(c, s) for c, s in cells if s.repeat == 0] == once


def test_all_cells_repeat_when_asked():
    config = grid(count=2, cells="all")
    assert len(finetune_cells(config)) == 2 * len(upstream_cells(config))


def test_labels_name_their_repeat_and_unknown_ones_are_refused():
    config = grid(count=3, cells="headline")
    setting = finetune_setting(config, "frozen-fillets-nl-0.5h-r2")
    assert (setting.mode, setting.amount, setting.repeat) == ("frozen", "0.5h", 2)
    assert setting.first == finetune_setting(config, "frozen-fillets-nl-0.5h")
    with pytest.raises(
        ValueError, match=r"'frozen-fillets-nl-0.5h-r3' is not in the grid.*-r1..-r2"
    ):
        finetune_setting(config, "frozen-fillets-nl-0.5h-r3")
    with pytest.raises(ValueError, match="not in the grid"):
        finetune_setting(grid(count=1), "frozen-fillets-nl-0.5h-r1")


def test_only_later_repeats_get_a_repeat_option():
    config = grid(count=2)
    first = finetune_setting(config, "frozen-fillets-nl-0.5h")
    assert finetune_flags(first) == "--mode frozen --labelled 0.5h"
    assert finetune_flags(first.__class__("frozen", "fillets-nl", "0.5h", 1)) == (
        "--mode frozen --labelled 0.5h --repeat 1"
    )


def test_repeat_seeds_keep_the_first_and_spread_the_others():
    assert repeat_seed(1234, 0) == 1234
    seeds = [repeat_seed(1234, r) for r in range(1, 20)]
    assert len(set(seeds)) == len(seeds)
    # Far from seed + k: the epochs' shuffles use seed + epoch.
    assert all(abs(s - 1234) > 1000 for s in seeds)
    assert seeds == [repeat_seed(1234, r) for r in range(1, 20)]  # deterministic
    assert repeat_seed(1, 1) != repeat_seed(2, 1)
    with pytest.raises(ValueError, match="repeat -1"):
        repeat_seed(1234, -1)


def test_schema_names_a_bad_repeat_count():
    with pytest.raises(Exception, match="finetune.repeats.count|repeats"):
        grid(count=0)


def score(model: str, repeat: int, wer: float, cer: float, pool: str = "p") -> dict:
    return {
        "coords": {
            "model": model,
            "pool": "none" if model == "fbank" else pool,
            "amount": "none" if model == "fbank" else "0.5h",
            "finetune": "frozen-c-0.5h" + (f"-r{repeat}" if repeat else ""),
            "finetune_mode": "frozen",
            "labelled": "0.5h",
            "repeat": repeat,
            "decoder": "greedy",
            "corpus": "c",
            "split": "test",
        },
        "n_utts": 10,
        "n_words": 100,
        **{k: wer / 100 for k in ("wer", "wer_low", "wer_high")},
        **{k: cer / 100 for k in ("cer", "cer_low", "cer_high")},
    }


def test_summary_gives_mean_spread_and_difference_from_fbank():
    scores = [score("fbank", r, w, c) for r, (w, c) in enumerate([(90, 70), (94, 74), (92, 78)])]
    scores += [score("apc", r, w, c) for r, (w, c) in enumerate([(80, 60), (84, 62), (82, 64)])]
    scores.append(score("cpc", 0, 85, 65))  # fine-tuned once: not in the summary
    summary = repeat_summary(WerTable(scores).frame())
    assert list(summary["model"]) == ["fbank", "apc"]
    apc = summary.set_index("model").loc["apc"]
    assert apc["repeats"] == 3
    assert (apc["wer_mean"], apc["wer_sd"], apc["wer_min"], apc["wer_max"]) == (82, 2, 80, 84)
    assert (apc["cer_mean"], apc["cer_sd"]) == (62, 2)
    assert apc["wer_vs_fbank"] == -10 and apc["cer_vs_fbank"] == -12
    assert summary.set_index("model").loc["fbank", "cer_vs_fbank"] == 0
    assert "finetune" not in summary and "repeat" not in summary
    assert len(first_repeats(WerTable(scores).frame())) == 3


def test_summary_is_empty_without_repeats(tmp_path: Path):
    frame = WerTable([score("fbank", 0, 90, 70), score("apc", 0, 80, 60)]).frame()
    assert repeat_summary(frame).empty
    assert repeat_summary(frame.drop(columns="repeat")).empty
    write_repeat_summary(frame, tmp_path / "repeats.csv")
    assert (tmp_path / "repeats.csv").read_text() == "over,model,repeats\n"


def write_score_file(folder: Path, record: dict) -> str:
    """A score file and the per-utterance errors beside it (as the score stage writes them)."""
    folder.mkdir(parents=True)
    (folder / "score.json").write_text(json.dumps(record))
    (folder / "per_utt.tsv").write_text(
        "id\tref\thyp\tword_errors\tn_words\tchar_errors\tn_chars\n"
        + "".join(f"u{i}\tr\th\t{i % 3}\t4\t0\t1\n" for i in range(10))
    )
    return str(folder / "score.json")


def run_table_scripts(paths: list[str], out: Path) -> None:
    """The wer_table and wer_repeats stages' scripts on ``paths``, into ``out``."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    for name, *args in (
        ["make_table.py", "--scores", *paths, "--csv", str(out / "wer_table.csv"),
         "--md", str(out / "wer_table.md")],
        ["repeat_table.py", "--table", str(out / "wer_table.csv"),
         "--out", str(out / "wer_repeats.csv")],
    ):  # fmt: skip
        done = subprocess.run(
            [sys.executable, str(REPO / "scripts" / name), *args],
            capture_output=True, text=True, env=env, cwd=REPO,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_table_scripts_write_the_summary_and_plots_draw_repeats(tmp_path: Path):
    paths = []
    values = {"fbank": [(90, 70), (94, 74)], "apc": [(80, 60), (84, 64)]}
    for model, runs in values.items():
        for r, (w, c) in enumerate(runs):
            paths.append(write_score_file(tmp_path / model / str(r), score(model, r, w, c)))
    out = tmp_path / "out"
    run_table_scripts(paths, out)
    table = pd.read_csv(out / "wer_table.csv")
    assert sorted(table["repeat"]) == [0, 0, 1, 1]
    # Each repeat is compared with fbank's repeat of the same number.
    assert table["p_vs_fbank"].notna().sum() == 2
    summary = pd.read_csv(out / "wer_repeats.csv")
    assert list(summary["model"]) == ["fbank", "apc"] and list(summary["repeats"]) == [2, 2]
    assert list(summary["wer_vs_fbank"]) == [0, -10]
    md = (out / "wer_table.md").read_text()
    assert "## Repeats" in md and "| apc |" in md.split("## Repeats")[1]

    from sslgrid.metrics.plots import plot_wer_bars, plot_wer_vs_hours

    plot_wer_bars(table, tmp_path / "bars.png")
    plot_wer_vs_hours(table, tmp_path / "hours.png")
    for name in ("bars.png", "hours.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_dry_run_plans_a_job_per_repeat_with_its_option(tmp_path: Path):
    """Snakemake plans one fine-tuning per repeat; later repeats pass --repeat, the first keeps
    the command of a grid without repeats."""
    (tmp_path / "repeats.yaml").write_text(
        "finetune:\n  repeats: {count: 3, cells: headline}\n", encoding="utf-8"
    )
    proc = subprocess.run(
        [str(BIN / "snakemake"), "-n", "-p", "--forceall", "--cores", "8",
         "--snakefile", str(REPO / "Snakefile"), "--directory", str(REPO),
         "--configfile", str(tmp_path / "repeats.yaml"), "--", "results/wer_repeats.csv"],
        capture_output=True, text=True,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    config = grid(count=3, cells="headline")
    assert out.count("rule finetune:") == len(finetune_cells(config))
    assert (
        out.count("--repeat 1 --out")
        == out.count("--repeat 2 --out")
        == len(headline_cells(config))
    )
    assert "results/finetune/apc/fillets-nl/0.5h/frozen-fillets-nl-0.5h-r2/model.pt" in out
    assert "results/wer_repeats.csv" in out
