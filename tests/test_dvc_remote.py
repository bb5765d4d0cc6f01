"""DVC's default remote, end to end: repro, push, clone, pull, and reruns limited to a change.

A throw-away copy of the checkout (with the repository's ``.dvc/config``, ``.gitignore`` and
``.dvcignore``) reproduces the tiny grid with ``dvc repro``, commits ``dvc.lock`` and pushes to
the committed default remote, ``local`` (``../sslgrid-dvc-store`` beside the checkout, here a
temporary folder). A ``git clone`` beside it pulls every output byte for byte and is up to date
without running a stage. Changing a pre-training parameter then reruns that cell's chain only.
"""

from __future__ import annotations

import filecmp
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from fillets_fixture import make_fillets_packages
from test_workflow import check_table, read_table, tiny_config, tiny_levels
from workflow_project import REPO, copy_checkout, downstream_of, expand_stages, run, tool_env

UPSTREAMS = ["fbank", "apc"]
REMOTE = "local"
STORE = "sslgrid-dvc-store"  # beside the checkout: .dvc/config has url ../../sslgrid-dvc-store
PRETRAIN_CELL = "apc-fillets-nl-all"


def dvc_status(project: Path, env: dict[str, str]) -> dict:
    """``dvc status`` as JSON: stage name -> what changed; empty when everything is up to date."""
    return json.loads(run(["dvc", "status", "--json"], project, env).stdout or "{}")


def lock_outs(project: Path) -> dict[str, str]:
    """Every output path in ``dvc.lock`` -> the stage that wrote it."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return {out["path"]: name for name, stage in lock["stages"].items() for out in stage["outs"]}


def assert_same_tree(a: Path, b: Path) -> None:
    """``b`` holds exactly the files of ``a`` (a file or a folder), byte for byte."""
    assert b.exists(), f"{b} is missing"
    if a.is_file():
        assert filecmp.cmp(a, b, shallow=False), f"{b} differs from {a}"
        return
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b, f"{b}: other files than in {a}"
    for rel in files_a:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), f"{b / rel} differs from {a / rel}"


def stages_run(repro_output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", repro_output))


@pytest.mark.e2e
def test_push_clone_pull_and_partial_rerun(tmp_path):
    packages = make_fillets_packages(tmp_path / "pkgs", tiny_levels())
    work = tmp_path / "work"
    project = copy_checkout(work / "project")
    (project / "config.yaml").write_text(yaml.safe_dump(tiny_config(packages, UPSTREAMS)))
    env = tool_env(project / "src")

    run(["git", "init", "-q"], project, env)
    run(["dvc", "init", "-q"], project, env)
    # The repository's own DVC settings and ignore file, not the ones `dvc init` writes.
    shutil.copy2(REPO / ".dvc" / "config", project / ".dvc" / "config")
    shutil.copy2(REPO / ".dvcignore", project / ".dvcignore")
    assert run(["dvc", "remote", "default"], project, env).stdout.strip() == REMOTE
    run(["python", "scripts/write_dvc_yaml.py"], project, env)

    run(["dvc", "repro", "-q"], project, env)
    check_table(read_table(project / "results" / "wer_table.csv"), UPSTREAMS)
    # Running the stages (which import sslgrid and write __pycache__ into src/) leaves no stage
    # out of date.
    assert dvc_status(project, env) == {}, (
        "dvc status is not clean right after dvc repro (files the stages write into a dependency,"
        " such as __pycache__ in src/, must be in .dvcignore)"
    )

    run(["git", "add", "-A"], project, env)
    run(["git", "commit", "-q", "-m", "tiny grid reproduced"], project, env)
    run(["dvc", "push"], project, env)
    assert any((work / STORE).rglob("*")), f"dvc push wrote nothing to {work / STORE}"

    # A second checkout of the same commit beside the first shares the default remote.
    clone = work / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], work, env)
    clone_env = tool_env(clone / "src")
    run(["dvc", "pull"], clone, clone_env)
    outs = lock_outs(project)
    assert any(p.startswith("results/pretrain/") and p.endswith("model.pt") for p in outs)
    assert any(p.startswith("data/manifests/") for p in outs)
    for path in outs:
        assert_same_tree(project / path, clone / path)
    check_table(read_table(clone / "results" / "wer_table.csv"), UPSTREAMS)
    assert dvc_status(clone, clone_env) == {}, (
        "a fresh clone is not up to date after dvc pull (an output that is neither pushed to the"
        " remote nor committed to git, such as `cache: false` under an ignored results/?)"
    )

    # A pre-training parameter concerns the pre-trained cell and what is built on it only.
    config = yaml.safe_load((project / "config.yaml").read_text())
    config["pretrain"]["learning_rate"] *= 2
    (project / "config.yaml").write_text(yaml.safe_dump(config))
    changed = {f"pretrain@{PRETRAIN_CELL}"}
    assert set(dvc_status(project, env)) == changed
    stages = expand_stages(yaml.safe_load((project / "dvc.yaml").read_text()))
    allowed = downstream_of(stages, changed)
    finetuned = {n for n in allowed if stages[n].family == "finetune"}
    assert len(finetuned) == 1, f"the pre-trained model feeds one fine-tuning: {finetuned}"
    assert not any("fbank" in name for name in allowed)
    ran = stages_run(run(["dvc", "repro"], project, env).stdout)
    assert changed | finetuned <= ran
    assert ran <= allowed, f"stages that do not depend on the change ran: {sorted(ran - allowed)}"
    assert dvc_status(project, env) == {}
