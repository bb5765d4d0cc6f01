"""Early stopping of fine-tuning on dev CER: the rule, the loop, the recogniser, the config."""

import csv

import pytest
import torch
import yaml
from tests_paths import REPO

from sslgrid.asr.downstream import DownstreamConfig
from sslgrid.asr.finetune import finetune_frozen
from sslgrid.config import ConfigError, load_config, validate_config
from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import FeatureCache
from sslgrid.grid import training_keys
from sslgrid.models.factory import build_upstream, upstream_spec
from sslgrid.train.loop import EarlyStopping, new_train_state, run_epochs

FBANK = FbankConfig()


def history(*cers):
    return [{"epoch": i + 1, "dev_cer": c} for i, c in enumerate(cers)]


def test_stops_once_patience_epochs_pass_without_a_better_value():
    rule = EarlyStopping("dev_cer", patience=2)
    assert rule.reason(history(0.9, 0.8)) is None
    assert rule.reason(history(0.9, 0.8, 0.85)) is None  # one epoch without a better value
    why = rule.reason(history(0.9, 0.8, 0.85, 0.81))
    assert why is not None and "epoch 2" in why and "patience 2" in why
    # A better value resets the wait.
    assert rule.reason(history(0.9, 0.8, 0.85, 0.79)) is None


def test_an_equal_value_is_no_improvement():
    rule = EarlyStopping("dev_cer", patience=2)
    assert rule.reason(history(0.8, 0.8, 0.8)) is not None
    assert rule.reason(history(1.0, 1.0)) is None


def test_min_epochs_keeps_a_plateau_from_stopping_training():
    """A recogniser emitting only blanks scores CER 1.0 for several epochs before it learns."""
    rule = EarlyStopping("dev_cer", patience=2, min_epochs=5)
    plateau = [1.0, 1.0, 1.0, 1.0]
    assert rule.reason(history(*plateau)) is None
    assert rule.reason(history(*plateau, 1.0)) is not None
    assert rule.reason(history(*plateau, 0.7)) is None


@pytest.mark.parametrize("kwargs", [{"patience": 0}, {"patience": 2, "min_epochs": 0}])
def test_patience_and_min_epochs_must_be_positive(kwargs):
    with pytest.raises(ValueError, match="at least 1"):
        EarlyStopping("dev_cer", **kwargs)


def scripted_run(ckpt_dir, cers, epochs, rule):
    """run_epochs on a one-weight model whose dev CER follows ``cers``; the epochs trained."""
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    state = new_train_state(model, {"run": "scripted"}, 1, epochs, 1e-3)
    trained = []

    def train_epoch(epoch):
        trained.append(epoch)
        model.weight.data.fill_(float(epoch))
        return {"train_loss": 1.0}

    def evaluate():
        return {"dev_cer": cers[state.epoch]}

    run_epochs(state, epochs, ckpt_dir, train_epoch, evaluate, "dev_cer", rule)
    return state, trained


def test_run_epochs_stops_early_keeps_the_best_and_a_rerun_trains_nothing(tmp_path):
    cers = [0.9, 0.7, 0.75, 0.72, 0.6, 0.5, 0.4, 0.3]
    rule = EarlyStopping("dev_cer", patience=2, min_epochs=3)
    state, trained = scripted_run(tmp_path, cers, len(cers), rule)
    assert trained == [0, 1, 2, 3]  # epochs 3 and 4 do not beat epoch 2's 0.7
    assert [h["dev_cer"] for h in state.history] == cers[:4]
    assert state.best["metrics"]["epoch"] == 2
    assert float(state.best["model"]["weight"]) == 1.0  # the weights after epoch index 1
    # The decision comes from the checkpointed history: a rerun resumes and stops at once.
    again, trained = scripted_run(tmp_path, cers, len(cers), rule)
    assert trained == [] and again.epoch == 4 and again.best["metrics"]["epoch"] == 2


