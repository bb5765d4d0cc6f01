"""Pre-training pools: corpora, mixes of corpora, and pre-training continued from another pool.

The unit tests check how the grid plans pools; the end-to-end test runs a real tiny grid with
a Dutch and a Czech track of the generated game corpus, their mix, and Czech-then-Dutch.
"""

from __future__ import annotations

import copy
import re

import pytest
import torch
import yaml
from fillets_fixture import make_fillets_packages
from lhotse import CutSet
from test_workflow import tiny_config, tiny_levels
from workflow_project import REPO, read_csv_rows, run, snakemake_args, tool_env

from sslgrid.config import ConfigError, validate_config
from sslgrid.features.fbank import FbankConfig
from sslgrid.features.store import (
    FeatureCache,
    cmvn_of,
    pool_cache,
    pooled_cmvn,
    save_cache,
)
from sslgrid.grid import (
    cache_kinds,
    continued_from,
    pool_amounts,
    pool_columns,
    pool_corpora,
    pretrain_settings,
    stage_cells,
    training_settings,
    upstream_cells,
)

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def grid(**pretrain) -> dict:
    config = copy.deepcopy(DEFAULT)
    config["pretrain"].update(pretrain)
    return validate_config(config)


def test_pools_resolve_to_the_corpora_they_read():
    config = grid(
        pools=["fillets-nl", "mix-nl", "cs-then-nl"],
        mixes={"mix-nl": ["fillets-nl", "synthetic-nl"]},
        continued={"cs-then-nl": {"from": "fillets-cs", "then": "fillets-nl"}},
    )
    assert pool_corpora("fillets-nl", config) == ["fillets-nl"]
    assert pool_corpora("mix-nl", config) == ["fillets-nl", "synthetic-nl"]
    assert pool_corpora("cs-then-nl", config) == ["fillets-nl"]
    assert continued_from("cs-then-nl", config) == "fillets-cs"
    assert continued_from("mix-nl", config) is None
    # The synthetic corpus is built because the mix reads it; Czech only through the model
    # the continued pool starts from, which is another cell (pre-trained on fillets-cs).
    assert "synthetic-nl" in cache_kinds(config)


def test_a_cells_training_settings_leave_out_the_grid_axes():
    config = grid(pools=["fillets-nl", "mix-nl", "cs-then-nl"])
    finetune = training_settings(config, "finetune")
    assert {"upstreams", "modes", "amounts"}.isdisjoint(finetune)
    assert finetune["epochs"] == config["finetune"]["epochs"]
    plain = training_settings(config, "pretrain", "fillets-nl")
    assert {"models", "pools", "amounts", "mixes", "continued"}.isdisjoint(plain)
    assert plain["learning_rate"] == config["pretrain"]["learning_rate"]
    # A mixed or continued pool's cells depend on that pool's definition (and no other's).
    assert training_settings(config, "pretrain", "mix-nl")["mixes"] == {
        "mix-nl": ["fillets-nl", "synthetic-nl"]
    }
    continued = training_settings(config, "pretrain", "cs-then-nl")
    assert continued["continued"] == {"cs-then-nl": {"from": "fillets-cs", "then": "fillets-nl"}}
    assert "mixes" not in continued


def test_a_models_own_pretraining_settings_replace_the_sections():
    config = grid()
    config["models"]["apc"].pop("pretrain", None)
    config["models"]["cpc"]["pretrain"] = {"learning_rate": 2e-4, "batch_seconds": 30.0}
    config = validate_config(config)
    cpc = pretrain_settings(config, "cpc")
    assert cpc["learning_rate"] == 2e-4 and cpc["batch_seconds"] == 30.0
    assert cpc["epochs"] == config["pretrain"]["epochs"]
    assert pretrain_settings(config, "apc") == config["pretrain"]
    # Imported checkpoints have no models entry: the section's settings.
    assert pretrain_settings(config, "offshelf") == config["pretrain"]


