# pretrain: one upstream per model, pool and amount of audio (nested subsets by hours).


def pool_inputs(kind):
    """Per corpus of the pool (one, or several for a mix), one input of ``kind``."""

    def inputs(w):
        paths = {
            "feats": lambda c: cache_path(c, w.model, "train", config),
            "cmvn": lambda c: f"data/features/{c}/cmvn.pt",
            "cuts": lambda c: f"data/manifests/{c}/cuts_train.jsonl.gz",
            # The data report checks every amount against the corpus' usable audio first.
            "data_report": lambda c: f"results/data_report/{c}/report.json",
        }[kind]
        return [paths(c) for c in pool_corpora(w.pool, config)]

    return inputs


def pretrain_init(w):
    """The checkpoint pre-training starts from: another pool's model, an imported one, or none."""
    start = continued_from(w.pool, config)
    if start is not None:
        return f"results/pretrain/{w.model}/{start}/{w.amount}/model.pt"
    return imported_input(w)


rule pretrain:
    input:
        feats=pool_inputs("feats"),
        cmvn=pool_inputs("cmvn"),
        cuts=pool_inputs("cuts"),
        init=pretrain_init,
        data_report=pool_inputs("data_report"),
    output:
        model="results/pretrain/{model}/{pool}/{amount}/model.pt",
        history="results/pretrain/{model}/{pool}/{amount}/history.tsv",
    params:
        settings=lambda w: json.dumps(
            [
                config["models"].get(w.model),
                config["imported"].get(w.model),
                training_settings(config, "pretrain", w.pool),
                config["features"],
                config["seed"],
            ],
            sort_keys=True,
        ),
        torch_threads=lambda w, threads: min(threads, MACHINE_CORES),
        init=lambda w: f"--init {pretrain_init(w)}" if continued_from(w.pool, config) else "",
    threads: config["threads_per_job"]
    resources:
        # GPUs of the job; 2 or more train one process per GPU under torchrun (DDP). The SLURM
        # profile sets it (SSLGRID_SLURM_GPUS); locally: --set-resources pretrain:gpu=N.
        gpu=0,
    log:
        "logs/pretrain/{model}/{pool}/{amount}.log",
    shell:
        "exec {SCRIPTS}/launch_training.sh {resources.gpu} {PYTHON} {SCRIPTS}/pretrain.py"
        " --config {EFFECTIVE_CONFIG} --model {wildcards.model}"
        " --pool {wildcards.pool} --amount {wildcards.amount} --out {output.model}"
        " --threads {params.torch_threads} {params.init} --log {log}"
