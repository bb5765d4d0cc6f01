"""Training shared by processes (torchrun, gloo on CPU) or micro-batches equals one process.

The models have no randomness in their losses (APC and the recogniser without dropout), so
the same effective batch must give the same weights, up to the order of float sums. The
two-process half runs this file under ``scripts/launch_training.sh 2`` (``__main__`` below).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sslgrid.asr.downstream import DownstreamConfig
from sslgrid.asr.finetune import finetune_frozen
from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import FeatureCache
from sslgrid.models.apc import APC, APCConfig
from sslgrid.models.factory import build_upstream, upstream_spec
from sslgrid.train.distributed import World, rank_shares
from sslgrid.train.preemption import Preempted
from sslgrid.train.pretrain import pretrain_upstream

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "scripts" / "launch_training.sh"
FBANK = FbankConfig()
APC_ARGS = {"num_layers": 2, "hidden_size": 16, "dropout": 0.0}
WORDS = "de kat zit op het dak en een hond loopt in de tuin".split()
ATOL = 1e-5


def tiny_cache(n: int = 9, seed: int = 0) -> FeatureCache:
    """``n`` utterances; the last is long enough for a batch of its own, which leaves the
    second rank with nothing of it."""
    g = torch.Generator().manual_seed(seed)
    lengths = [40 + 7 * i for i in range(n - 1)] + [200]
    feats = [torch.randn(n, 80, generator=g).half() for n in lengths]
    return FeatureCache([f"u{i}" for i in range(n)], feats, FBANK)


def texts(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [
        " ".join(WORDS[int(j)] for j in torch.randint(len(WORDS), (3,), generator=g))
        for _ in range(n)
    ]


def pretrain(out: Path, grad_accum: int = 1, world: World | None = None, epochs: int = 2):
    torch.manual_seed(0)
    model = APC(APCConfig(**APC_ARGS), FBANK)
    config = {"upstream": upstream_spec("apc", APC_ARGS, FBANK)}
    return pretrain_upstream(
        model,
        tiny_cache(),
        config,
        out,
        epochs=epochs,
        batch_frames=250,
        learning_rate=3e-3,
        seed=3,
        progress=False,
        grad_accum=grad_accum,
        world=world,
    )


def finetune(out: Path, grad_accum: int = 1, world: World | None = None):
    upstream = build_upstream("fbank", {}, FBANK)
    return finetune_frozen(
        upstream,
        (tiny_cache(9, seed=1), texts(9, seed=1)),
        (tiny_cache(3, seed=2), texts(3, seed=2)),
        DownstreamConfig(num_layers=1, hidden_size=16, dropout=0.0, subsample=2),
        {"upstream": upstream_spec("fbank", {}, FBANK)},
        out,
        epochs=2,
        batch_seconds=2.5,
        learning_rate=3e-3,
        seed=5,
        progress=False,
        grad_accum=grad_accum,
        world=world,
    )


def saved(out: Path) -> tuple[dict[str, torch.Tensor], list[float]]:
    ckpt = torch.load(out, map_location="cpu", weights_only=False)
    return ckpt["model"], [h["train_loss"] for h in ckpt["history"]]


def assert_same_training(a: Path, b: Path) -> None:
    (weights_a, losses_a), (weights_b, losses_b) = saved(a), saved(b)
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name], atol=ATOL, rtol=0, msg=name)
    assert losses_a == pytest.approx(losses_b, abs=ATOL)


def test_shares_split_every_batch_and_sum_to_one():
    batch = [4, 0, 7, 2, 9, 5, 1]
    for size, accum in [(1, 1), (2, 1), (1, 3), (2, 2), (4, 2)]:
        shares = [rank_shares(batch, len, size, r, accum) for r in range(size)]
        items = [i for rank in shares for shard, share in rank if share > 0 for i in shard]
        assert sorted(items) == sorted(batch)
        assert sum(share for rank in shares for _, share in rank) == pytest.approx(1.0)
        assert all(len(rank) <= accum for rank in shares)
    # More ranks than utterances: the idle rank still computes (a zero share), as DDP needs.
    assert rank_shares([3], len, 2, 1) == [([3], 0.0)]
    with pytest.raises(ValueError, match="nothing to learn"):
        rank_shares([1, 2], lambda items: 0.0)


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict[str, Path]:
    """Pre-training and fine-tuning in one process, without gradient accumulation."""
    folder = tmp_path_factory.mktemp("single")
    pretrain(folder / "pt" / "model.pt")
    finetune(folder / "ft" / "model.pt")
    return {"pt": folder / "pt" / "model.pt", "ft": folder / "ft" / "model.pt"}


def test_gradient_accumulation_equals_one_batch(tmp_path, single):
    pretrain(tmp_path / "pt" / "model.pt", grad_accum=2)
    assert_same_training(single["pt"], tmp_path / "pt" / "model.pt")
    finetune(tmp_path / "ft" / "model.pt", grad_accum=3)
    assert_same_training(single["ft"], tmp_path / "ft" / "model.pt")


def test_two_processes_equal_one(tmp_path, single):
    """torchrun with two gloo processes, through the launcher the rules call."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        # --log as the stage scripts have it, which torchrun must leave to the script.
        [str(LAUNCHER), "2", sys.executable, __file__, "--out", str(tmp_path), "--log", "x.log"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert_same_training(single["pt"], tmp_path / "pt" / "model.pt")
    assert_same_training(single["pt"], tmp_path / "pt-accum" / "model.pt")
    assert_same_training(single["ft"], tmp_path / "ft" / "model.pt")
    # A stop signal to rank 1 alone: both ranks stop after the same step, rank 0 checkpoints,
    # and the resumed run ends with the weights of the uninterrupted one.
    stops = [json.loads((tmp_path / f"stop-{r}.json").read_text()) for r in (0, 1)]
    assert stops[0] == stops[1] == {"epoch": 0, "batches_done": 2}
    stopped, _ = saved(tmp_path / "pt-stopped" / "model.pt")
    for name, weights in saved(single["pt"])[0].items():
        torch.testing.assert_close(stopped[name], weights, atol=ATOL, rtol=0, msg=name)


def test_launcher_runs_one_process_without_torchrun():
    env = {k: v for k, v in os.environ.items() if k != "WORLD_SIZE"}
    code = "import os; print(os.environ.get('WORLD_SIZE'))"
    proc = subprocess.run(
        [str(LAUNCHER), "1", sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "None")


def signal_rank_one_after_step(step: int) -> None:
    """Send rank 1 (only) SIGUSR1 after its optimiser step ``step``; the ranks learn of it in
    the next step's exchange and stop after that one."""
    import sslgrid.train.loop as loop

    update = loop._update

    def update_then_signal(state, max_grad_norm):
        update(state, max_grad_norm)
        if state.world.rank == 1 and state.step == step:
            os.kill(os.getpid(), signal.SIGUSR1)

    loop._update = update_then_signal


def main(out: Path) -> None:
    """One rank of the two-process runs (started by torchrun)."""
    from sslgrid.train.distributed import close_world, init_world

    torch.set_num_threads(1)
    world = init_world("cpu")
    pretrain(out / "pt" / "model.pt", world=world)
    pretrain(out / "pt-accum" / "model.pt", grad_accum=2, world=world)
    finetune(out / "ft" / "model.pt", world=world)
    signal_rank_one_after_step(1)
    try:
        pretrain(out / "pt-stopped" / "model.pt", world=world)
        raise AssertionError("the stop signal did not stop training")
    except Preempted as stop:
        result = {"epoch": stop.epoch, "batches_done": stop.batches_done}
        (out / f"stop-{world.rank}.json").write_text(json.dumps(result))
    pretrain(out / "pt-stopped" / "model.pt", world=world)
    close_world()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    main(parser.parse_args().out)
