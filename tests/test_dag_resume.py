"""The tiny DAG killed with SIGKILL mid-training, then resumed; and runs are reproducible.

Snakemake runs the tiny grid (fbank and APC) in its own process group, which is killed whole
with SIGKILL as soon as APC's pre-training has written its first epoch checkpoint: no handler
runs, as after a node failure or an out-of-memory kill. What Snakemake 9 then needs:

1. ``snakemake --unlock <same arguments>``: the kill left ``.snakemake/locks`` behind, and every
   run refuses to start until it is removed (``LockException``).
2. ``snakemake --rerun-incomplete <same arguments>``: the jobs that were running are recorded
   as incomplete. Where such a job had already written outputs (a job that finished its work
   but was not yet registered), a plain run refuses with ``IncompleteFilesException``;
   ``--rerun-incomplete`` deletes those outputs and runs the jobs again.

The killed training job resumes from its newest epoch checkpoint (``checkpoints/`` is not a
declared output, so Snakemake leaves it alone) and ends with the same weights, and the same WER
table, as an uninterrupted run of the same configuration started beside it: two runs with the
same seed on CPU agree row for row.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from fillets_fixture import make_fillets_packages
from test_workflow import check_table, tiny_config, tiny_levels
from workflow_project import read_csv_rows, run, snakemake_args, tool_env

UPSTREAMS = ["fbank", "apc"]
# Enough epochs that the kill lands between the first checkpoint and the end of training.
PRETRAIN_EPOCHS = 40
TARGET = "results/wer_table.csv"
CELL = Path("results/pretrain/apc/fillets-nl/all")
FIRST_CHECKPOINT = CELL / "checkpoints" / "epoch-1.pt"
FINETUNED = Path("results/finetune/apc/fillets-nl/all/frozen-fillets-nl/model.pt")


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def kill_group_when(proc: subprocess.Popen, path: Path, log: Path, timeout: float = 420) -> None:
    """SIGKILL ``proc``'s whole process group as soon as ``path`` exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, (
            f"snakemake ended (status {proc.returncode}) before {path}:\n" + log.read_text()[-3000:]
        )
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while group_members(proc.pid):
        assert time.monotonic() < deadline, f"still alive: {group_members(proc.pid)}"
        time.sleep(0.1)


def listed_incomplete(refusal: str, workdir: Path) -> list[Path]:
    """The files of Snakemake's ``IncompleteFilesException`` message (none without it)."""
    if "IncompleteFilesException" not in refusal:
        return []
    listing = refusal.split("Incomplete files:", 1)[1].strip().split("\n\n", 1)[0]
    return [workdir / line.strip() for line in listing.splitlines() if line.strip()]


def model_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


@pytest.mark.e2e
def test_killed_dag_resumes_from_checkpoints_and_matches_an_uninterrupted_run(tmp_path):
    packages = make_fillets_packages(tmp_path / "pkgs", tiny_levels())
    config = tiny_config(packages, UPSTREAMS)
    config["pretrain"]["epochs"] = PRETRAIN_EPOCHS
    configfile = tmp_path / "tiny.yaml"
    configfile.write_text(yaml.safe_dump(config))
    env = tool_env()
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    killed.mkdir()
    reference.mkdir()

    def snakemake(workdir: Path, *extra: str, cores: int = 1) -> list[str]:
        return [*snakemake_args(workdir, configfile, cores), *extra, TARGET]

    # The uninterrupted run, beside the one that is killed.
    with open(tmp_path / "reference.log", "w") as reference_log:
        straight = subprocess.Popen(
            snakemake(reference),
            stdout=reference_log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        with open(tmp_path / "killed.log", "w") as killed_log:
            first = subprocess.Popen(
                snakemake(killed, cores=2),
                stdout=killed_log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, jobs included
            )
        kill_group_when(first, killed / FIRST_CHECKPOINT, tmp_path / "killed.log")
        # Killed mid-training: a checkpoint, but no model under its real name.
        assert not (killed / CELL / "model.pt").exists(), "training ended before the kill"

        # A plain rerun is refused: for outputs of jobs that were running (when any exist),
        # else for the lock the killed run left.
        refused = run(snakemake(killed), killed, env, ok=False)
        refusal = refused.stdout + refused.stderr
        assert refused.returncode != 0
        half_done = listed_incomplete(refusal, killed)
        assert half_done or "LockException" in refusal, refusal[-3000:]
        assert all(path.exists() for path in half_done)
        assert killed / CELL / "model.pt" not in half_done
        # --rerun-incomplete alone is not enough: the lock stays until --unlock.
        locked = run(snakemake(killed, "--rerun-incomplete"), killed, env, ok=False)
        assert locked.returncode != 0 and "LockException" in locked.stdout + locked.stderr
        run(snakemake(killed, "--unlock"), killed, env)
        restarted = time.time()
        run(snakemake(killed, "--rerun-incomplete", cores=2), killed, env)
        straight.wait(timeout=600)
    finally:
        if straight.poll() is None:  # the test failed: stop the reference run, jobs included
            os.killpg(straight.pid, signal.SIGKILL)
            straight.wait()
    assert straight.returncode == 0, (tmp_path / "reference.log").read_text()[-4000:]

    log = (killed / "logs" / CELL.relative_to("results")).with_suffix(".log").read_text()
    assert f"resuming from {CELL}/checkpoints/epoch-" in log
    # Outputs that were being written at the kill were written again, not taken as complete.
    for path in half_done:
        assert path.stat().st_mtime >= restarted, f"{path} was kept from the killed run"
    # Resumed training ends where uninterrupted training ends.
    for path in [CELL / "model.pt", FINETUNED]:
        resumed, straight_weights = model_weights(killed / path), model_weights(reference / path)
        assert resumed.keys() == straight_weights.keys()
        for name, value in resumed.items():
            assert torch.equal(value, straight_weights[name]), f"{path}: {name} differs"

    rows = read_csv_rows(killed / TARGET)
    check_table(rows, UPSTREAMS)
    # Same seed, same CPU: the same table (it has no time stamps; the .md report has).
    assert rows == read_csv_rows(reference / TARGET)
