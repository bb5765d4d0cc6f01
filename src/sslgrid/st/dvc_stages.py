"""The ST stages of ``dvc.yaml``: the same jobs and outputs as workflow/rules/st.smk."""

from __future__ import annotations

from typing import Any

from sslgrid.grid import NO_PRETRAIN, cache_name, finetune_label, pretrained_flag
from sslgrid.st.cells import (
    held_out_corpora,
    st_corpus,
    st_runs,
    st_score_files,
    st_test_sets,
)

CONFIG = "config.yaml"
RUN = "results/st/${item.model}/${item.pool}/${item.amount}/${item.llm}-${item.adapter}"
DECODE = RUN + "/${item.corpus}/${item.split}/${item.task}"


def _key(*parts: str) -> str:
    return "-".join(parts).replace(".", "_")


def dutch_lm_stage(config: dict[str, Any]) -> dict[str, Any]:
    corpora = sorted({st_corpus(config), *held_out_corpora(config)})
    items = {}
    for name, llm in config["st"]["llms"].items():
        # Where the LM comes from: a base checkpoint, or the code that builds one from scratch.
        items[name] = {"llm": name, "source": llm["base"] or "src/sslgrid/st/dutch_lm.py"}
    return {
        "foreach": items,
        "do": {
            "cmd": "python scripts/build_dutch_lm.py --config config.yaml --llm ${item.llm}"
            " --out-dir results/st/llm/${item.llm} --no-progress",
            "deps": [
                "scripts/build_dutch_lm.py",
                "src/sslgrid/st/lm_text.py",
                "src/sslgrid/st/tokenizer.py",
                "${item.source}",
            ]
            + [
                f"data/manifests/{c}/cuts_{s}.jsonl.gz"
                for c in corpora
                for s in ("train", "dev", "test")
            ],
            "params": [{CONFIG: ["seed", "st.llms.${item.llm}", "st.prompts"]}],
            "outs": ["results/st/llm/${item.llm}"],
        },
    }


def _encoder_source(model: str, pool: str, amount: str, config: dict[str, Any]) -> str:
    if pool != NO_PRETRAIN:
        return f"results/pretrain/{model}/{pool}/{amount}/model.pt"
    if model in config.get("imported", {}):
        return config["imported"][model]["path"]
    return "src/sslgrid/models"


def align_llm_stage(config: dict[str, Any]) -> dict[str, Any]:
    corpus = st_corpus(config)
    items = {}
    for run in st_runs(config):
        c = run.cell
        items[_key(c.model, c.pool, c.amount, run.llm, run.adapter)] = {
            **c.__dict__,
            "llm": run.llm,
            "adapter": run.adapter,
            "pretrained": pretrained_flag(c),
            "upstream": _encoder_source(c.model, c.pool, c.amount, config),
            "train_cache": cache_name(c.model, "train", config),
            "dev_cache": cache_name(c.model, "dev", config),
        }
    return {
        "foreach": items,
        "do": {
            "cmd": "python scripts/align_llm.py --config config.yaml --upstream ${item.model}"
            "${item.pretrained} --llm-dir results/st/llm/${item.llm}"
            f" --adapter ${{item.adapter}} --out {RUN}/model.pt --no-progress",
            "deps": [
                "scripts/align_llm.py",
                "src/sslgrid/st",
                "${item.upstream}",
                "results/st/llm/${item.llm}",
                f"data/features/{corpus}/${{item.train_cache}}",
                f"data/features/{corpus}/${{item.dev_cache}}",
                f"data/features/{corpus}/cmvn.pt",
            ],
            "params": [{CONFIG: ["seed", "features", "st"]}],
            "outs": [f"{RUN}/model.pt"],
            "plots": [f"{RUN}/history.tsv"],
        },
    }


def decode_items(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    items = {}
    for run in st_runs(config):
        c = run.cell
        for test_set in st_test_sets(config):
            corpus, split = test_set.split("/")
            for task in config["st"]["tasks"]:
                key = _key(c.model, c.pool, c.amount, run.llm, run.adapter, corpus, split, task)
                items[key] = {
                    **c.__dict__,
                    "llm": run.llm,
                    "adapter": run.adapter,
                    "corpus": corpus,
                    "split": split,
                    "task": task,
                    "cache": cache_name(c.model, split, config),
                }
    return items


def translate_stage(config: dict[str, Any]) -> dict[str, Any]:
    st = config["st"]
    return {
        "foreach": decode_items(config),
        "do": {
            "cmd": f"python scripts/translate.py --model {RUN}/model.pt"
            " --llm-dir results/st/llm/${item.llm}"
            " --features data/features/${item.corpus}/${item.cache}"
            " --cuts data/manifests/${item.corpus}/cuts_${item.split}.jsonl.gz"
            f" --task ${{item.task}} --beam-size {st['beam_size']}"
            f" --max-new-tokens {st['max_new_tokens']} --batch-size {st['decode_batch_size']}"
            f" --out {DECODE}/hyps.jsonl --no-progress",
            "deps": [
                "scripts/translate.py",
                f"{RUN}/model.pt",
                "results/st/llm/${item.llm}",
                "data/features/${item.corpus}/${item.cache}",
            ],
            "params": [{CONFIG: ["st.beam_size", "st.max_new_tokens"]}],
            "outs": [f"{DECODE}/hyps.jsonl"],
        },
    }


def st_score_stage(config: dict[str, Any]) -> dict[str, Any]:
    coords = " ".join(
        f"--coord {k}=${{item.{k}}}"
        for k in ("model", "pool", "amount", "llm", "adapter", "corpus", "split")
    )
    return {
        "foreach": decode_items(config),
        "do": {
            "cmd": "python scripts/st_score.py"
            " --cuts data/manifests/${item.corpus}/cuts_${item.split}.jsonl.gz"
            f" --hyps {DECODE}/hyps.jsonl --task ${{item.task}} {coords} --seed {config['seed']}"
            f" --out {DECODE}/score.json --per-utt {DECODE}/per_utt.tsv",
            "deps": ["scripts/st_score.py", "src/sslgrid/st/scoring.py", f"{DECODE}/hyps.jsonl"],
            "outs": [f"{DECODE}/per_utt.tsv"],
            "metrics": [f"{DECODE}/score.json"],
        },
    }


def st_table_stage(config: dict[str, Any]) -> dict[str, Any]:
    scores = st_score_files(config)
    return {
        "cmd": "python scripts/st_table.py table --scores "
        + " ".join(scores)
        + " --csv results/st_table.csv",
        "deps": ["scripts/st_table.py", "src/sslgrid/st/table.py", *scores],
        "outs": ["results/st_table.csv"],
    }


def st_plots_stage(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "cmd": "python scripts/st_table.py plot --table results/st_table.csv"
        f" --wer-table results/wer_table.csv --finetune {finetune_label(config)}"
        " --out results/plots/bleu_vs_wer.png",
        "deps": [
            "scripts/st_table.py",
            "src/sslgrid/st/table.py",
            "results/st_table.csv",
            "results/wer_table.csv",
        ],
        "outs": ["results/plots/bleu_vs_wer.png"],
    }


def st_stages(config: dict[str, Any]) -> dict[str, Any]:
    """Every ST stage, or none when no encoder cell takes part (as `rule all` then asks)."""
    if not st_runs(config):
        return {}
    return {
        "dutch_lm": dutch_lm_stage(config),
        "align_llm": align_llm_stage(config),
        "translate": translate_stage(config),
        "st_score": st_score_stage(config),
        "st_table": st_table_stage(config),
        "st_plots": st_plots_stage(config),
    }
