"""The whole DAG, end to end, on a tiny generated corpus: Snakemake and DVC."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from fillets_fixture import make_fillets_packages

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

WORDS = [
    "een vis",
    "twee vissen",
    "de grote vis",
    "de kleine vis",
    "hier is water",
    "waar is de deur",
    "we moeten weg",
    "kijk daar eens",
]


def tiny_levels() -> dict[str, list[tuple[str, str, str, str]]]:
    levels = {}
    for n, level in enumerate(["alpha", "beta", "gamma", "delta"]):
        levels[level] = [
            (
                f"{level[:2]}-{'m' if i % 2 else 'v'}-{i}",
                "font_small" if i % 2 else "font_big",
                f"english {i}",
                WORDS[(n + i) % len(WORDS)].capitalize() + ".",
            )
            for i in range(3)
        ]
    return levels


TABLE_AND_PLOTS = [
    "results/wer_table.csv",
    "results/plots/wer_by_upstream.png",
    "results/plots/wer_vs_hours.png",
    "results/plots/pretrain_curves.png",
    "results/plots/finetune_curves.png",
    "results/training_summary.csv",
]
UPSTREAMS = yaml.safe_load((REPO / "config.yaml").read_text())["finetune"]["upstreams"]
DECODERS = yaml.safe_load((REPO / "config.yaml").read_text())["decode"]["decoders"]


def tiny_config(packages: list[dict[str, str]], upstreams: list[str] = UPSTREAMS) -> dict:
    """The default grid on a tiny corpus, one epoch, with ``upstreams`` fine-tuned."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["finetune"]["upstreams"] = list(upstreams)
    config["pretrain"]["models"] = [m for m in upstreams if m != "fbank"]
    config["corpora"]["fillets-nl"].update(packages=packages, dev_fraction=0.25, test_fraction=0.25)
    config["models"]["apc"]["sizes"]["tiny"] = {
        "num_layers": 2,
        "hidden_size": 16,
        "prediction_shift": 2,
        "dropout": 0.0,
    }
    # One pool, all of it, all labels: the fixture corpus holds seconds, not hours.
    config["pretrain"].update(pools=["fillets-nl"], amounts=["all"], epochs=1, batch_seconds=4.0)
    config["finetune"].update(amounts=["all"], epochs=1, batch_seconds=4.0)
    config["finetune"]["downstream"].update(
        hidden_size=16, num_layers=1, dropout=0.0, subsample=2, kernel_size=3
    )
    tiny_st(config)
    return config


def tiny_st(config: dict) -> None:
    """Speech translation in seconds: a tiny LM on the corpus' own training text only (the
    Debian catalogues are not fetched in tests), one short epoch, short beams."""
    config["st"].update(epochs=1, batch_seconds=4.0, beam_size=2, max_new_tokens=6)
    config["st"]["projector"] = {"stack_ms": 100, "hidden_size": 16}
    config["st"]["llms"] = {
        "tiny-nl": {
            "size": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "max_positions": 128},
            "vocab_size": 300,
            "block_size": 32,
            "pretrain": {"steps": 4, "batch_size": 2},
            "dutch": {"steps": 2, "batch_size": 2},
            "text": {"catalogues": False, "corpus": True},
        }
    }


def read_table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def check_table(rows: list[dict[str, str]], models: list[str]) -> None:
    assert {r["model"] for r in rows} == set(models)
    assert {(r["model"], r["decoder"]) for r in rows} == {(m, d) for m in models for d in DECODERS}
    for row in rows:
        assert row["corpus"] == "fillets-nl" and row["split"] == "test"
        assert row["decoder"] in ("greedy", "lm")
        assert int(row["n_utts"]) > 0
        assert float(row["wer_low"]) <= float(row["wer"]) <= float(row["wer_high"])


def write_hf_checkpoint(folder: Path) -> Path:
    """A tiny randomly initialised wav2vec 2.0 in the Hugging Face layout, as users keep XLSR."""
    from transformers import Wav2Vec2ForPreTraining

    from sslgrid.models.wav2vec2 import Wav2Vec2Settings

    args = yaml.safe_load((REPO / "config.yaml").read_text())["models"]["wav2vec2"]["sizes"]
    settings = Wav2Vec2Settings(**args["tiny"])
    Wav2Vec2ForPreTraining(settings.to_hf_config()).save_pretrained(folder)
    return folder


