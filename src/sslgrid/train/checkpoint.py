"""Atomic checkpoints that a rerun resumes from.

A checkpoint is one ``torch.save`` dict with ``model``, ``config``, ``optimizer``,
``scheduler``, ``step``, ``epoch`` and ``rng``. It is written to a temporary file in the same
folder and renamed into place, so a killed job never leaves a half-written checkpoint under a
real name; one that is unreadable anyway (a truncated copy, a full disk) is skipped in favour
of the previous one.
"""

from __future__ import annotations

import logging
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

CKPT_PATTERN = re.compile(r"^epoch-(\d+)\.pt$")


def input_fingerprints(*paths: str | Path | None) -> dict[str, str]:
    """Size and modification time (ns) of every file a training run reads, by path.

    They go into the run's configuration, which a checkpoint is resumed under only if it is
    unchanged: a rerun after an input was rewritten (a re-trained upstream, re-computed
    features) starts over instead of continuing a run on the old input. A folder stands for
    the files under it; None is skipped.
    """
    found: dict[str, str] = {}
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            stat = file.stat()
            found[str(file)] = f"{stat.st_size}:{stat.st_mtime_ns}"
    return found


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename into place.

    On any error the temporary file is removed, so nothing half-written is ever found under
    ``path``. A failed write (a full disk, a quota) raises ``OSError`` with its errno and a
    message naming ``path``, also when ``torch.save`` buried it in a ``RuntimeError``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        cause = _os_error_in(err)
        if cause is None:
            raise
        message = f"{cause.strerror or cause} while writing {path}; nothing was written there"
        raise (OSError(cause.errno, message) if cause.errno else OSError(message)) from err


def _os_error_in(err: BaseException) -> OSError | None:
    """The ``OSError`` behind ``err``: itself, or one in its chain of causes."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def epoch_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """Epoch checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = CKPT_PATTERN.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def save_epoch_checkpoint(
    folder: str | Path, epoch: int, state: dict[str, Any], keep: int = 2
) -> Path:
    """Write ``epoch-<n>.pt`` and delete all but the newest ``keep`` epoch checkpoints.

    A model with NaN or infinite weights is refused (``FloatingPointError``), so such a
    checkpoint never replaces a good one.
    """
    path = Path(folder) / f"epoch-{epoch}.pt"
    bad = _non_finite_weights(state.get("model"))
    if bad:
        raise FloatingPointError(
            f"not writing {path}: non-finite weights in {bad[:3]}; the checkpoints in {folder} "
            "are left as they were"
        )
    atomic_save(state, path)
    for _, old in epoch_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    # Temporary files of a run killed mid-write: one job writes a folder, so none is in use.
    for stale in Path(folder).glob(".epoch-*.pt.*.tmp"):
        stale.unlink(missing_ok=True)
    return path


def _non_finite_weights(weights: Any) -> list[str]:
    if not isinstance(weights, dict):
        return []
    return [
        name
        for name, value in weights.items()
        if torch.is_tensor(value)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]


def newest_checkpoint(folder: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable epoch checkpoint in ``folder`` and its path; None when none."""
    for _, path in reversed(epoch_checkpoints(folder)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # a truncated or corrupt file: fall back to an older one
            log.warning("checkpoint %s is unreadable (%s); trying an older one", path, err)
            continue
        return path, state
    return None


def load_newest_checkpoint(folder: str | Path) -> dict[str, Any] | None:
    """The newest readable epoch checkpoint in ``folder``, or None when there is none."""
    found = newest_checkpoint(folder)
    return None if found is None else found[1]
