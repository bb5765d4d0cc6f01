"""``dvc.yaml`` generated from the grid, so ``dvc repro`` runs the same stages as Snakemake.

Each stage family iterates (``foreach``) over the grid cells that config.yaml asks for, so
``dvc repro pretrain@apc-fillets-nl-all`` rebuilds exactly that cell and what it needs.
Regenerate with ``python scripts/write_dvc_yaml.py`` after changing the grid's axes; a test
checks that the committed file matches config.yaml.
"""

from __future__ import annotations

from typing import Any

import yaml

from sslgrid.grid import (
    NO_PRETRAIN,
    UpstreamCell,
    cache_kinds,
    cache_name,
    continued_from,
    finetune_cells,
    finetune_label,
    held_out_of,
    is_imported,
    pool_corpora,
    pretrained_flag,
    stage_cells,
    training_keys,
    upstream_cells,
)
from sslgrid.st.dvc_stages import st_stages

CONFIG = "config.yaml"
SPLITS = ("train", "dev", "test")


def stage_key(*parts: str) -> str:
    return "-".join(parts).replace(".", "_")


def corpus_stages(config: dict[str, Any]) -> dict[str, Any]:
    """``corpus@<name>`` for self-contained corpora; ``corpus-<name>`` for each corpus that
    must wait for others (a synthetic corpus never speaks their dev/test sentences, a second
    Fish Fillets track leaves out their dev/test levels)."""
    names = sorted(cache_kinds(config))
    names += sorted({o for n in names for o in held_out_of(config["corpora"][n])} - set(names))
    do = {
        "cmd": "python scripts/prepare_corpus.py --config config.yaml --corpus ${item.corpus}"
        " --download-dir data/downloads --audio-dir data/audio/${item.corpus}"
        " --manifest-dir data/manifests/${item.corpus} --no-progress",
        "deps": [
            "scripts/prepare_corpus.py",
            "src/sslgrid/corpora",
            "src/sslgrid/text.py",
            "src/sslgrid/audio.py",
        ],
        "params": [{CONFIG: ["seed", "corpora.${item.corpus}"]}],
        "outs": [f"data/manifests/${{item.corpus}}/cuts_{s}.jsonl.gz" for s in SPLITS]
        + ["data/manifests/${item.corpus}/report.json", "data/audio/${item.corpus}"],
    }
    plain = [n for n in names if not held_out_of(config["corpora"][n])]
    stages: dict[str, Any] = {"corpus": {"foreach": {n: {"corpus": n} for n in plain}, "do": do}}
    for name in sorted(set(names) - set(plain)):
        held_out = [
            f"data/manifests/{other}/cuts_{split}.jsonl.gz"
            for other in held_out_of(config["corpora"][name])
            for split in ("dev", "test")
        ]
        stage = yaml.safe_load(yaml.safe_dump(do).replace("${item.corpus}", name))
        stage["deps"] += held_out
        stages[f"corpus-{name}"] = stage
    return stages


def features_stage(corpora: list[str], kind: str) -> dict[str, Any]:
    """The features stage for one input kind (``fbank`` or ``wav``)."""
    outs = [f"data/features/${{item.corpus}}/{kind}_{s}.pt" for s in SPLITS]
    return {
        "foreach": {name: {"corpus": name} for name in corpora},
        "do": {
            "cmd": f"python scripts/compute_features.py --kind {kind} --config config.yaml"
            " --manifest-dir data/manifests/${item.corpus} --out-dir data/features/${item.corpus}",
            "deps": ["scripts/compute_features.py", "src/sslgrid/features"]
            + [f"data/manifests/${{item.corpus}}/cuts_{s}.jsonl.gz" for s in SPLITS],
            **({"params": [{CONFIG: ["features"]}]} if kind == "fbank" else {}),
            "outs": outs + (["data/features/${item.corpus}/cmvn.pt"] if kind == "fbank" else []),
        },
    }


