"""Faults: a full disk while writing features or checkpoints, a process killed mid-write,
and NaN/inf losses and gradients, which must never reach a checkpoint."""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording, SupervisionSegment
from tests_paths import REPO

from sslgrid.corpora.manifests import cut_for_supervision
from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import FeatureCache, load_cache, save_cache
from sslgrid.train import checkpoint, loop
from sslgrid.train.checkpoint import (
    atomic_save,
    epoch_checkpoints,
    load_newest_checkpoint,
    save_epoch_checkpoint,
)
from sslgrid.train.loop import new_train_state, optimise, run_epochs

# --------------------------------------------------------------------------------------------
# A full disk


class FullDisk:
    """A file with room for ``room`` more bytes, after which writing fails as on a full disk."""

    def __init__(self, fh, room: int) -> None:
        self.fh, self.room = fh, room

    def write(self, data) -> int:
        if len(data) > self.room:
            self.fh.write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.fh.close()


def fill_disk(monkeypatch, room: int = 256, after: int = 0) -> None:
    """Files opened by ``atomic_save`` after the first ``after`` ones hit a full disk."""
    real_fdopen = os.fdopen
    calls = {"n": 0}

    def fdopen(fd, *args, **kwargs):
        fh = real_fdopen(fd, *args, **kwargs)
        calls["n"] += 1
        return fh if calls["n"] <= after else FullDisk(fh, room)

    monkeypatch.setattr(checkpoint.os, "fdopen", fdopen)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_full_disk_in_atomic_save_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    fill_disk(monkeypatch)
    target = tmp_path / "model.pt"
    with pytest.raises(OSError, match=r"No space left on device while writing .*model\.pt") as err:
        atomic_save({"w": torch.randn(10_000)}, target)
    assert err.value.errno == errno.ENOSPC
    assert leftovers(tmp_path) == []


def test_full_disk_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    atomic_save({"w": torch.ones(3)}, target)
    fill_disk(monkeypatch)
    with pytest.raises(OSError, match="No space left on device"):
        atomic_save({"w": torch.zeros(10_000)}, target)
    assert leftovers(tmp_path) == ["model.pt"]
    assert torch.equal(torch.load(target)["w"], torch.ones(3))


