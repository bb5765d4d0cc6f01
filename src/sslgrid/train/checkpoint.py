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
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    """Write ``epoch-<n>.pt`` and delete all but the newest ``keep`` epoch checkpoints."""
    path = Path(folder) / f"epoch-{epoch}.pt"
    atomic_save(state, path)
    for _, old in epoch_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_newest_checkpoint(folder: str | Path) -> dict[str, Any] | None:
    """The newest readable epoch checkpoint in ``folder``, or None when there is none."""
    for _, path in reversed(epoch_checkpoints(folder)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # a truncated or corrupt file: fall back to an older one
            log.warning("checkpoint %s is unreadable (%s); trying an older one", path, err)
            continue
        log.info("resuming from %s (epoch %d)", path, state["epoch"])
        return state
    return None
