# decode: transcripts of one test set by one fine-tuned recogniser; lm: the word n-gram for beam
# search, estimated on the fine-tuning corpus' training text only.


rule lm:
    input:
        cuts=expand("data/manifests/{{corpus}}/cuts_{split}.jsonl.gz", split=["train", "dev", "test"]),
        held_out=lambda w: expand(
            "data/manifests/{corpus}/cuts_{split}.jsonl.gz",
            corpus=sorted({t.split("/")[0] for t in config["test_sets"]}),
            split=["dev", "test"],
        ),
    output:
        lm="results/lm/{corpus}/lm.bin",
        words="results/lm/{corpus}/words.txt",
    params:
        settings=lambda w: settings("decode", "lm"),
    log:
        "logs/lm/{corpus}.log",
    shell:
        "{PYTHON} {SCRIPTS}/train_lm.py --config {EFFECTIVE_CONFIG} --corpus {wildcards.corpus}"
        " --out-dir results/lm/{wildcards.corpus} --log {log}"


def per_decoder(name):
    """The cell's ``name`` in every decoder's folder, as a script argument: the cell's
    wildcards filled in, ``{decoder}`` left for the script to fill with each decoder."""
    return lambda w: (
        f"results/decode/{w.model}/{w.pool}/{w.amount}/{w.finetune}/"
        f"{w.corpus}/{w.split}/{{decoder}}/{name}"
    )


def lm_inputs(w):
    """What beam search with the LM needs: the LM and the dev split it is tuned on."""
    if "lm" not in config["decode"]["decoders"]:
        return {}
    return {
        "lm": f"results/lm/{config['finetune']['corpus']}/lm.bin",
        "dev_feats": cache_path(w.corpus, w.model, "dev", config),
        "dev_cuts": f"data/manifests/{w.corpus}/cuts_dev.jsonl.gz",
    }


def lm_options(w, input):
    if "lm" not in config["decode"]["decoders"]:
        return ""
    return (
        f"--config {EFFECTIVE_CONFIG} --lm-dir {Path(input.lm).parent}"
        f" --dev-features {input.dev_feats} --dev-cuts {input.dev_cuts}"
    )


# One job per fine-tuned cell and test set runs every decoder: the model is loaded and the
# test set's emissions computed once, and greedy and beam search both read them.
rule decode:
    input:
        unpack(lm_inputs),
        model="results/finetune/{model}/{pool}/{amount}/{finetune}/model.pt",
        feats=lambda w: cache_path(w.corpus, w.model, w.split, config),
        cuts="data/manifests/{corpus}/cuts_{split}.jsonl.gz",
    output:
        hyps=expand(
            "results/decode/{{model}}/{{pool}}/{{amount}}/{{finetune}}/"
            "{{corpus}}/{{split}}/{decoder}/hyps.jsonl",
            decoder=config["decode"]["decoders"],
        ),
    params:
        torch_threads=lambda w, threads: min(threads, MACHINE_CORES),
        decoders=" ".join(config["decode"]["decoders"]),
        out=per_decoder("hyps.jsonl"),
        lm_options=lm_options,
        settings=settings("decode", "lm") if "lm" in config["decode"]["decoders"] else "",
    threads: 1
    log:
        "logs/decode/{model}/{pool}/{amount}/{finetune}/{corpus}/{split}.log",
    shell:
        "{PYTHON} {SCRIPTS}/decode.py --model {input.model} --features {input.feats}"
        " --cuts {input.cuts} --decoder {params.decoders} {params.lm_options}"
        " --threads {params.torch_threads} --out '{params.out}' --log {log}"