def pretrain_stage(config: dict[str, Any], written: dict[str, Any] | None = None) -> dict[str, Any]:
    """``pretrain@<cell>`` for every cell pre-trained on one corpus from scratch or an imported
    checkpoint. Its params are the training settings, not the grid's lists of cells
    (:func:`~sslgrid.grid.training_keys`), so a cell joining the grid leaves the others alone."""
    cells = [c for c in upstream_cells(config) if single_corpus_pool(c.pool, config)]
    out = "results/pretrain/${item.model}/${item.pool}/${item.amount}"
    return {
        "foreach": {
            stage_key(c.model, c.pool, c.amount): {
                **c.__dict__,
                "cache": cache_name(c.model, "train", config),
                # An imported checkpoint's settings are its entry under `imported`.
                "settings": ("imported." if is_imported(c.model, config) else "models.") + c.model,
            }
            for c in cells
        },
        "do": {
            "cmd": "python scripts/pretrain.py --config config.yaml --model ${item.model}"
            " --pool ${item.pool} --amount ${item.amount}"
            f" --out {out}/model.pt",
            "deps": [
                "scripts/pretrain.py",
                "src/sslgrid/models",
                "src/sslgrid/train",
                "data/features/${item.pool}/${item.cache}",
                "data/features/${item.pool}/cmvn.pt",
                "data/manifests/${item.pool}/cuts_train.jsonl.gz",
                "results/data_report/${item.pool}/report.json",
            ],
            "params": [
                {
                    CONFIG: [
                        "seed",
                        "features",
                        *training_keys(config, "pretrain", written),
                        "${item.settings}",
                    ]
                }
            ],
            "outs": [f"{out}/model.pt"],
            "plots": [f"{out}/history.tsv"],
        },
    }


def single_corpus_pool(pool: str, config: dict[str, Any]) -> bool:
    """A pool that is one corpus (``pretrain@`` foreach items), not a mix or continued pool."""
    return (
        pool != NO_PRETRAIN
        and pool_corpora(pool, config) == [pool]
        and continued_from(pool, config) is None
    )


