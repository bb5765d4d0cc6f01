"""The tiny DAG through a real single-node SLURM cluster with profiles/slurm.

``scripts/slurm_test_cluster.sh`` installs Debian's ``slurm-wlm`` and ``munge`` when missing and
starts munged, slurmctld and slurmd on loopback under a temporary folder. The workflow then runs
with ``--profile profiles/slurm`` (GPU request off, short time limits) beside a local run of the
same configuration; every job must have gone through sbatch and both WER tables must be equal.
Skipped, with the reason, where the cluster cannot run (not root, no apt-get, packages not
installable, a real SLURM configuration in /etc/slurm).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from fillets_fixture import make_fillets_packages
from test_workflow import tiny_config, tiny_levels

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLUSTER = REPO / "scripts" / "slurm_test_cluster.sh"
CANNOT_RUN = 77  # the cluster script's "not on this machine"

# Time limits (minutes) the test asks the profile for, to check that they reach sbatch.
RUNTIME, TRAIN_RUNTIME = 10, 15
TRAINING_RULES = {"pretrain", "finetune"}

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """SLURM_CONF of a running test cluster; its daemons are stopped afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (slurmd, munged)")
    if shutil.which("sbatch") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and there is no apt-get to install slurm-wlm")
    folder = tmp_path_factory.mktemp("slurm")
    try:
        start = subprocess.run(
            ["bash", str(CLUSTER), "start", str(folder)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if start.returncode == CANNOT_RUN:
            pytest.skip(start.stderr.strip().splitlines()[-1])
        assert start.returncode == 0, start.stderr + _tail(folder / "log" / "slurmctld.log")
        yield folder / "etc" / "slurm.conf"
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop", str(folder)], timeout=120)


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return f"\n--- {path}:\n" + "\n".join(path.read_text().splitlines()[-lines:])


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _job_completions(path: Path) -> dict[str, dict[str, str]]:
    """SLURM's job-completion log (jobcomp/filetxt): job id -> its KEY=VALUE fields."""
    jobs = {}
    for line in path.read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        jobs[fields["JobId"]] = fields
    return jobs


def _submitted_jobs(slurm_logs: Path) -> dict[str, str]:
    """SLURM job id -> rule, from the plugin's ``<logdir>/rule_<rule>/<wildcards>/<id>.log``."""
    return {
        log.stem: log.relative_to(slurm_logs).parts[0].removeprefix("rule_")
        for log in slurm_logs.rglob("*.log")
    }


def _planned_jobs(output: str) -> dict[str, int]:
    """Rule -> number of jobs, from the "Job stats" table Snakemake prints before it starts."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def _snakemake(workdir: Path, *args: str) -> list[str]:
    return [
        str(BIN / "snakemake"),
        "results/wer_table.csv",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "tiny.yaml"),
        *args,
    ]


def test_the_dag_runs_through_slurm_and_matches_a_local_run(slurm_cluster, tmp_path):
    packages = make_fillets_packages(tmp_path / "pkgs", tiny_levels())
    local, on_slurm = tmp_path / "local", tmp_path / "slurm"
    for workdir in [local, on_slurm]:
        workdir.mkdir()
        # One model of each input kind and both decoders: every rule, fewer jobs to submit.
        config = tiny_config(packages, ["fbank", "apc", "cpc"])
        (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    for var in ["ACCOUNT", "PARTITION", "GPU_PARTITION"]:
        env.pop(f"SSLGRID_SLURM_{var}", None)
    slurm_env = {
        **env,
        "SLURM_CONF": str(slurm_cluster),
        "SSLGRID_SLURM_GPUS": "0",  # the test cluster has no GPU
        "SSLGRID_SLURM_RUNTIME": str(RUNTIME),
        "SSLGRID_SLURM_TRAIN_RUNTIME": str(TRAIN_RUNTIME),
        "SSLGRID_SLURM_MEM_MB": "1000",
        "SSLGRID_SLURM_TRAIN_MEM_MB": "2000",
    }
    started = time.monotonic()
    # Both at once: the local run needs no cluster, and the machine may have few cores.
    local_run = subprocess.Popen(
        _snakemake(local, "--cores", "2"),
        cwd=local,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # No slurmdbd here, so sacct cannot answer: job states come from squeue (MinJobAge=600).
    slurm_run = subprocess.run(
        _snakemake(on_slurm, "--profile", str(REPO / "profiles" / "slurm"))
        + ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2"],
        cwd=on_slurm,
        env=slurm_env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    local_output = local_run.communicate(timeout=1800)[0]
    print(f"SLURM and local runs side by side: {time.monotonic() - started:.0f} s")
    assert local_run.returncode == 0, local_output[-4000:]
    cluster_logs = slurm_cluster.parents[1] / "log"
    assert slurm_run.returncode == 0, (
        slurm_run.stderr[-6000:]
        + _tail(cluster_logs / "slurmctld.log")
        + _tail(cluster_logs / "slurmd.log")
    )

    # Every job of the DAG was an sbatch job, and SLURM ran each to completion.
    submitted = _submitted_jobs(on_slurm / "logs" / "slurm")
    completed = _job_completions(cluster_logs / "jobcomp.txt")
    planned = _planned_jobs(slurm_run.stderr)
    assert TRAINING_RULES <= set(planned) and "wer_table" in planned, planned
    assert Counter(submitted.values()) == planned
    assert set(submitted) <= set(completed), (submitted, completed)
    for job_id, rule in submitted.items():
        job = completed[job_id]
        assert job["JobState"] == "COMPLETED", job
        assert job["WorkDir"] == str(on_slurm)
        # The profile's time limits reached sbatch, and no GPU was asked for.
        limit = TRAIN_RUNTIME if rule in TRAINING_RULES else RUNTIME
        assert job["TimeLimit"] == str(limit), (rule, job)
        assert "gpu" not in job["Tres"], (rule, job)

    # The same numbers as the local run: training is deterministic on CPU with a fixed seed.
    local_table = _read_csv(local / "results" / "wer_table.csv")
    slurm_table = _read_csv(on_slurm / "results" / "wer_table.csv")
    assert slurm_table == local_table, f"SLURM run:\n{slurm_table}\nlocal run:\n{local_table}"