def test_without_early_stopping_every_epoch_runs(tmp_path):
    cers = [0.9, 0.7, 0.75, 0.72, 0.8]
    _, trained = scripted_run(tmp_path, cers, len(cers), None)
    assert trained == [0, 1, 2, 3, 4]


def test_early_stopping_needs_held_out_metrics(tmp_path):
    model = torch.nn.Linear(1, 1)
    state = new_train_state(model, {}, 1, 3, 1e-3)
    with pytest.raises(ValueError, match="evaluate"):
        run_epochs(state, 3, tmp_path, lambda e: {}, None, None, EarlyStopping("dev_cer", 1))


def test_finetuning_a_recogniser_that_cannot_improve_stops_after_patience(tmp_path):
    """A learning rate too small to move the recogniser: dev CER stays at epoch 1's, so
    training stops after 1 + `patience` epochs, and the checkpoint and history say so."""
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(60 + 5 * i, 80, generator=g).half() for i in range(4)]
    train = FeatureCache([f"t{i}" for i in range(4)], feats, FBANK)
    dev = FeatureCache([f"d{i}" for i in range(2)], feats[:2], FBANK)
    downstream = DownstreamConfig(num_layers=1, hidden_size=8, dropout=0.0, subsample=2)
    out = tmp_path / "ft" / "model.pt"
    torch.manual_seed(0)
    state = finetune_frozen(
        build_upstream("fbank", {}, FBANK),
        (train, ["een twee", "drie", "vier vijf", "zes"]),
        (dev, ["een", "twee"]),
        downstream,
        {"upstream": upstream_spec("fbank", {}, FBANK), "downstream": downstream.to_dict()},
        out,
        epochs=10,
        batch_seconds=2.0,
        learning_rate=1e-12,
        seed=0,
        progress=False,
        early_stopping=EarlyStopping("dev_cer", patience=2, min_epochs=2),
    )
    assert state.epoch == 3
    ckpt = torch.load(out, weights_only=False)
    assert ckpt["epoch"] == 3 and ckpt["selected"]["epoch"] == 1
    with open(out.with_name("history.tsv"), newline="") as fh:
        assert len(list(csv.DictReader(fh, delimiter="\t"))) == 3


def test_config_takes_early_stopping_and_checks_it(tmp_path):
    written = yaml.safe_load((REPO / "config.yaml").read_text())
    written["finetune"]["early_stopping"] = {"patience": 3}
    config = validate_config(written)
    assert config["finetune"]["early_stopping"] == {"patience": 3, "min_epochs": 1}
    # A grid setting of every fine-tuning: Snakemake and DVC rerun the fine-tunings on a change.
    assert "finetune.early_stopping" in training_keys(config, "finetune")
    bad = {"finetune": {"early_stopping": {"patience": 0}}}
    with pytest.raises(ConfigError, match="finetune.early_stopping.patience"):
        load_config(REPO / "config.yaml", overrides=bad)
    typo = {"finetune": {"early_stopping": {"patience": 2, "min_epoch": 4}}}
    with pytest.raises(ConfigError, match="min_epoch"):
        load_config(REPO / "config.yaml", overrides=typo)
    # null switches it off (presets with their own fixed budget do).
    off = load_config(REPO / "config.yaml", overrides={"finetune": {"early_stopping": None}})
    assert off["finetune"]["early_stopping"] is None
    # More epochs than the budget is allowed: the budget bounds the run in any case.
    config = load_config(
        REPO / "config.yaml",
        overrides={"finetune": {"epochs": 1, "early_stopping": {"patience": 1, "min_epochs": 4}}},
    )
    assert config["finetune"]["epochs"] == 1


def test_default_config_states_its_early_stopping():
    written = yaml.safe_load((REPO / "config.yaml").read_text())["finetune"]
    config = load_config(REPO / "config.yaml")["finetune"]
    assert config["early_stopping"] == written["early_stopping"]
    assert config["early_stopping"]["min_epochs"] <= config["epochs"]
