"""Checkpoints, resuming, batching and nested subsets."""

import os
import subprocess
import sys

import pytest
import torch

from sslgrid.corpora.subsets import (
    SubsetError,
    amount_label,
    nested_subset_by_hours,
    parse_amount,
)
from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import FeatureCache
from sslgrid.models.apc import APC, APCConfig
from sslgrid.models.factory import load_upstream, upstream_spec
from sslgrid.train.batching import duration_batches
from sslgrid.train.checkpoint import (
    atomic_save,
    epoch_checkpoints,
    input_fingerprints,
    load_newest_checkpoint,
    save_epoch_checkpoint,
)
from sslgrid.train.pretrain import pretrain_upstream

FBANK = FbankConfig()


def tiny_cache(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(40 + 7 * i, 80, generator=g).half() for i in range(n)]
    return FeatureCache([f"u{i}" for i in range(n)], feats, FBANK)


def run_pretrain(out, epochs, seed=3):
    torch.manual_seed(0)
    model = APC(APCConfig(num_layers=1, hidden_size=16), FBANK)
    config = {"upstream": upstream_spec("apc", {"num_layers": 1, "hidden_size": 16}, FBANK)}
    state = pretrain_upstream(
        model,
        tiny_cache(),
        config,
        out,
        epochs=epochs,
        batch_frames=200,
        learning_rate=1e-3,
        seed=seed,
        progress=False,
    )
    return model, state


def test_pretrain_writes_a_loadable_upstream(tmp_path):
    out = tmp_path / "apc" / "model.pt"
    model, state = run_pretrain(out, epochs=2)
    assert len(state.history) == 2
    assert (tmp_path / "apc" / "history.tsv").read_text().startswith("epoch\ttrain_loss")
    restored = load_upstream(out)
    for a, b in zip(model.state_dict().values(), restored.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    ckpt = torch.load(out, weights_only=False)
    assert {"model", "config", "optimizer", "scheduler", "step", "rng"} <= set(ckpt)


def test_killed_pretraining_process_resumes(tmp_path):
    """A process killed after its first checkpoint is resumed by the next run."""
    out = tmp_path / "model.pt"
    code = f"""
import os, signal, sys, torch
sys.path.insert(0, {str(__file__.rsplit("/", 1)[0])!r})
import test_training as t
import sslgrid.train.loop as loop
original = loop.save_epoch_checkpoint
def save_then_die(*a, **k):
    original(*a, **k)
    os.kill(os.getpid(), signal.SIGKILL)
loop.save_epoch_checkpoint = save_then_die
t.run_pretrain(__import__('pathlib').Path({str(out)!r}), epochs=3)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9
    assert not out.exists()
    assert [e for e, _ in epoch_checkpoints(tmp_path / "checkpoints")] == [1]
    resumed, state = run_pretrain(out, epochs=3)
    assert out.exists()
    assert [h["epoch"] for h in state.history] == [1, 2, 3]
    # The resumed run ends with the same weights as one that was never interrupted.
    straight, _ = run_pretrain(tmp_path / "straight" / "model.pt", epochs=3)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_checkpoints_of_a_different_configuration_are_set_aside_not_mixed(tmp_path, caplog):
    run_pretrain(tmp_path / "model.pt", epochs=1)
    caplog.set_level("INFO")
    model = APC(APCConfig(num_layers=1, hidden_size=16), FBANK)
    config = {
        "upstream": upstream_spec("apc", {"num_layers": 1, "hidden_size": 16}, FBANK),
        "changed": True,
    }
    state = pretrain_upstream(
        model,
        tiny_cache(),
        config,
        tmp_path / "model.pt",
        epochs=2,
        batch_frames=200,
        learning_rate=1e-3,
        seed=3,
        progress=False,
    )
    # Started over: both epochs trained under the new configuration.
    assert [h["epoch"] for h in state.history] == [1, 2]
    assert [e for e, _ in epoch_checkpoints(tmp_path / "checkpoints.stale-1")] == [1]
    assert torch.load(tmp_path / "model.pt", weights_only=False)["config"] == config
    # The log says what happened: set aside, not resumed.
    assert "different configuration" in caplog.text and "resuming" not in caplog.text


def test_input_fingerprints_change_when_an_input_is_rewritten(tmp_path):
    model, caches = tmp_path / "model.pt", tmp_path / "llm"
    model.write_bytes(b"weights")
    caches.mkdir()
    (caches / "a.bin").write_bytes(b"a")
    (caches / "sub").mkdir()
    (caches / "sub" / "b.bin").write_bytes(b"bb")
    before = input_fingerprints(model, caches, None)
    assert set(before) == {str(model), str(caches / "a.bin"), str(caches / "sub" / "b.bin")}
    assert input_fingerprints(model, caches) == before  # nothing rewritten: resumable
    # The same size and bytes, written again (a re-trained upstream of the same shape).
    model.write_bytes(b"weights")
    os.utime(model, ns=(1, 1))
    after = input_fingerprints(model, caches)
    assert after[str(model)] != before[str(model)]
    assert {k: v for k, v in after.items() if k != str(model)} == {
        k: v for k, v in before.items() if k != str(model)
    }


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path):
    save_epoch_checkpoint(tmp_path, 1, {"epoch": 1, "x": torch.ones(3)})
    save_epoch_checkpoint(tmp_path, 2, {"epoch": 2, "x": torch.ones(3)})
    newest = tmp_path / "epoch-2.pt"
    newest.write_bytes(newest.read_bytes()[:20])
    assert load_newest_checkpoint(tmp_path)["epoch"] == 1


def test_epoch_checkpoints_keep_only_the_newest(tmp_path):
    for epoch in range(1, 5):
        save_epoch_checkpoint(tmp_path, epoch, {"epoch": epoch}, keep=2)
    assert [e for e, _ in epoch_checkpoints(tmp_path)] == [3, 4]


def test_atomic_save_leaves_no_partial_file(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save({"bad": Unpicklable()}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


def test_duration_batches_respect_the_budget_and_cover_everything():
    lengths = [5, 80, 30, 30, 12, 7, 64, 100, 3]
    batches = duration_batches(lengths, max_total=100, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert max(lengths[i] for i in b) * len(b) <= 100 or len(b) == 1
    assert batches != duration_batches(lengths, max_total=100, seed=2) or len(batches) < 3


def test_nested_subsets_are_nested_and_hit_their_hours():
    ids = [f"u{i}" for i in range(400)]
    durations = [2.0 + (i % 7) for i in range(400)]
    small = nested_subset_by_hours(ids, durations, 0.25, seed=5)
    large = nested_subset_by_hours(ids, durations, 0.5, seed=5)
    assert set(small) <= set(large)
    got = sum(durations[int(i[1:])] for i in small)
    assert 0.25 * 3600 <= got < 0.25 * 3600 + max(durations)
    assert nested_subset_by_hours(ids, durations, "all", seed=5) == ids
    with pytest.raises(SubsetError, match="more audio than the pool"):
        nested_subset_by_hours(ids, durations, 10, seed=5)


def test_amount_labels_round_trip():
    assert amount_label("all") == "all" and parse_amount("all") == "all"
    assert amount_label(0.5) == "0.5h" and parse_amount("0.5h") == 0.5
    with pytest.raises(ValueError, match="pre-training amount 'half': expected 'all' or pos"):
        parse_amount("half")
    for bad in ("0.5", "halfh", "0h", "-1h"):
        with pytest.raises(ValueError, match=f"labelled amount '{bad}'"):
            parse_amount(bad, "labelled amount")
