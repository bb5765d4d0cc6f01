"""Helpers for the end-to-end tests that run the workflow in a throw-away copy or folder.

A project copy holds what a user's checkout holds for running the pipeline (code, Snakefile,
``.gitignore``, ``.dvcignore``, ``.dvc/config``) plus a tiny ``config.yaml``; commands run with
the repository's virtual environment first on PATH, as ``make`` runs them.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# The folders and files of a checkout that `dvc repro` and `snakemake` read.
PROJECT_TREES = ("scripts", "src", "workflow")
PROJECT_FILES = ("Snakefile", ".gitignore", ".dvcignore")


def tool_env(pythonpath: Path | None = None) -> dict[str, str]:
    """The environment of a user's shell with the venv activated.

    PYTHONDONTWRITEBYTECODE is dropped: a user's Python writes ``__pycache__`` folders into
    ``src/``, and DVC must not see them as changed dependencies.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    # Commits in throw-away repositories; never the user's identity or signing set-up.
    env.update(
        GIT_AUTHOR_NAME="sslgrid test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="sslgrid test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
    )
    return env


def copy_checkout(dest: Path) -> Path:
    """The pipeline's code and ignore files in ``dest`` (no data, no results, no git)."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in PROJECT_TREES:
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    for name in PROJECT_FILES:
        if (REPO / name).exists():
            shutil.copy2(REPO / name, dest / name)
    return dest


def run(
    args: list[str],
    cwd: Path,
    env: dict[str, str],
    ok: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Run a command; with ``ok``, fail the test with the end of its output unless it succeeds."""
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if ok:
        assert proc.returncode == 0, (
            f"{' '.join(map(str, args))} exited with {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def snakemake_args(workdir: Path, configfile: Path | None = None, cores: int = 2) -> list[str]:
    """``snakemake`` on the repository's Snakefile in ``workdir``; append flags and targets."""
    args = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile")]
    if configfile is not None:
        # Before another option: --configfile takes several values, targets included.
        args += ["--configfile", str(configfile)]
    return [*args, "--directory", str(workdir), "--cores", str(cores)]


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


ITEM_REF = re.compile(r"\$\{item\.(\w+)\}")


@dataclass
class Stage:
    """One stage of a ``dvc.yaml`` after ``foreach`` expansion."""

    family: str  # its name in dvc.yaml; instances of a foreach are ``family@key``
    deps: set[str] = field(default_factory=set)
    outs: set[str] = field(default_factory=set)  # outs, metrics and plots


def expand_stages(pipeline: dict) -> dict[str, Stage]:
    """The stages of a parsed ``dvc.yaml`` by DVC's name, ``${item.<key>}`` substituted."""

    def path_of(entry: str | dict) -> str:
        return entry if isinstance(entry, str) else next(iter(entry))

    stages = {}
    for family, spec in pipeline["stages"].items():
        body = spec.get("do", spec)
        items = spec.get("foreach", {None: {}})
        assert isinstance(items, dict), f"{family}: foreach must map keys to items"
        for key, item in items.items():

            def resolve(path: str, item: dict = item, name: str = f"{family}@{key}") -> str:
                path = ITEM_REF.sub(lambda m: str(item[m.group(1)]), path)
                assert "${" not in path, f"{name}: unresolved {path}"
                return path

            stage = Stage(family)
            stage.deps = {resolve(path_of(e)) for e in body.get("deps", [])}
            for section in ("outs", "metrics", "plots"):
                stage.outs |= {resolve(path_of(e)) for e in body.get(section, [])}
            stages[family if key is None else f"{family}@{key}"] = stage
    return stages


def downstream_of(stages: dict[str, Stage], start: set[str]) -> set[str]:
    """``start`` and every stage that depends, directly or not, on one of their outputs."""

    def feeds(out: str, dep: str) -> bool:
        return dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")

    found = set(start)
    grew = True
    while grew:
        outs = {o for name in found for o in stages[name].outs}
        more = {
            name
            for name, stage in stages.items()
            if name not in found and any(feeds(o, d) for o in outs for d in stage.deps)
        }
        found |= more
        grew = bool(more)
    return found