@pytest.mark.e2e
def test_snakemake_runs_the_whole_dag(tmp_path):
    packages = make_fillets_packages(tmp_path / "pkgs", tiny_levels())
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = tiny_config(packages)
    # An off-the-shelf checkpoint, fine-tuned as it is and after continued pre-training.
    config["imported"] = {"offshelf": {"path": str(write_hf_checkpoint(tmp_path / "hf"))}}
    config["finetune"]["upstreams"].append("offshelf")
    config["pretrain"]["models"].append("offshelf")
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    cmd = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "tiny.yaml"),
        "--cores",
        "2",
        *TABLE_AND_PLOTS,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = read_table(workdir / "results" / "wer_table.csv")
    check_table(rows, [*UPSTREAMS, "offshelf"])
    assert {r["pool"] for r in rows if r["model"] == "offshelf"} == {"none", "fillets-nl"}
    md = (workdir / "results" / "wer_table.md").read_text()
    assert "torch" in md and "git" in md.lower()
    # One summary row per training: every fine-tuning with its selected epoch, every
    # pre-training with its loss.
    trainings = read_table(workdir / "results" / "training_summary.csv")
    finetuned = sorted((workdir / "results" / "finetune").glob("*/*/*/*/model.pt"))
    pretrained = [
        path
        for path in (workdir / "results" / "pretrain").glob("*/*/*/model.pt")
        if path.parts[-3] != "none"  # an off-the-shelf model taken as it is: not trained here
    ]
    assert [r["stage"] for r in trainings] == ["pretrain"] * len(pretrained) + ["finetune"] * len(
        finetuned
    )
    for r in trainings:
        assert int(r["epochs"]) >= 1 and float(r["seconds"]) >= 0, r
        if r["stage"] == "finetune":
            assert 1 <= int(r["best_epoch"]) <= int(r["epochs"]), r
            assert 0 <= float(r["dev_cer_best"]) and r["best_at_last"] in ("True", "False"), r
        else:
            assert r["best_epoch"] == "" and float(r["train_loss_last"]) > 0, r
    logs = ["corpus/fillets-nl.log", "pretrain/offshelf/fillets-nl/all.log"]
    for log in logs + [f"pretrain/{m}/fillets-nl/all.log" for m in UPSTREAMS if m != "fbank"]:
        assert (workdir / "logs" / log).stat().st_size > 0
    # Each pre-training job trained with its model's own settings where it has them.
    for model in config["pretrain"]["models"]:
        own = (config["models"].get(model) or {}).get("pretrain") or {}
        path = workdir / "results" / "pretrain" / model / "fillets-nl" / "all" / "model.pt"
        training = torch.load(path, map_location="cpu", weights_only=False)["config"]["training"]
        assert training == {**{k: config["pretrain"][k] for k in training}, **own}, model
    # Everything is up to date: a second run has nothing to do.
    again = subprocess.run([*cmd, "-n"], env=env, capture_output=True, text=True)
    assert "Nothing to be done" in again.stdout + again.stderr
    # The HTML report renders the table, the plots and the configuration.
    report = subprocess.run(
        [*cmd, "--report", "results/report.html"], env=env, capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr[-3000:]
    html = (workdir / "results" / "report.html").read_text(errors="replace")
    for item in ("wer_table.csv", "wer_by_upstream.png", "wer_vs_hours.png", "config.yaml"):
        assert item in html, item
    # A re-trained upstream is rewritten: its fine-tuning reruns and starts over rather than
    # resume the checkpoints of the run on the old upstream (which would skip all training).
    (finetuned,) = (workdir / "results" / "finetune" / "apc" / "fillets-nl" / "all").glob(
        "*/model.pt"
    )
    upstream = workdir / "results" / "pretrain" / "apc" / "fillets-nl" / "all" / "model.pt"
    retrained = torch.load(upstream, map_location="cpu", weights_only=False)
    retrained["model"] = {
        k: v + 0.01 if v.is_floating_point() else v for k, v in retrained["model"].items()
    }
    torch.save(retrained, upstream)
    target = str(finetuned.relative_to(workdir))
    rerun = subprocess.run(
        [*cmd[: -len(TABLE_AND_PLOTS)], target], env=env, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    log = (workdir / "logs" / Path(target).parent.relative_to("results")).with_suffix(".log")
    assert "written with a different configuration" in log.read_text()


@pytest.mark.e2e
def test_dvc_repro_builds_the_same_table(tmp_path):
    packages = make_fillets_packages(tmp_path / "pkgs", tiny_levels())
    project = tmp_path / "project"
    project.mkdir()
    for name in ["scripts", "src", "workflow"]:
        shutil.copytree(
            REPO / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
    upstreams = ["fbank", "apc", "cpc"]  # one model of each input kind
    config = tiny_config(packages, upstreams)
    # A second fine-tuning of each headline cell (here: every cell) with its own seed, and a
    # second pre-training of each pre-trained one (fine-tuned once).
    config["finetune"]["repeats"] = {"count": 2, "cells": "headline"}
    config["pretrain"]["repeats"] = {"count": 2, "cells": "headline"}
    (project / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(project / "src")}

    def run(*args: str) -> None:
        proc = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{args}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("python", "scripts/write_dvc_yaml.py")
    run("dvc", "repro", "-q")
    rows = read_table(project / "results" / "wer_table.csv")
    check_table(rows, upstreams)
    firsts = [r for r in rows if r["pretrain_repeat"] == "0"]
    repeats = [int(r["repeat"]) for r in firsts]
    assert repeats.count(0) == repeats.count(1) == len(firsts) // 2
    again = [(r["model"], r["amount"], r["repeat"]) for r in rows if r["pretrain_repeat"] == "1"]
    assert sorted(set(again)) == [("apc", "all", "0"), ("cpc", "all", "0")]
    summary = read_table(project / "results" / "wer_repeats.csv")
    assert {(r["over"], r["model"]) for r in summary} == {
        *(("fine-tuning", m) for m in upstreams),
        *(("pre-training", m) for m in upstreams if m != "fbank"),
    }
    assert {r["repeats"] for r in summary} == {"2"}
    # The repeat trained on the same labels with another seed, to other weights.
    from sslgrid.grid import repeat_seed

    folder = project / "results" / "finetune" / "apc" / "fillets-nl" / "all"
    first, second = (
        torch.load(folder / name / "model.pt", map_location="cpu", weights_only=False)
        for name in ("frozen-fillets-nl", "frozen-fillets-nl-r1")
    )
    assert first["config"]["seed"] == config["seed"] and "repeat" not in first["config"]
    assert second["config"]["seed"] == repeat_seed(config["seed"], 1)
    assert second["config"]["repeat"] == 1
    assert first["config"]["labelled_utterances"] == second["config"]["labelled_utterances"]
    assert any(not torch.equal(first["model"][k], second["model"][k]) for k in first["model"])
    # The pre-training repeat: the same audio, its own seed, other weights.
    folder = project / "results" / "pretrain" / "cpc" / "fillets-nl"
    first, second = (
        torch.load(folder / name / "model.pt", map_location="cpu", weights_only=False)
        for name in ("all", "all-r1")
    )
    assert first["config"]["seed"] == config["seed"] and "pretrain_repeat" not in first["config"]
    assert second["config"]["seed"] == repeat_seed(config["seed"], 1, "pre-training")
    assert second["config"]["pretrain_repeat"] == 1 and second["config"]["amount"] == "all-r1"
    assert first["config"]["utterances"] == second["config"]["utterances"]
    assert any(not torch.equal(first["model"][k], second["model"][k]) for k in first["model"])
    for name in ("pretrain_curves.png", "finetune_curves.png"):
        assert (project / "results" / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    # One grid cell can be rebuilt on its own.
    run("dvc", "repro", "-f", "-s", "pretrain@apc-fillets-nl-all")


def test_committed_dvc_yaml_matches_the_default_grid():
    from sslgrid.config import load_config
    from sslgrid.dvc_pipeline import render

    written = yaml.safe_load((REPO / "config.yaml").read_text())
    assert (REPO / "dvc.yaml").read_text() == render(load_config(REPO / "config.yaml"), written), (
        "dvc.yaml is out of date: run `python scripts/write_dvc_yaml.py`"
    )
    # Every param DVC tracks is written in config.yaml (DVC cannot see schema defaults).
    for stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values():
        body = stage.get("do", stage)
        for entry in body.get("params", []):
            for key in entry.get("config.yaml", []):
                if "${" in key:
                    continue
                node = written
                for part in key.split("."):
                    assert isinstance(node, dict) and part in node, f"{key} not in config.yaml"
                    node = node[part]


def test_dry_run_of_the_default_grid_lists_every_stage():
    """Every stage is in the plan; decoding and scoring take one job per fine-tuned cell and
    test set, whatever the number of decoders."""
    from sslgrid.config import load_config
    from sslgrid.grid import finetune_cells

    proc = subprocess.run(
        [
            str(BIN / "snakemake"),
            "-n",
            "--forceall",
            "--cores",
            "8",
            "results/wer_table.csv",
            "--directory",
            str(REPO),
            "--snakefile",
            str(REPO / "Snakefile"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    for rule in ["corpus", "features", "pretrain", "finetune", "decode", "score", "wer_table"]:
        assert rule in out
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    grid = load_config(REPO / "config.yaml")
    jobs = len(finetune_cells(grid)) * len(grid["test_sets"])
    assert int(counts["decode"]) == int(counts["score"]) == jobs, counts


def test_snakemake_refuses_a_bad_config_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"pretrain": {"modles": ["apc"]}}))
    proc = subprocess.run(
        [
            str(BIN / "snakemake"),
            "-n",
            "--cores",
            "1",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(bad),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "modles" in proc.stdout + proc.stderr
    assert "allowed keys" in proc.stdout + proc.stderr


def test_dvc_commands_have_no_double_spaces():
    """DVC folds long commands over lines in dvc.lock and YAML drops a space at a fold: a command
    holding two spaces in a row (an empty optional flag) would read back changed, and every
    `dvc status` would report the stage out of date."""
    from workflow_project import expand_stages

    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    for name, spec in pipeline["stages"].items():
        body = spec.get("do", spec)
        for key, item in (spec.get("foreach") or {None: {}}).items():
            cmd = re.sub(
                r"\$\{item\.(\w+)\}", lambda m, item=item: str(item[m.group(1)]), body["cmd"]
            )
            assert "  " not in cmd and cmd == cmd.strip(), f"{name}@{key}: {cmd!r}"
    assert expand_stages(pipeline)
