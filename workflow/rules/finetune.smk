# finetune: CTC recogniser on a frozen upstream; the fbank baseline has no pre-trained input.


def pretrained_input(w):
    if w.model == "fbank":
        return []
    if w.pool == NO_PRETRAIN:  # an imported checkpoint as it is
        return []
    return f"results/pretrain/{w.model}/{w.pool}/{w.amount}/model.pt"



def finetune_corpus_inputs(w):
    corpus = config["finetune"]["corpus"]
    return [
        cache_path(corpus, w.model, "train", config),
        cache_path(corpus, w.model, "dev", config),
        f"data/features/{corpus}/cmvn.pt",
    ] + expand("data/manifests/{corpus}/cuts_{split}.jsonl.gz", corpus=corpus, split=["train", "dev"])


rule finetune:
    input:
        pretrained=pretrained_input,
        imported=imported_input,
        data=finetune_corpus_inputs,
    output:
        model="results/finetune/{model}/{pool}/{amount}/{finetune}/model.pt",
        history="results/finetune/{model}/{pool}/{amount}/{finetune}/history.tsv",
    params:
        settings=lambda w: json.dumps(
            [
                training_settings(config, "finetune"),
                config["features"],
                config["seed"],
                config["imported"].get(w.model),
            ],
            sort_keys=True,
        ),
        pretrained=lambda w, input: f"--pretrained {input.pretrained}" if input.pretrained else "",
        setting=lambda w: finetune_flags(finetune_setting(config, w.finetune)),
        torch_threads=lambda w, threads: min(threads, MACHINE_CORES),
    threads: config["threads_per_job"]
    resources:
        # GPUs of the job; 2 or more train one process per GPU under torchrun (DDP). The SLURM
        # profile sets it (SSLGRID_SLURM_GPUS); locally: --set-resources pretrain:gpu=N.
        gpu=0,
    log:
        "logs/finetune/{model}/{pool}/{amount}/{finetune}.log",
    shell:
        "exec {SCRIPTS}/launch_training.sh {resources.gpu} {PYTHON} {SCRIPTS}/finetune.py"
        " --config {EFFECTIVE_CONFIG} --upstream {wildcards.model}"
        " {params.pretrained} {params.setting} --out {output.model}"
        " --threads {params.torch_threads} --log {log}"