def pooled_pretrain_stages(
    config: dict[str, Any], written: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``pretrain-<cell>``: one stage per cell of a mixed or continued pool, whose inputs (several
    corpora, another cell's model) do not fit one ``foreach`` template."""
    stages = {}
    for c in upstream_cells(config):
        if c.pool == NO_PRETRAIN or single_corpus_pool(c.pool, config):
            continue
        out = f"results/pretrain/{c.path}"
        corpora = pool_corpora(c.pool, config)
        start = continued_from(c.pool, config)
        init = f"results/pretrain/{c.model}/{start}/{c.amount}/model.pt" if start else None
        settings = ("imported." if is_imported(c.model, config) else "models.") + c.model
        deps = ["scripts/pretrain.py", "src/sslgrid/models", "src/sslgrid/train"]
        for corpus in corpora:
            deps += [
                f"data/features/{corpus}/{cache_name(c.model, 'train', config)}",
                f"data/features/{corpus}/cmvn.pt",
                f"data/manifests/{corpus}/cuts_train.jsonl.gz",
                f"results/data_report/{corpus}/report.json",
            ]
        stages[f"pretrain-{stage_key(c.model, c.pool, c.amount)}"] = {
            "cmd": f"python scripts/pretrain.py --config config.yaml --model {c.model}"
            f" --pool {c.pool} --amount {c.amount} --out {out}/model.pt"
            + (f" --init {init}" if init else ""),
            "deps": deps + ([init] if init else []),
            "params": [
                {
                    CONFIG: [
                        "seed",
                        "features",
                        *training_keys(config, "pretrain", written),
                        f"pretrain.{'continued' if start else 'mixes'}.{c.pool}",
                        settings,
                    ]
                }
            ],
            "outs": [f"{out}/model.pt"],
            "plots": [f"{out}/history.tsv"],
        }
    return stages


def upstream_source(cell: UpstreamCell, config: dict[str, Any]) -> str:
    """Where a fine-tuned upstream's weights come from (a dependency of its fine-tuning): the
    pre-trained model, an imported checkpoint used as it is, or for fbank the upstream code."""
    if cell.pool != NO_PRETRAIN:
        return f"results/pretrain/{cell.path}/model.pt"
    if is_imported(cell.model, config):
        return config["imported"][cell.model]["path"]
    return "src/sslgrid/models"


def finetune_stage(config: dict[str, Any], written: dict[str, Any] | None = None) -> dict[str, Any]:
    corpus = config["finetune"]["corpus"]
    items = {}
    for c, setting in finetune_cells(config):
        ft = setting.label
        item = {
            **c.__dict__,
            "finetune": ft,
            "mode": setting.mode,
            "labelled": setting.amount,
            # Leading space in the value, as with pretrained_flag; empty for the first repeat.
            "repeat": f" --repeat {setting.repeat}" if setting.repeat else "",
            "pretrained": pretrained_flag(c),
            "upstream": upstream_source(c, config),
            "train_cache": cache_name(c.model, "train", config),
            "dev_cache": cache_name(c.model, "dev", config),
        }
        items[stage_key(c.model, c.pool, c.amount, ft)] = item
    out = "results/finetune/${item.model}/${item.pool}/${item.amount}/${item.finetune}"
    return {
        "foreach": items,
        "do": {
            "cmd": "python scripts/finetune.py --config config.yaml --upstream ${item.model}"
            f"${{item.pretrained}} --mode ${{item.mode}} --labelled ${{item.labelled}}"
            f"${{item.repeat}} --out {out}/model.pt",
            "deps": [
                "scripts/finetune.py",
                "src/sslgrid/asr",
                "src/sslgrid/train",
                "${item.upstream}",
                f"data/features/{corpus}/${{item.train_cache}}",
                f"data/features/{corpus}/${{item.dev_cache}}",
                f"data/features/{corpus}/cmvn.pt",
            ],
            "params": [{CONFIG: ["seed", "features", *training_keys(config, "finetune", written)]}],
            "outs": [f"{out}/model.pt"],
            "plots": [f"{out}/history.tsv"],
        },
    }


def decode_items(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    """One item per fine-tuned cell and test set: its decoding runs every decoder."""
    with_lm = "lm" in config["decode"]["decoders"]
    items = {}
    for c, setting in finetune_cells(config):
        ft = setting.label
        for test_set in config["test_sets"]:
            corpus, split = test_set.split("/")
            items[stage_key(c.model, c.pool, c.amount, ft, corpus, split)] = {
                **c.__dict__,
                "finetune": ft,
                "corpus": corpus,
                "split": split,
                "cache": cache_name(c.model, split, config),
                # The split the LM's weights are tuned on.
                **({"dev_cache": cache_name(c.model, "dev", config)} if with_lm else {}),
            }
    return items


TEST_DIR = (
    "results/decode/${item.model}/${item.pool}/${item.amount}/${item.finetune}"
    "/${item.corpus}/${item.split}"
)


def per_decoder(config: dict[str, Any], name: str) -> list[str]:
    """The item's ``name`` in the folder of every decoder of the config."""
    return [f"{TEST_DIR}/{d}/{name}" for d in config["decode"]["decoders"]]


def decode_stage(config: dict[str, Any]) -> dict[str, Any]:
    """Decoding with every decoder in one run (the test set's emissions are computed once);
    ``lm`` also needs the LM and the dev split it is tuned on."""
    decoders = config["decode"]["decoders"]
    model = "results/finetune/${item.model}/${item.pool}/${item.amount}/${item.finetune}/model.pt"
    cmd = (
        f"python scripts/decode.py --model {model}"
        " --features data/features/${item.corpus}/${item.cache}"
        " --cuts data/manifests/${item.corpus}/cuts_${item.split}.jsonl.gz"
        f" --decoder {' '.join(decoders)} --out {TEST_DIR}/{{decoder}}/hyps.jsonl"
    )
    deps = ["scripts/decode.py", model, "data/features/${item.corpus}/${item.cache}"]
    do: dict[str, Any] = {"cmd": cmd, "deps": deps, "outs": per_decoder(config, "hyps.jsonl")}
    if "lm" in decoders:
        lm_dir = f"results/lm/{config['finetune']['corpus']}"
        do["cmd"] += (
            f" --config config.yaml --lm-dir {lm_dir}"
            " --dev-features data/features/${item.corpus}/${item.dev_cache}"
            " --dev-cuts data/manifests/${item.corpus}/cuts_dev.jsonl.gz"
        )
        deps += [f"{lm_dir}/lm.bin", "data/features/${item.corpus}/${item.dev_cache}"]
        do["params"] = [{CONFIG: ["decode.lm"]}]
    return {"foreach": decode_items(config), "do": do}


def lm_stage(config: dict[str, Any]) -> dict[str, Any]:
    corpus = config["finetune"]["corpus"]
    held_out = sorted({corpus, *(t.split("/")[0] for t in config["test_sets"])})
    return {
        "cmd": f"python scripts/train_lm.py --config config.yaml --corpus {corpus}"
        f" --out-dir results/lm/{corpus}",
        "deps": [
            "scripts/train_lm.py",
            "src/sslgrid/lm",
            f"data/manifests/{corpus}/cuts_train.jsonl.gz",
        ]
        + [f"data/manifests/{c}/cuts_{s}.jsonl.gz" for c in held_out for s in ("dev", "test")],
        "params": [{CONFIG: ["decode.lm"]}],
        "outs": [f"results/lm/{corpus}/lm.bin", f"results/lm/{corpus}/words.txt"],
    }


def score_stage(config: dict[str, Any]) -> dict[str, Any]:
    """Scoring of every decoder's hypotheses of one cell and test set in one run."""
    decoders = config["decode"]["decoders"]
    coords = " ".join(
        f"--coord {k}=" + ("{decoder}" if k == "decoder" else f"${{item.{k}}}")
        for k in ("model", "pool", "amount", "finetune", "decoder", "corpus", "split")
    )
    return {
        "foreach": decode_items(config),
        "do": {
            "cmd": "python scripts/score.py"
            " --cuts data/manifests/${item.corpus}/cuts_${item.split}.jsonl.gz"
            f" --decoder {' '.join(decoders)} --hyps {TEST_DIR}/{{decoder}}/hyps.jsonl {coords}"
            # The bootstrap's seed, as Snakemake passes it.
            f" --seed {config['seed']} --out {TEST_DIR}/{{decoder}}/score.json"
            f" --per-utt {TEST_DIR}/{{decoder}}/per_utt.tsv",
            "deps": ["scripts/score.py", "src/sslgrid/metrics", *per_decoder(config, "hyps.jsonl")],
            "params": [{CONFIG: ["seed"]}],
            "outs": per_decoder(config, "per_utt.tsv"),
            "metrics": per_decoder(config, "score.json"),
        },
    }


def table_stage(config: dict[str, Any]) -> dict[str, Any]:
    scores = [
        f"results/decode/{i['model']}/{i['pool']}/{i['amount']}/{i['finetune']}/{i['corpus']}"
        f"/{i['split']}/{d}/score.json"
        for i in decode_items(config).values()
        for d in config["decode"]["decoders"]
    ]
    reports = [f"results/data_report/{c}/report.md" for c in sorted(cache_kinds(config))]
    return {
        "cmd": "python scripts/make_table.py --scores "
        + " ".join(scores)
        + " --data-reports "
        + " ".join(reports)
        + " --config config.yaml --config-out results/config.yaml"
        " --csv results/wer_table.csv --md results/wer_table.md",
        "deps": ["scripts/make_table.py", *scores, *reports],
        # The pools' language and domain columns and the fine-tuning settings' columns.
        "params": [
            {
                CONFIG: [
                    "pretrain.pools",
                    "pretrain.mixes",
                    "pretrain.continued",
                    "finetune.modes",
                    "finetune.amounts",
                    "finetune.repeats",
                    "corpora",
                ]
            }
        ],
        "outs": [
            "results/wer_table.csv",
            "results/wer_table.md",
            "results/config.yaml",
        ],
    }


def validate_stage(corpora: list[str]) -> dict[str, Any]:
    out = "results/data_report/${item.corpus}"
    return {
        "foreach": {name: {"corpus": name} for name in corpora},
        "do": {
            "cmd": "python scripts/validate_data.py --config config.yaml --corpus ${item.corpus}"
            f" --manifest-dir data/manifests/${{item.corpus}} --out-dir {out}",
            "deps": ["scripts/validate_data.py", "src/sslgrid/corpora/validate.py"]
            + [f"data/manifests/${{item.corpus}}/cuts_{s}.jsonl.gz" for s in SPLITS],
            "params": [{CONFIG: ["validation", "pretrain.pools", "pretrain.amounts"]}],
            "outs": [
                f"{out}/report.md",
                f"{out}/report.json",
                f"{out}/report.png",
            ],
        },
    }


def repeats_stage() -> dict[str, Any]:
    return {
        "cmd": "python scripts/repeat_table.py --table results/wer_table.csv"
        " --out results/wer_repeats.csv",
        "deps": [
            "scripts/repeat_table.py",
            "src/sslgrid/metrics/table.py",
            "results/wer_table.csv",
        ],
        "outs": ["results/wer_repeats.csv"],
    }


def plots_stage() -> dict[str, Any]:
    return {
        "cmd": "python scripts/plot_results.py --table results/wer_table.csv"
        " --bars results/plots/wer_by_upstream.png --hours results/plots/wer_vs_hours.png",
        "deps": [
            "scripts/plot_results.py",
            "src/sslgrid/metrics/plots.py",
            "results/wer_table.csv",
        ],
        "outs": [
            "results/plots/wer_by_upstream.png",
            "results/plots/wer_vs_hours.png",
        ],
    }


def training_curves_stage(config: dict[str, Any]) -> dict[str, Any]:
    """Per-epoch curves of every cell and the training summary table, from the history files
    the training stages write."""
    pretrain = [
        f"results/pretrain/{c.path}/history.tsv"
        for c in upstream_cells(config)
        if c.pool != NO_PRETRAIN
    ]
    finetune = [
        f"results/finetune/{c.path}/{s.label}/history.tsv" for c, s in finetune_cells(config)
    ]
    return {
        "cmd": "python scripts/plot_training.py --pretrain "
        + " ".join(pretrain)
        + " --finetune "
        + " ".join(finetune)
        + " --pretrain-out results/plots/pretrain_curves.png"
        " --finetune-out results/plots/finetune_curves.png"
        " --summary-out results/training_summary.csv",
        "deps": ["scripts/plot_training.py", "src/sslgrid/metrics/curves.py", *pretrain, *finetune],
        "outs": [
            "results/plots/pretrain_curves.png",
            "results/plots/finetune_curves.png",
            "results/training_summary.csv",
        ],
    }


# Linear phone separability (workflow/rules/probe.smk): labels per test corpus, one probe per
# upstream cell and test set, the table and the plot against WER.


def probe_corpora(config: dict[str, Any]) -> list[str]:
    return sorted({t.split("/")[0] for t in config["test_sets"]})


def phone_labels_stage(config: dict[str, Any]) -> dict[str, Any]:
    out = "results/phones/${item.corpus}"
    return {
        "foreach": {c: {"corpus": c} for c in probe_corpora(config)},
        "do": {
            "cmd": "python scripts/phone_labels.py --config config.yaml --corpus ${item.corpus}"
            f" --out-dir {out} --no-progress",
            "deps": ["scripts/phone_labels.py", "src/sslgrid/probe"]
            + [f"data/features/${{item.corpus}}/fbank_{s}.pt" for s in SPLITS]
            + ["data/features/${item.corpus}/cmvn.pt"]
            + [f"data/manifests/${{item.corpus}}/cuts_{s}.jsonl.gz" for s in SPLITS],
            "params": [{CONFIG: ["seed", "probe.aligner"]}],
            "outs": [f"{out}/labels_{s}.pt" for s in SPLITS] + [f"{out}/aligner.pt"],
            "metrics": [f"{out}/report.json"],
        },
    }


def probe_file(cell: UpstreamCell, test_set: str) -> str:
    return f"results/probe/{cell.path}/{test_set}/probe.json"


def phone_probe_stage(config: dict[str, Any]) -> dict[str, Any]:
    ft = finetune_label(config)
    by_layer_weights = config["probe"]["layers"] == "finetune"
    items = {}
    for c in stage_cells(config, "probe"):
        for test_set in config["test_sets"]:
            corpus, split = test_set.split("/")
            finetuned = f"results/finetune/{c.path}/{ft}/model.pt"
            items[stage_key(c.model, c.pool, c.amount, corpus, split)] = {
                **c.__dict__,
                "corpus": corpus,
                "split": split,
                "pretrained": pretrained_flag(c),
                "finetuned": f" --finetuned {finetuned}" if by_layer_weights else "",
                "upstream": upstream_source(c, config),
                "train_cache": cache_name(c.model, "train", config),
                "cache": cache_name(c.model, split, config),
            }
    out = "results/probe/${item.model}/${item.pool}/${item.amount}/${item.corpus}/${item.split}"
    return {
        "foreach": items,
        "do": {
            "cmd": "python scripts/phone_probe.py --config config.yaml --upstream ${item.model}"
            "${item.pretrained}${item.finetuned} --corpus ${item.corpus} --split ${item.split}"
            " --labels-dir results/phones/${item.corpus} --coord model=${item.model}"
            " --coord pool=${item.pool} --coord amount=${item.amount}"
            f" --out {out}/probe.json",
            "deps": [
                "scripts/phone_probe.py",
                "src/sslgrid/probe",
                "${item.upstream}",
                # The fine-tuned model whose layer weights pick the probed layer.
                *(
                    [
                        f"results/finetune/${{item.model}}/${{item.pool}}/${{item.amount}}/{ft}/model.pt"
                    ]
                    if by_layer_weights
                    else []
                ),
                "data/features/${item.corpus}/${item.train_cache}",
                "data/features/${item.corpus}/${item.cache}",
                "data/features/${item.corpus}/cmvn.pt",
                "results/phones/${item.corpus}/labels_train.pt",
                "results/phones/${item.corpus}/labels_${item.split}.pt",
            ],
            "params": [{CONFIG: ["seed", "probe"]}],
            "metrics": [f"{out}/probe.json"],
        },
    }


def phone_probe_table_stage(config: dict[str, Any]) -> dict[str, Any]:
    probes = [probe_file(c, t) for c in stage_cells(config, "probe") for t in config["test_sets"]]
    return {
        "cmd": "python scripts/probe_table.py --probes "
        + " ".join(probes)
        + " --csv results/phone_probe_table.csv",
        "deps": ["scripts/probe_table.py", "src/sslgrid/probe/report.py", *probes],
        "outs": ["results/phone_probe_table.csv"],
    }


def phone_probe_plot_stage() -> dict[str, Any]:
    return {
        "cmd": "python scripts/plot_phone_probe.py --probe-table results/phone_probe_table.csv"
        " --wer-table results/wer_table.csv --out results/plots/phone_acc_vs_wer.png",
        "deps": [
            "scripts/plot_phone_probe.py",
            "src/sslgrid/probe/report.py",
            "results/phone_probe_table.csv",
            "results/wer_table.csv",
        ],
        "outs": ["results/plots/phone_acc_vs_wer.png"],
    }


def probe_stages(config: dict[str, Any]) -> dict[str, Any]:
    if not config["probe"]["enabled"]:
        return {}
    return {
        "phone_labels": phone_labels_stage(config),
        "phone_probe": phone_probe_stage(config),
        "phone_probe_table": phone_probe_table_stage(config),
        "phone_probe_plot": phone_probe_plot_stage(),
    }


def build_pipeline(config: dict[str, Any], written: dict[str, Any] | None = None) -> dict[str, Any]:
    """dvc.yaml's stages for the validated ``config``; ``written``: config.yaml as written,
    whose keys are the params DVC can track (None: every key of ``config``)."""
    kinds = cache_kinds(config)
    stages = {
        **corpus_stages(config),
        "validate": validate_stage(sorted(kinds)),
        "features": features_stage(sorted(kinds), "fbank"),
        "finetune": finetune_stage(config, written),
        **({"lm": lm_stage(config)} if "lm" in config["decode"]["decoders"] else {}),
        "decode": decode_stage(config),
        "score": score_stage(config),
        "wer_table": table_stage(config),
        "wer_repeats": repeats_stage(),
        "plots": plots_stage(),
        "training_curves": training_curves_stage(config),
        **probe_stages(config),
        **st_stages(config),
    }
    front = {
        k: v for k, v in stages.items() if k.startswith("corpus") or k in ("validate", "features")
    }
    wav_corpora = sorted(c for c, k in kinds.items() if "wav" in k)
    if wav_corpora:
        front["waveforms"] = features_stage(wav_corpora, "wav")
    if any(single_corpus_pool(c.pool, config) for c in upstream_cells(config)):
        front["pretrain"] = pretrain_stage(config, written)
    front.update(pooled_pretrain_stages(config, written))
    return {"stages": {**front, **{k: v for k, v in stages.items() if k not in front}}}


def render(config: dict[str, Any], written: dict[str, Any] | None = None) -> str:
    header = (
        "# Generated from config.yaml by scripts/write_dvc_yaml.py; do not edit by hand.\n"
        "# Run inside the project's environment (. .venv/bin/activate) or via `make repro`.\n"
    )
    return header + yaml.safe_dump(build_pipeline(config, written), sort_keys=False, width=1000)