def test_a_continued_pool_has_only_the_largest_amount():
    config = grid(
        pools=["fillets-cs", "cs-then-nl"],
        amounts=[0.25, 1.0, 0.5],
        continued={"cs-then-nl": {"from": "fillets-cs", "then": "fillets-nl"}},
    )
    assert pool_amounts("fillets-cs", config) == ["0.25h", "1h", "0.5h"]
    assert pool_amounts("cs-then-nl", config) == ["1h"]
    cells = {(c.model, c.pool, c.amount) for c in upstream_cells(config)}
    assert ("apc", "cs-then-nl", "1h") in cells and ("apc", "cs-then-nl", "0.5h") not in cells
    assert grid(pools=["cs-then-nl"], amounts=[0.5, "all"])["pretrain"]["amounts"]
    assert pool_amounts("cs-then-nl", grid(pools=["cs-then-nl"], amounts=[0.5, "all"])) == ["all"]


def test_the_default_grid_has_four_pools_three_amounts_and_czech_then_dutch():
    """Every method on every pool at every amount, Czech-then-Dutch at the largest, fbank once."""
    config = validate_config(copy.deepcopy(DEFAULT))
    models = config["pretrain"]["models"]
    assert set(models) == {"apc", "mockingjay", "tera", "cpc", "wav2vec", "wav2vec2"}
    cells = upstream_cells(config)
    per_model = 4 * 3 + 1  # four pools x three amounts, plus the continued pool
    assert len(cells) == 1 + len(models) * per_model
    assert {c.amount for c in cells if c.pool == "fillets-cs"} == {"0.125h", "0.25h", "0.5h"}
    assert {c.amount for c in cells if c.pool == "cs-then-nl"} == {"0.5h"}


def test_probe_and_st_take_all_cells_or_the_headline_ones():
    config = validate_config(copy.deepcopy(DEFAULT))
    config["probe"]["cells"], config["st"]["cells"] = "headline", "all"
    headline = stage_cells(config, "probe")
    assert [(c.model, c.pool, c.amount) for c in headline] == [("fbank", "none", "none")] + [
        (m, "fillets-nl", "0.5h") for m in config["finetune"]["upstreams"][1:]
    ]
    assert stage_cells(config, "st") == upstream_cells(config)
    # The headline pool is the first one, whichever it is.
    config["pretrain"]["pools"] = ["fillets-cs", "fillets-nl"]
    assert {c.pool for c in stage_cells(config, "probe")} == {"none", "fillets-cs"}


def test_pool_language_and_domain_columns():
    config = grid(
        pools=["fillets-nl", "synthetic-nl", "mix-nl", "fillets-cs", "cs-then-nl"],
    )
    columns = pool_columns(config)
    assert columns["none"] == {"language": "none", "domain": "none"}
    assert columns["fillets-nl"] == {"language": "nl", "domain": "game-dialogue"}
    assert columns["synthetic-nl"] == {"language": "nl", "domain": "synthetic-tts"}
    assert columns["mix-nl"] == {"language": "nl", "domain": "game-dialogue+synthetic-tts"}
    assert columns["fillets-cs"] == {"language": "cs", "domain": "game-dialogue"}
    assert columns["cs-then-nl"] == {"language": "cs>nl", "domain": "game-dialogue"}


@pytest.mark.parametrize(
    "pretrain, expected",
    [
        ({"pools": ["mix-x"], "mixes": {"mix-x": ["fillets-nl", "cgn"]}}, "pretrain.mixes.mix-x.1"),
        (
            {"pools": ["fillets-nl"], "mixes": {"fillets-nl": ["fillets-nl", "fillets-cs"]}},
            "is also a corpus",
        ),
        (
            {"pools": ["c"], "continued": {"c": {"from": "nowhere", "then": "fillets-nl"}}},
            "pretrain.continued.c.from",
        ),
        (
            {
                "pools": ["c2"],
                "continued": {
                    "c1": {"from": "fillets-cs", "then": "fillets-nl"},
                    "c2": {"from": "c1", "then": "fillets-nl"},
                },
            },
            "is itself a continued pool",
        ),
        ({"pools": ["c"], "continued": {"c": {"from": "fillets-cs"}}}, "then"),
        ({"pools": ["Mix"]}, "pretrain.pools.0"),
    ],
)
def test_bad_pool_definitions_name_the_key(pretrain, expected):
    config = copy.deepcopy(DEFAULT)
    config["pretrain"].update(pretrain)
    with pytest.raises(ConfigError, match=expected):
        validate_config(config)


