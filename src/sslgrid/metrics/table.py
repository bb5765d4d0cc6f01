"""The results table: score files collected into one long-format CSV and a Markdown report.

The Markdown file carries the environment it was made in (date, git commit, package versions,
hardware) above the table, so that a number always says where it came from.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sslgrid.metrics.compare import BASELINE_MODEL, UPSTREAM_COORDS

# Grid coordinates in the order they are shown; coordinates not listed follow in the order
# they are first met.
COORDINATE_ORDER: tuple[str, ...] = (
    "model",
    "pool",
    "pool_language",
    "pool_domain",
    "amount",
    "pretrain_repeat",
    "finetune",
    "finetune_mode",
    "labelled",
    "repeat",
    "decoder",
    "corpus",
    "split",
)
METRIC_COLUMNS: tuple[str, ...] = (
    "n_utts",
    "n_words",
    "wer",
    "wer_low",
    "wer_high",
    "cer",
    "cer_low",
    "cer_high",
)
RATE_COLUMNS: tuple[str, ...] = ("wer", "wer_low", "wer_high", "cer", "cer_low", "cer_high")
# Paired bootstrap p-value that a cell's WER is below the fbank baseline's of the same setting
# (small: reliably better); empty for the baseline itself.
PVALUE_COLUMN = "p_vs_fbank"
VERSIONED_PACKAGES: tuple[str, ...] = (
    "torch",
    "torchaudio",
    "lhotse",
    "snakemake",
    "jiwer",
)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename.

    A reader (or a Snakemake rerun after a crash) never sees a half-written file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        # mkstemp makes the file private (0600); results should get the usual permissions.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _current_umask() -> int:
    """The process umask; reading it means setting it, so it is set straight back."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def coordinate_columns(coords: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every coordinate found, known ones in `COORDINATE_ORDER`, unknown ones after them."""
    found: dict[str, None] = {}
    for c in coords:
        found.update(dict.fromkeys(c))
    known = [name for name in COORDINATE_ORDER if name in found]
    return known + [name for name in found if name not in COORDINATE_ORDER]


class WerTable:
    """Score files (written by `scripts/score.py`) as one table, one row per score file.

    Rows keep the order the scores are given in. Rates are fractions in the score files and
    percentages rounded to two decimals in `frame()` and everything written from it.

    Args:
        scores: parsed score files, each with a `coords` mapping and the metric fields.
    """

    def __init__(self, scores: Sequence[Mapping[str, Any]]) -> None:
        missing = [
            (i, [k for k in ("coords", *METRIC_COLUMNS) if k not in s])
            for i, s in enumerate(scores)
        ]
        missing = [(i, keys) for i, keys in missing if keys]
        if missing:
            raise ValueError(f"score records lack fields (index, fields): {missing}")
        self.scores = list(scores)

    @classmethod
    def from_files(cls, paths: Iterable[str | Path]) -> WerTable:
        """Read score JSON files."""
        scores = []
        for path in paths:
            with open(path, encoding="utf-8") as f:
                scores.append(json.load(f))
        return cls(scores)

    def frame(self) -> pd.DataFrame:
        """The long-format table: coordinates, counts, then rates as rounded percentages."""
        coords = coordinate_columns(s["coords"] for s in self.scores)
        rows = []
        for s in self.scores:
            row: dict[str, Any] = {name: s["coords"].get(name) for name in coords}
            row.update({name: s[name] for name in METRIC_COLUMNS})
            rows.append(row)
        frame = pd.DataFrame(rows, columns=[*coords, *METRIC_COLUMNS])
        frame[list(RATE_COLUMNS)] = (frame[list(RATE_COLUMNS)].astype(float) * 100).round(2)
        if any(s.get(PVALUE_COLUMN) is not None for s in self.scores):
            frame[PVALUE_COLUMN] = [s.get(PVALUE_COLUMN) for s in self.scores]
        return frame

    def to_csv(self, path: str | Path) -> None:
        """Write the table as CSV."""
        write_text_atomic(path, self.frame().to_csv(index=False))

    def to_markdown(self, path: str | Path, environment: Sequence[str] | None = None) -> None:
        """Write the environment header, then the table with rates as "23.41 [21.02, 25.90]".

        Args:
            path: output file.
            environment: header lines; `describe_environment()` when not given.
        """
        lines = describe_environment() if environment is None else list(environment)
        text = "\n".join(
            [
                "# WER table",
                "",
                *(f"- {line}" for line in lines),
                "",
                "WER and CER in %, with a 95% percentile bootstrap interval over utterances.",
                "`p vs fbank`: paired bootstrap p-value that the cell's WER is below the",
                "fbank baseline's with the same fine-tuning, decoder and test set",
                "(small: reliably better).",
                "",
                markdown_table(self.display_frame()),
                *self._repeats_section(),
            ]
        )
        write_text_atomic(path, text + "\n")

    def _repeats_section(self) -> list[str]:
        summary = repeat_summary(self.frame())
        if summary.empty:
            return []
        return [
            "",
            "## Repeats",
            "",
            "Cells run more than once: `over` fine-tuning (`finetune.repeats`: same labels and",
            "upstream, another training seed) or pre-training (`pretrain.repeats`: same audio,",
            "another pre-training seed, each upstream fine-tuned once). Mean, standard",
            "deviation, minimum and maximum over the repeats, in %; `vs fbank`: the mean minus",
            "fbank's in the same setting.",
            "",
            markdown_table(summary),
        ]

    def display_frame(self) -> pd.DataFrame:
        """The table as shown in Markdown: each rate merged with its interval."""
        frame = self.frame()
        coords = [c for c in frame.columns if c not in (*METRIC_COLUMNS, PVALUE_COLUMN)]
        shown = frame[[*coords, "n_utts", "n_words"]].copy()
        shown["WER"] = [format_interval(*r) for r in frame[["wer", "wer_low", "wer_high"]].values]
        shown["CER"] = [format_interval(*r) for r in frame[["cer", "cer_low", "cer_high"]].values]
        if PVALUE_COLUMN in frame:
            shown["p vs fbank"] = [
                "" if p is None or pd.isna(p) else f"{p:.3f}" for p in frame[PVALUE_COLUMN]
            ]
        return shown


