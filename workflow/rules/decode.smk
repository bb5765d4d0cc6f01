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


def lm_inputs(w):
    """What beam search with the LM needs: the LM and the dev split it is tuned on."""
    if w.decoder != "lm":
        return {}
    return {
        "lm": f"results/lm/{config['finetune']['corpus']}/lm.bin",
        "dev_feats": cache_path(w.corpus, w.model, "dev", config),
        "dev_cuts": f"data/manifests/{w.corpus}/cuts_dev.jsonl.gz",
    }


def lm_options(w, input):
    if w.decoder != "lm":
        return ""
    return (
        f"--config {EFFECTIVE_CONFIG} --lm-dir {Path(input.lm).parent}"
        f" --dev-features {input.dev_feats} --dev-cuts {input.dev_cuts}"
    )


rule decode:
    input:
        unpack(lm_inputs),
        model="results/finetune/{model}/{pool}/{amount}/{finetune}/model.pt",
        feats=lambda w: cache_path(w.corpus, w.model, w.split, config),
        cuts="data/manifests/{corpus}/cuts_{split}.jsonl.gz",
    output:
        hyps="results/decode/{model}/{pool}/{amount}/{finetune}/{corpus}/{split}/{decoder}/hyps.jsonl",
    params:
        torch_threads=lambda w, threads: min(threads, MACHINE_CORES),
        lm_options=lm_options,
        settings=lambda w: settings("decode", "lm") if w.decoder == "lm" else "",
    threads: 1
    log:
        "logs/decode/{model}/{pool}/{amount}/{finetune}/{corpus}/{split}/{decoder}.log",
    shell:
        "{PYTHON} {SCRIPTS}/decode.py --model {input.model} --features {input.feats}"
        " --cuts {input.cuts} --decoder {wildcards.decoder} {params.lm_options}"
        " --threads {params.torch_threads} --out {output.hyps} --log {log}"