def test_full_disk_at_fsync(tmp_path, monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    with pytest.raises(OSError, match=r"No space left on device while writing .*x\.pt"):
        atomic_save({"w": torch.ones(3)}, tmp_path / "x.pt")
    assert leftovers(tmp_path) == []


def test_full_disk_while_saving_a_feature_cache(tmp_path, monkeypatch):
    cache = FeatureCache(["a"], [torch.randn(500, 80).half()], FbankConfig())
    fill_disk(monkeypatch)
    with pytest.raises(OSError, match=r"No space left on device while writing .*fbank_train\.pt"):
        save_cache(cache, tmp_path / "fbank_train.pt")
    assert leftovers(tmp_path) == []


def test_features_stage_on_a_full_disk_then_rerun(tmp_path, monkeypatch):
    """The stage fails naming the file; what it wrote before is complete; a rerun finishes."""
    manifests, out = tmp_path / "manifests", tmp_path / "features"
    manifests.mkdir()
    for split in ("train", "dev", "test"):
        path = tmp_path / f"{split}.flac"
        t = np.arange(8000) / 16000
        sf.write(path, (0.3 * np.sin(2 * np.pi * 300 * t)).astype("float32"), 16000)
        rec = Recording.from_file(path, recording_id=split)
        sup = SupervisionSegment(split, split, 0, rec.duration, text="een")
        CutSet.from_cuts([cut_for_supervision(rec, sup)]).to_file(
            manifests / f"cuts_{split}.jsonl.gz"
        )
    spec = importlib.util.spec_from_file_location("cf", REPO / "scripts/compute_features.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = ["compute_features.py", "--manifest-dir", str(manifests), "--out-dir", str(out)]
    argv += ["--config", str(REPO / "config.yaml")]
    handlers = logging.getLogger().handlers[:]
    try:
        with monkeypatch.context() as patch:
            patch.setattr(sys, "argv", argv)
            fill_disk(patch, after=2)  # fbank_train.pt and cmvn.pt fit; fbank_dev.pt does not
            with pytest.raises(OSError, match=r"No space left .* writing .*fbank_dev\.pt"):
                script.main()
        assert leftovers(out) == ["cmvn.pt", "fbank_train.pt"]
        assert load_cache(out / "fbank_train.pt").ids == ["train"]
        monkeypatch.setattr(sys, "argv", argv)
        script.main()
    finally:
        logging.getLogger().handlers[:] = handlers
    assert leftovers(out) == ["cmvn.pt", "fbank_dev.pt", "fbank_test.pt", "fbank_train.pt"]


# --------------------------------------------------------------------------------------------
# Training: checkpoints and non-finite numbers

X = torch.linspace(-1, 1, 32).reshape(8, 4)
Y = X.sum(1, keepdim=True)


def training(tmp_path, epochs=3, nonfinite="stop", poison=None, batched=False):
    """Linear regression over 4 batches an epoch; ``poison(epoch, batch, loss, model)``.

    ``batched``: updates through ``optimise_batch`` (what the training loops call) instead of
    ``optimise``.
    """
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    state = new_train_state(model, {"run": "faults"}, 4, epochs, 0.05, nonfinite=nonfinite)

    def train_epoch(epoch):
        total = 0.0
        for batch in range(state.batches_done, 4):

            def loss_of(items, batch=batch):
                loss = torch.nn.functional.mse_loss(model(X[items]), Y[items])
                return loss if poison is None else poison(epoch, batch, loss, model)

            items = [2 * batch, 2 * batch + 1]
            if batched:
                loss = loop.optimise_batch(state, items, loss_of, len)
            else:
                loss = loss_of(items)
                optimise(state, loss)
                loss = loss.item()
            total += loss if np.isfinite(loss) else 0.0
        return {"train_loss": total / 4}

    return model, state, lambda: run_epochs(state, epochs, tmp_path / "ckpt", train_epoch)


def nan_loss_at(epoch, batch):
    def poison(e, b, loss, model):
        return loss * float("nan") if (e, b) == (epoch, batch) else loss

    return poison


def assert_checkpoints_finite(folder):
    found = epoch_checkpoints(folder)
    assert found
    for _, path in found:
        for name, value in torch.load(path, weights_only=False)["model"].items():
            assert torch.isfinite(value).all(), f"{path}: {name} is not finite"


def test_full_disk_at_a_checkpoint_then_resume(tmp_path, monkeypatch):
    *_, run = training(tmp_path)
    with monkeypatch.context() as patch:
        fill_disk(patch, after=1)  # epoch 1's checkpoint fits, epoch 2's does not
        with pytest.raises(OSError, match=r"No space left on device while writing .*epoch-2\.pt"):
            run()
    assert leftovers(tmp_path / "ckpt") == ["epoch-1.pt"]
    model, state, run = training(tmp_path)
    run()
    assert [h["epoch"] for h in state.history] == [1, 2, 3]
    straight, _, run = training(tmp_path / "straight")
    run()
    torch.testing.assert_close(model.state_dict(), straight.state_dict())


def test_a_process_killed_while_writing_a_checkpoint(tmp_path):
    code = f"""
import os, signal, torch
from sslgrid.train.checkpoint import save_epoch_checkpoint
save_epoch_checkpoint({str(tmp_path)!r}, 1, {{"epoch": 1, "model": {{"w": torch.ones(3)}}}})
os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
save_epoch_checkpoint({str(tmp_path)!r}, 2, {{"epoch": 2, "model": {{"w": torch.ones(3)}}}})
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    names = leftovers(tmp_path)
    assert names[0].startswith(".epoch-2.pt.") and names[0].endswith(".tmp")
    assert names[1:] == ["epoch-1.pt"]
    assert load_newest_checkpoint(tmp_path)["epoch"] == 1
    save_epoch_checkpoint(tmp_path, 2, {"epoch": 2, "model": {"w": torch.ones(3)}})
    assert leftovers(tmp_path) == ["epoch-1.pt", "epoch-2.pt"]  # the stale temp file is gone


def test_nan_loss_stops_training_and_never_reaches_a_checkpoint(tmp_path):
    *_, run = training(tmp_path, poison=nan_loss_at(epoch=1, batch=2))
    with pytest.raises(
        FloatingPointError,
        match=r"non-finite training loss \(nan\) at step 6 \(epoch 2, batch 3\); training "
        r"stopped before the update",
    ):
        run()
    assert [e for e, _ in epoch_checkpoints(tmp_path / "ckpt")] == [1]
    assert_checkpoints_finite(tmp_path / "ckpt")
    # Once the cause is fixed, the rerun resumes from the last good checkpoint.
    _, state, run = training(tmp_path)
    run()
    assert [h["epoch"] for h in state.history] == [1, 2, 3]


@pytest.mark.parametrize("batched", [False, True], ids=["optimise", "optimise_batch"])
def test_nan_loss_skipped_by_option_is_counted(tmp_path, batched):
    model, state, run = training(
        tmp_path, nonfinite="skip", poison=nan_loss_at(1, 2), batched=batched
    )
    run()
    assert [h["nonfinite_skipped"] for h in state.history] == [0, 1, 0]
    assert state.step == 3 * 4 - 1
    assert_checkpoints_finite(tmp_path / "ckpt")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_non_finite_gradients_are_caught_too(tmp_path):
    def poison(epoch, batch, loss, model):
        if (epoch, batch) != (0, 1):
            return loss
        # Finite (zero) loss whose gradient is not: d sqrt(x) / dx at 0.
        return loss + torch.sqrt((model.weight - model.weight.detach()).abs()).sum()

    *_, run = training(tmp_path, poison=poison)
    with pytest.raises(FloatingPointError, match=r"non-finite gradient norm \(nan\) at step 1"):
        run()
    assert epoch_checkpoints(tmp_path / "ckpt") == []
    model, state, run = training(tmp_path / "skip", nonfinite="skip", poison=poison)
    run()
    assert state.history[0]["nonfinite_skipped"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path):
    save_epoch_checkpoint(tmp_path, 1, {"epoch": 1, "model": {"w": torch.ones(2)}})
    bad = {"epoch": 2, "model": {"w": torch.tensor([1.0, float("nan")]), "n": torch.tensor(3)}}
    with pytest.raises(FloatingPointError, match=r"not writing .*epoch-2\.pt: non-finite .*'w'"):
        save_epoch_checkpoint(tmp_path, 2, bad)
    assert leftovers(tmp_path) == ["epoch-1.pt"]


def test_nonfinite_option_is_checked():
    with pytest.raises(ValueError, match=r"nonfinite: 'ignore'; expected 'stop' or 'skip'"):
        new_train_state(torch.nn.Linear(1, 1), {}, 1, 1, 0.1, nonfinite="ignore")