def random_cache(ids: list[str], frames: list[int], scale: float, shift: float) -> FeatureCache:
    gen = torch.Generator().manual_seed(len(ids))
    feats = [torch.randn(n, 4, generator=gen) * scale + shift for n in frames]
    return FeatureCache(ids, feats, FbankConfig(num_mel_bins=4))


def test_pooled_cmvn_equals_the_statistics_of_all_frames_together():
    a = random_cache(["u1", "u2"], [50, 70], scale=1.0, shift=0.0)
    b = random_cache(["u1", "u3", "u4"], [30, 90, 10], scale=3.0, shift=5.0)
    pooled = pooled_cmvn([cmvn_of(a), cmvn_of(b)])
    together = torch.cat([*a.feats, *b.feats]).double()
    assert int(pooled["frames"]) == together.shape[0]
    torch.testing.assert_close(pooled["mean"], together.mean(0).float(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        pooled["std"], together.std(0, unbiased=False).float(), rtol=1e-3, atol=1e-3
    )


def test_a_mixed_cache_keeps_every_utterance_apart_even_with_shared_ids(tmp_path):
    a = random_cache(["lvl-1", "lvl-2"], [5, 6], 1.0, 0.0)
    b = random_cache(["lvl-1", "lvl-3"], [7, 8], 1.0, 0.0)
    for name, cache in (("nl", a), ("cs", b)):
        save_cache(cache, tmp_path / "features" / name / "fbank_train.pt")
    mixed = pool_cache(tmp_path, ["nl", "cs"], "fbank_train.pt")
    assert mixed.ids == ["nl/lvl-1", "nl/lvl-2", "cs/lvl-1", "cs/lvl-3"]
    assert mixed.frames() == [5, 6, 7, 8]
    single = pool_cache(tmp_path, ["cs"], "fbank_train.pt")
    assert single.ids == ["lvl-1", "lvl-3"]
    other = FeatureCache(["x"], [torch.zeros(3, 5)], FbankConfig(num_mel_bins=5))
    save_cache(other, tmp_path / "features" / "odd" / "fbank_train.pt")
    with pytest.raises(ValueError, match="other settings"):
        pool_cache(tmp_path, ["nl", "odd"], "fbank_train.pt")


def czech_levels() -> dict[str, list[tuple[str, str, str, str]]]:
    """The Dutch fixture's levels and two more, with Czech lines (same dialog ids)."""
    levels = tiny_levels()
    for level in ("epsilon", "zeta"):
        levels[level] = [
            (f"{level[:2]}-{'m' if i % 2 else 'v'}-{i}", "font_small", f"english {i}", "Ahoj.")
            for i in range(3)
        ]
    return {
        level: [(d, font, en, f"Ryba {i} plave.") for i, (d, font, en, _) in enumerate(dialogs)]
        for level, dialogs in levels.items()
    }


@pytest.mark.e2e
def test_czech_mix_and_continued_pools_end_to_end(tmp_path):
    nl = make_fillets_packages(tmp_path / "pkgs-nl", tiny_levels())
    cs = make_fillets_packages(tmp_path / "pkgs-cs", czech_levels(), language="cs")
    config = tiny_config(nl, ["fbank", "apc"])
    config["corpora"]["fillets-cs"].update(packages=cs, dev_fraction=0.2, test_fraction=0.2)
    config["pretrain"].update(
        pools=["fillets-nl", "fillets-cs", "mix-nl-cs", "cs-then-nl"],
        mixes={"mix-nl-cs": ["fillets-nl", "fillets-cs"]},
        continued={"cs-then-nl": {"from": "fillets-cs", "then": "fillets-nl"}},
        amounts=["all"],
    )
    config["decode"]["decoders"] = ["greedy"]
    workdir = tmp_path / "run"
    workdir.mkdir()
    configfile = workdir / "grid.yaml"
    configfile.write_text(yaml.safe_dump(config))
    run([*snakemake_args(workdir, configfile), "results/wer_table.csv"], workdir, tool_env())

    # The Czech track leaves out every level of the Dutch dev and test splits.
    manifests = workdir / "data" / "manifests"

    def levels(corpus: str, splits: tuple[str, ...]) -> set[str]:
        return {
            sup.custom["level"]
            for split in splits
            for cut in CutSet.from_file(manifests / corpus / f"cuts_{split}.jsonl.gz")
            for sup in cut.supervisions
        }

    held_out = levels("fillets-nl", ("dev", "test"))
    czech = levels("fillets-cs", ("train", "dev", "test"))
    assert held_out and czech and not held_out & czech
    assert {"epsilon", "zeta"} <= czech

    rows = read_csv_rows(workdir / "results" / "wer_table.csv")
    described = {(r["model"], r["pool"], r["pool_language"], r["pool_domain"]) for r in rows}
    assert described == {
        ("fbank", "none", "none", "none"),
        ("apc", "fillets-nl", "nl", "game-dialogue"),
        ("apc", "fillets-cs", "cs", "game-dialogue"),
        ("apc", "mix-nl-cs", "nl+cs", "game-dialogue"),
        ("apc", "cs-then-nl", "cs>nl", "game-dialogue"),
    }
    pretrain = workdir / "results" / "pretrain" / "apc"

    def checkpoint(pool: str) -> dict:
        return torch.load(pretrain / pool / "all" / "model.pt", weights_only=False)

    # The mix reads both tracks: as many utterances as the two training splits together.
    sizes = {
        c: len(CutSet.from_file(manifests / c / "cuts_train.jsonl.gz"))
        for c in ("fillets-nl", "fillets-cs")
    }
    assert checkpoint("mix-nl-cs")["config"]["utterances"] == sum(sizes.values())
    # Continued pre-training starts from the Czech model and keeps its input normalisation.
    continued = checkpoint("cs-then-nl")
    assert continued["config"]["init"].endswith("results/pretrain/apc/fillets-cs/all/model.pt")
    assert continued["config"]["utterances"] == sizes["fillets-nl"]
    czech_model, dutch_model = checkpoint("fillets-cs")["model"], checkpoint("fillets-nl")["model"]
    for key in ("frontend.mean", "frontend.std"):
        torch.testing.assert_close(continued["model"][key], czech_model[key])
        assert not torch.equal(continued["model"][key], dutch_model[key])
    log = (workdir / "logs" / "pretrain" / "apc" / "cs-then-nl" / "all.log").read_text()
    assert "continuing the pre-training of apc from" in log
    # The report renders the table with the pools' language and domain, and the config.
    report = [*snakemake_args(workdir, configfile), "--report", "results/report.html"]
    run([*report, "results/wer_table.csv"], workdir, tool_env())
    html = (workdir / "results" / "report.html").read_text(errors="replace")
    assert "wer_table.csv" in html and "config.yaml" in html

    # Growing the grid trains only the new cells: a model joining the grid leaves every
    # pre-training and fine-tuning already done alone (their settings are unchanged).
    grown = copy.deepcopy(config)
    grown["pretrain"]["models"] = ["apc", "mockingjay"]
    grown["finetune"]["upstreams"] = ["fbank", "apc", "mockingjay"]
    grownfile = workdir / "grown.yaml"
    grownfile.write_text(yaml.safe_dump(grown))
    dry = run(
        [*snakemake_args(workdir, grownfile), "-n", "results/wer_table.csv"], workdir, tool_env()
    )
    jobs, rule = [], None
    for line in (dry.stdout + dry.stderr).splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule = m.group(1)
        elif (m := re.match(r"^\s+wildcards: (.*)", line)) and rule in ("pretrain", "finetune"):
            jobs.append((rule, dict(kv.split("=", 1) for kv in m.group(1).split(", "))))
    assert jobs, dry.stdout[-3000:]
    assert {w["model"] for _, w in jobs} == {"mockingjay"}, jobs
