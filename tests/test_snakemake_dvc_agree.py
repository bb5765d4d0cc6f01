"""Snakemake and DVC describe the same stages and the same outputs.

The Snakemake side comes from the workflow itself, without running anything:
``snakemake --detailed-summary`` lists every output file of every job in the DAG of the default
target (rule ``all``: the WER table, its report and the plots, which is also what ``dvc repro``
builds) with its rule, as a tab-separated table; ``snakemake --dag dot`` lists the jobs. The
DVC side is the generated ``dvc.yaml``, each ``foreach`` expanded by substituting
``${item.<key>}``: the ``outs``, ``metrics`` and ``plots`` of every stage.

Allowed differences (nothing else may differ):

- DVC also tracks ``data/audio/<corpus>``, the converted clips the manifests point to, so that
  ``dvc pull`` restores a corpus; Snakemake reads them through the manifests only.
- A Snakemake rule's ``log:`` files are not outputs (they are not in the summary either) and
  have no DVC counterpart.

Stage names: a corpus that must wait for others (``exclude_text_of``) is its own DVC stage,
``corpus-<name>``, and so is each cell of a mixed or continued pre-training pool,
``pretrain-<cell>``. Every other DVC stage family is named after its Snakemake rule; ``decode``
and ``score`` run every decoder of a cell and test set in one job on both sides.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from test_workflow import tiny_config
from workflow_project import BIN, REPO, expand_stages, run, snakemake_args, tool_env

TARGET = "all"  # the default target; it has no outputs itself
DVC_ONLY = [re.compile(r"data/audio/[a-z0-9-]+")]
SNAKEMAKE_ONLY: list[re.Pattern] = []


def dvc_family(stage: str) -> str:
    """The Snakemake rule a DVC stage family stands for."""
    if stage.startswith("corpus-"):
        return "corpus"
    if stage.startswith("pretrain-"):
        return "pretrain"
    return stage


def snakemake_outputs(workdir: Path, configfile: Path | None) -> dict[str, str]:
    """Output file -> rule, for every job in the DAG of the target (nothing is run)."""
    args = [*snakemake_args(workdir, configfile, cores=1), "--detailed-summary", TARGET]
    proc = run(args, workdir, tool_env())
    rows = list(csv.DictReader(io.StringIO(proc.stdout), delimiter="\t"))
    assert rows and {"output_file", "rule"} <= set(rows[0]), proc.stdout[:2000]
    return {row["output_file"]: row["rule"] for row in rows}


def snakemake_job_counts(workdir: Path, configfile: Path | None) -> Counter:
    """Jobs per rule in the DAG of the target, from its Graphviz description."""
    args = [*snakemake_args(workdir, configfile, cores=1), "--dag", "dot", "--", TARGET]
    dot = run(args, workdir, tool_env()).stdout
    rules = re.findall(r'^\s*\d+\[label = "([A-Za-z_][A-Za-z0-9_]*)', dot, flags=re.M)
    assert rules, dot[:2000]
    return Counter(r for r in rules if r != TARGET)


def allowed(path: str, patterns: list[re.Pattern]) -> bool:
    return any(p.fullmatch(path) for p in patterns)


def compare(workdir: Path, configfile: Path | None, pipeline: dict) -> None:
    sm = snakemake_outputs(workdir, configfile)
    stages = expand_stages(pipeline)
    dvc = {path: dvc_family(stage.family) for stage in stages.values() for path in stage.outs}
    missing_in_dvc = sorted(p for p in set(sm) - set(dvc) if not allowed(p, SNAKEMAKE_ONLY))
    missing_in_snakemake = sorted(p for p in set(dvc) - set(sm) if not allowed(p, DVC_ONLY))
    assert not missing_in_dvc, f"Snakemake outputs that no DVC stage declares: {missing_in_dvc}"
    assert not missing_in_snakemake, (
        f"DVC outputs that no Snakemake job makes: {missing_in_snakemake}"
    )
    wrong_stage = sorted((p, sm[p], dvc[p]) for p in set(sm) & set(dvc) if sm[p] != dvc[p])
    assert not wrong_stage, f"outputs made by another stage (file, Snakemake, DVC): {wrong_stage}"

    # The same jobs: one DVC stage per Snakemake job, rule by rule.
    instances = Counter(dvc_family(stage.family) for stage in stages.values())
    assert snakemake_job_counts(workdir, configfile) == instances


def test_default_grid_and_committed_dvc_yaml_agree(tmp_path):
    compare(tmp_path, None, yaml.safe_load((REPO / "dvc.yaml").read_text()))


def test_a_grid_with_every_axis_agrees(tmp_path):
    """Two corpus pools (one synthetic, waiting for the other's held-out text), their mix, a
    pool continued from the mix, two amounts, both input kinds, an imported checkpoint used as
    it is and pre-trained further, two test sets, fine-tuning repeats of the headline cells,
    pre-training repeats of every cell (a continued pool's from the same repeat of its
    start)."""
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    packages = default["corpora"]["fillets-nl"]["packages"]  # never fetched: nothing runs
    config = tiny_config(packages, ["fbank", "apc", "cpc", "offshelf"])
    checkpoint = tmp_path / "offshelf.pt"
    checkpoint.write_bytes(b"")  # only its path matters to the DAG
    config["imported"] = {"offshelf": {"path": str(checkpoint)}}
    config["corpora"]["synth-nl"] = {
        "recipe": "synthetic",
        "language": "nl",
        "region": "vl",
        "domain": "tts",
        "packages": packages,
        "hours": 0.01,
        "exclude_text_of": ["fillets-nl"],
    }
    config["pretrain"].update(
        pools=["fillets-nl", "synth-nl", "mix", "mix-then-nl"],
        amounts=["all", 0.5],
        mixes={"mix": ["fillets-nl", "synth-nl"]},
        continued={"mix-then-nl": {"from": "mix", "then": "fillets-nl"}},
    )
    config["test_sets"] = ["fillets-nl/test", "synth-nl/test"]
    config["finetune"]["repeats"] = {"count": 3, "cells": "headline"}
    config["pretrain"]["repeats"] = {"count": 2, "cells": "all"}
    configfile = tmp_path / "grid.yaml"
    configfile.write_text(yaml.safe_dump(config))

    dvc_yaml = tmp_path / "dvc.yaml"
    run(
        [
            BIN / "python",
            REPO / "scripts" / "write_dvc_yaml.py",
            "--config",
            configfile,
            "--out",
            dvc_yaml,
        ],
        tmp_path,
        tool_env(REPO / "src"),
    )
    compare(tmp_path, configfile, yaml.safe_load(dvc_yaml.read_text()))


def test_the_comparison_notices_an_output_dvc_lacks(tmp_path):
    """The check itself: a rule that gains an output fails it."""
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    plots = pipeline["stages"]["finetune"]["do"]["plots"]
    pipeline["stages"]["finetune"]["do"]["plots"] = [
        p for p in plots if "history.tsv" not in (p if isinstance(p, str) else next(iter(p)))
    ]
    with pytest.raises(AssertionError, match="no DVC stage declares.*history.tsv"):
        compare(tmp_path, None, pipeline)
