# decode: transcripts of one test set by one fine-tuned recogniser.


rule decode:
    input:
        model="results/finetune/{model}/{pool}/{amount}/{finetune}/model.pt",
        feats=lambda w: cache_path(w.corpus, w.model, w.split, config),
        cuts="data/manifests/{corpus}/cuts_{split}.jsonl.gz",
    output:
        hyps="results/decode/{model}/{pool}/{amount}/{finetune}/{corpus}/{split}/{decoder}/hyps.jsonl",
    params:
        torch_threads=lambda w, threads: min(threads, MACHINE_CORES),
    threads: 1
    log:
        "logs/decode/{model}/{pool}/{amount}/{finetune}/{corpus}/{split}/{decoder}.log",
    shell:
        "{PYTHON} {SCRIPTS}/decode.py --model {input.model} --features {input.feats}"
        " --cuts {input.cuts} --decoder {wildcards.decoder} --threads {params.torch_threads}"
        " --out {output.hyps} --log {log}"
