"""Config presets for real corpora: valid, dry-runnable once their paths exist, and a missing
path stops the workflow naming its key."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sslgrid.config import load_config

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRESETS = sorted((REPO / "config" / "presets").glob("*.yaml"))
# Presets on local corpora (CGN, Common Voice, ...): their paths must exist before a run.
LOCAL_PRESETS = [
    p
    for p in PRESETS
    if any("root" in c for c in (yaml.safe_load(p.read_text()).get("corpora") or {}).values())
]


def snakemake_dry_run(workdir: Path, preset: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "snakemake"), "results/wer_table.csv", "-n", "--cores", "8",
           "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(preset), *extra]  # fmt: skip
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def existing_paths(preset: Path, root: Path) -> list[str]:
    """A --config value pointing every corpus root / table and imported checkpoint at ``root``."""
    data = yaml.safe_load(preset.read_text())
    override: dict = {"corpora": {}, "imported": {}}
    for name, entry in data.get("corpora", {}).items():
        override["corpora"][name] = {
            k: str(root / name / k) for k in ("root", "covost") if k in entry
        }
    for name in data.get("imported", {}):
        override["imported"][name] = {"path": str(root / "models" / name)}
    for section in override.values():
        for entry in section.values():
            for path in entry.values():
                Path(path).mkdir(parents=True, exist_ok=True)
    return [f"{key}={json.dumps(value)}" for key, value in override.items() if value]


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_is_a_valid_config(preset):
    config = load_config(REPO / "config.yaml", overrides=yaml.safe_load(preset.read_text()))
    assert config["test_sets"]


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_paper_sized_models_do_not_inherit_the_cpu_grid_s_small_batches(preset):
    """config.yaml gives some tiny models their own short pre-training batches; a preset that
    trains a model at `paper` size sets that model's batch itself (the section's or its own)."""
    from sslgrid.grid import pretrain_settings

    default = load_config(REPO / "config.yaml")
    config = load_config(REPO / "config.yaml", overrides=yaml.safe_load(preset.read_text()))
    for model in config["pretrain"]["models"]:
        entry = config["models"].get(model) or {}
        own = (entry.get("pretrain") or {}).get("batch_seconds")
        tiny_own = ((default["models"].get(model) or {}).get("pretrain") or {}).get("batch_seconds")
        if entry.get("size") == "paper" and tiny_own is not None:
            assert own != tiny_own, (preset.name, model)
            assert (
                pretrain_settings(config, model)["batch_seconds"]
                >= config["pretrain"]["batch_seconds"] / 2
            ), (preset.name, model)


@pytest.mark.parametrize("preset", LOCAL_PRESETS, ids=[p.stem for p in LOCAL_PRESETS])
def test_a_missing_corpus_path_is_named_before_anything_runs(preset, tmp_path):
    proc = snakemake_dry_run(tmp_path, preset)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "do not exist" in out
    first = next(iter(yaml.safe_load(preset.read_text())["corpora"]))
    assert f"corpora.{first}.root" in out


def test_the_cgn_grid_builds_its_dag_in_seconds_with_the_expected_jobs(tmp_path):
    preset = REPO / "config" / "presets" / "cgn.yaml"
    started = time.monotonic()
    proc = snakemake_dry_run(tmp_path, preset, "--config", *existing_paths(preset, tmp_path))
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    grid = load_config(REPO / "config.yaml", overrides=yaml.safe_load(preset.read_text()))
    pools, amounts = len(grid["pretrain"]["pools"]), len(grid["pretrain"]["amounts"])
    pretrained = len(grid["pretrain"]["models"]) * pools * amounts
    as_is = 1 + len(grid["imported"])  # fbank and each imported checkpoint as it is
    cells = pretrained + as_is
    decodes = cells * len(grid["test_sets"])  # one job runs (and one scores) every decoder
    assert int(counts["pretrain"]) == pretrained
    assert int(counts["finetune"]) == cells
    assert int(counts["decode"]) == int(counts["score"]) == decodes
    assert int(counts["corpus"]) == 2
    assert seconds < 120, f"the dry run took {seconds:.0f} s"


def test_the_offline_grid_has_every_pool_and_amount_per_method(tmp_path):
    """Four pools (Dutch, synthetic Dutch, their mix, Czech) at three nested amounts, and Czech
    continued on Dutch at the largest, for every method; both test sets; no local paths."""
    preset = REPO / "config" / "presets" / "offline-grid.yaml"
    proc = snakemake_dry_run(tmp_path, preset)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    grid = load_config(REPO / "config.yaml", overrides=yaml.safe_load(preset.read_text()))
    methods = len(grid["pretrain"]["models"])
    pretrained = methods * (4 * 3 + 1)
    assert int(counts["pretrain"]) == pretrained
    assert int(counts["finetune"]) == pretrained + 1  # and fbank
    # One decoding and one scoring job per fine-tuned cell and test set, for every decoder.
    assert int(counts["decode"]) == int(counts["score"]) == (pretrained + 1) * 2
    # fillets-nl, its Czech track (waits for fillets-nl's splits) and the synthetic corpus
    assert int(counts["corpus"]) == 3
    for cell in ("apc/cs-then-nl/1h", "wav2vec2/mix-nl/0.25h", "cpc/fillets-cs/0.5h"):
        assert f"results/pretrain/{cell}/model.pt" in proc.stdout


def test_the_paper_sized_gpu_grid_builds_its_dag_in_seconds(tmp_path):
    """5 methods x 6 amounts x 3 domains x 2 fine-tuning modes (x 2 test sets; each decoding
    and scoring job runs both decoders)."""
    preset = REPO / "config" / "presets" / "paper-grid.yaml"
    started = time.monotonic()
    proc = snakemake_dry_run(tmp_path, preset, "--config", *existing_paths(preset, tmp_path))
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, flags=re.M))
    pretrained = 5 * 6 * 3
    assert int(counts["pretrain"]) == pretrained
    # fbank has nothing to fine-tune: frozen only
    assert int(counts["finetune"]) == 1 + pretrained * 2
    assert int(counts["decode"]) == int(counts["score"]) == (1 + pretrained * 2) * 2
    assert int(counts["corpus"]) == 2
    assert "results/pretrain/wav2vec2/cgn-both/32h/model.pt" in proc.stdout
    assert "results/finetune/apc/cgn-nl/1h/full-cgn-vl/model.pt" in proc.stdout
    assert seconds < 120, f"the dry run took {seconds:.0f} s"
