# pretrain: one upstream per model, pool and amount of audio (nested subsets by hours).


rule pretrain:
    input:
        feats=lambda w: cache_path(w.pool, w.model, "train", config),
        cmvn="data/features/{pool}/cmvn.pt",
        cuts="data/manifests/{pool}/cuts_train.jsonl.gz",
        init=imported_input,
        # The data report checks every amount against the pool's usable audio first.
        data_report="results/data_report/{pool}/report.json",
    output:
        model="results/pretrain/{model}/{pool}/{amount}/model.pt",
        history="results/pretrain/{model}/{pool}/{amount}/history.tsv",
    params:
        settings=lambda w: json.dumps(
            [
                config["models"].get(w.model),
                config["imported"].get(w.model),
                config["pretrain"],
                config["features"],
                config["seed"],
            ],
            sort_keys=True,
        ),
        torch_threads=lambda w, threads: min(threads, MACHINE_CORES),
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
        " --threads {params.torch_threads} --log {log}"