# Per kind of repeat: its repeat-number column, and the columns that vary between the repeats
# of a cell. Fine-tuning repeats (``finetune.repeats``) have their own label and number;
# pre-training repeats (``pretrain.repeats``) their own number (and fine-tuning repeat 0).
REPEAT_COORDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fine-tuning": ("repeat", ("finetune", "repeat")),
    "pre-training": ("pretrain_repeat", ("pretrain_repeat", "repeat")),
}
REPEAT_RATES: tuple[str, ...] = ("wer", "cer")
# Columns that name the upstream (its coordinates, its pre-training repeat and its pool's
# description); the baseline of a cell agrees with it on all others.
UPSTREAM_COLUMNS: tuple[str, ...] = (
    *UPSTREAM_COORDS,
    "pretrain_repeat",
    "pool_language",
    "pool_domain",
)


def write_repeat_summary(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Write :func:`repeat_summary` of ``frame`` as CSV (a header line only without repeats);
    returns it."""
    summary = repeat_summary(frame)
    if summary.empty:
        summary = pd.DataFrame(columns=["over", "model", "repeats"])
    write_text_atomic(path, summary.to_csv(index=False))
    return summary


def _first(frame: pd.DataFrame, column: str) -> pd.Series:
    """Rows whose ``column`` (a repeat number) is 0 or missing; all rows without the column."""
    if column not in frame.columns:
        return pd.Series(True, index=frame.index)
    return frame[column].fillna(0).astype(int) == 0


def first_finetunings(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of each upstream's first fine-tuning (pre-training repeats kept)."""
    return frame[_first(frame, "repeat")]


def first_repeats(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of each cell's first pre-training and first fine-tuning (all rows of a table
    without repeats)."""
    return frame[_first(frame, "repeat") & _first(frame, "pretrain_repeat")]


def repeat_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per cell run more than once: how many repeats, and the mean, standard deviation (n - 1),
    minimum and maximum of WER and CER over them (in %, as in ``frame``).

    Two kinds of spread, told apart by the ``over`` column: ``fine-tuning`` (the cell is every
    coordinate but the fine-tuning label and repeat number: one upstream, several fine-tuning
    seeds) and ``pre-training`` (every coordinate but the pre-training repeat, first
    fine-tunings only: several upstreams pre-trained with their own seeds). Cells run once are
    left out. ``<rate>_vs_fbank`` is the mean's difference from the fbank cell's with the same
    setting (its mean over its repeats, or its one run; negative: better).
    """
    parts = []
    for over, (number, columns) in REPEAT_COORDS.items():
        if number not in frame.columns:
            continue
        # Pre-training spread: first fine-tunings only, so the two kinds do not mix.
        rows = frame if over == "fine-tuning" else frame[_first(frame, "repeat")]
        part = _spread(rows, columns)
        if not part.empty:
            parts.append(part.assign(over=over))
    if not parts:
        return pd.DataFrame()
    summary = pd.concat(parts, ignore_index=True)
    # Coordinates in the table's order (a kind's varying ones are empty in its rows).
    coords = [c for c in frame.columns if c in summary.columns]
    return summary[["over", *coords, *(c for c in summary.columns if c not in coords + ["over"])]]


def _spread(frame: pd.DataFrame, repeat_columns: tuple[str, ...]) -> pd.DataFrame:
    """:func:`repeat_summary` of one kind: groups over every coordinate but ``repeat_columns``."""
    ignored = (*METRIC_COLUMNS, PVALUE_COLUMN, *repeat_columns)
    coords = [c for c in frame.columns if c not in ignored]
    rates = [r for r in REPEAT_RATES if r in frame.columns]
    groups = frame.groupby(coords, dropna=False, sort=False)
    stats = groups[rates].agg(["count", "mean", "std", "min", "max"])
    out = pd.DataFrame(index=stats.index)
    out["repeats"] = stats[(rates[0], "count")].astype(int)
    for rate in rates:
        for stat in ("mean", "std", "min", "max"):
            out[f"{rate}_{'sd' if stat == 'std' else stat}"] = stats[(rate, stat)].round(2)
    out = out.reset_index()
    # The baseline of a cell: the fbank cell whose every coordinate but the upstream's agrees.
    setting = [c for c in coords if c not in UPSTREAM_COLUMNS]
    keys = [tuple(row) for row in out[setting].itertuples(index=False)]
    is_base = (out["model"] == BASELINE_MODEL).tolist()
    for rate in rates:
        base = {k: m for k, m, b in zip(keys, out[f"{rate}_mean"], is_base, strict=True) if b}
        out[f"{rate}_vs_fbank"] = [
            round(m - base[k], 2) if k in base else float("nan")
            for k, m in zip(keys, out[f"{rate}_mean"], strict=True)
        ]
    return out[out["repeats"] > 1].reset_index(drop=True)


def format_interval(value: float, low: float, high: float) -> str:
    """Format a percentage with its interval, e.g. "23.41 [21.02, 25.90]"."""
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def _cell(value: Any) -> str:
    """Render one Markdown table cell; a pipe would end the cell, so it is escaped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame) -> str:
    """Render a DataFrame as a GitHub-flavoured Markdown table, numbers right-aligned."""
    header = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    aligns = ["---:" if pd.api.types.is_numeric_dtype(frame[c]) else "---" for c in frame.columns]
    rule = "|" + "|".join(aligns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *body])


def package_version(name: str) -> str:
    """Installed version of a distribution, or "not installed"."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def git_revision(repo: str | Path = ".") -> str:
    """The commit hash of `repo`, with " (dirty)" when tracked or untracked files changed."""
    try:
        commit = _git(repo, "rev-parse", "HEAD")
        status = _git(repo, "status", "--porcelain")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git work tree)"
    return f"{commit} (dirty)" if status else commit


def _git(repo: str | Path, *args: str) -> str:
    """Run a git command in `repo` and return its stripped output."""
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or what `platform` knows elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def gpu_name() -> str:
    """The name of CUDA device 0, or why there is none."""
    if importlib.util.find_spec("torch") is None:
        return "none (torch not installed)"
    import torch  # imported here: it takes seconds and the table needs it only for this

    if not torch.cuda.is_available():
        return "none (CUDA not available)"
    return torch.cuda.get_device_name(0)


def describe_environment(repo: str | Path = ".") -> list[str]:
    """Lines saying when, from which commit, with which packages and on what machine."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return [
        f"date: {now}",
        f"git commit: {git_revision(repo)}",
        f"python: {platform.python_version()}",
        *(f"{name}: {package_version(name)}" for name in VERSIONED_PACKAGES),
        f"CPU: {cpu_model()} × {os.cpu_count()}",
        f"GPU: {gpu_name()}",
    ]
