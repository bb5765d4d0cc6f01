"""Stopping a training run cleanly when the scheduler asks, so that the next run resumes.

SLURM sends SIGTERM at the time limit and on preemption, and the signal of ``sbatch
--signal=<sig>@<seconds>`` some time before the limit (the SLURM profile uses SIGTERM; SIGUSR1
is the usual choice in hand-written batch scripts). Inside :class:`PreemptionGuard` such a signal
only sets a flag. The training loop calls :meth:`PreemptionGuard.stop_if_requested` after every
optimiser step; once the flag is set, it writes a checkpoint of the state reached so far and
raises :class:`Preempted`, which ends the process with exit status 75. The job fails, the
scheduler or Snakemake's ``retries`` runs it again, and training resumes from that checkpoint.

A mid-epoch checkpoint is an ordinary ``epoch-<n>.pt`` (``checkpoint.py``) with ``n`` the number
of finished epochs; its ``batches_done`` says how many batches of epoch ``n + 1`` it already
holds, and the resumed epoch skips them.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterable
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from sslgrid.train.checkpoint import save_epoch_checkpoint

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

# EX_TEMPFAIL of sysexits.h: a temporary failure, try again.
PREEMPTED_EXIT_STATUS = 75


class Preempted(SystemExit):
    """Training stopped on a signal after writing a checkpoint; a rerun resumes from it.

    A ``SystemExit``: an uncaught one ends the script with status 75 and no traceback, and no
    ``except Exception`` on the way up mistakes it for a failure to handle.
    """

    def __init__(self, signal_name: str, checkpoint: Path, epoch: int, batches_done: int):
        super().__init__(PREEMPTED_EXIT_STATUS)
        self.signal_name = signal_name
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.batches_done = batches_done

    def __str__(self) -> str:
        return (
            f"stopped on {self.signal_name} after {self.epoch} epochs and {self.batches_done} "
            f"batches of the next; checkpoint {self.checkpoint}"
        )


class Checkpointable(Protocol):
    """What the guard needs of a training state (``sslgrid.train.loop.TrainState``)."""

    epoch: int  # finished epochs
    batches_done: int  # batches of the current epoch already trained on

    def to_checkpoint(self) -> dict[str, Any]: ...


class PreemptionGuard:
    """Context manager: while active, stop signals set a flag instead of killing the process.

    The previous handlers come back on exit. Outside the main thread Python cannot install
    signal handlers; the guard then stays inactive (and says so) and signals act as before.
    """

    def __init__(self, ckpt_dir: str | Path, signals: Iterable[int] = STOP_SIGNALS):
        self.ckpt_dir = Path(ckpt_dir)
        self.signals = tuple(signals)
        self._received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is not threading.main_thread():
            log.warning("not in the main thread: stop signals will not be caught")
            return self
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag: the handler may run in the middle of anything, a checkpoint write included.
        if self._received is None:
            self._received = signal.Signals(signum).name

    @property
    def requested(self) -> str | None:
        """The name of the stop signal received, or None."""
        return self._received

    def request(self, reason: str) -> None:
        """Ask for a stop as a signal would (for tests and for callers with other triggers)."""
        if self._received is None:
            self._received = reason

    def stop_if_requested(self, state: Checkpointable, saved: bool = False) -> None:
        """When a stop was requested: checkpoint ``state`` (unless ``saved``), raise Preempted."""
        if self._received is None:
            return
        path = self.ckpt_dir / f"epoch-{state.epoch}.pt"
        if not saved:
            path = save_epoch_checkpoint(self.ckpt_dir, state.epoch, state.to_checkpoint())
        stop = Preempted(self._received, path, state.epoch, state.batches_done)
        log.warning("%s; exiting with status %d to be resumed", stop, PREEMPTED_EXIT_STATUS)
        raise stop
