# probe: linear phone separability. Phone labels per 10 ms frame for each test corpus (espeak-ng
# phonemes force-aligned by a CTC phone recogniser), a linear probe per upstream and test set on
# frozen layers, one table, and a plot of phone accuracy against WER.


def probe_files():
    """One probe result per upstream cell of probe.cells and test set."""
    return [
        f"results/probe/{cell.path}/{test_set}/probe.json"
        for cell in stage_cells(config, "probe")
        for test_set in config["test_sets"]
    ]


def probe_targets():
    """What `rule all` builds for the probe (nothing when probe.enabled is false)."""
    if not config["probe"]["enabled"]:
        return []
    return ["results/phone_probe_table.csv", "results/plots/phone_acc_vs_wer.png"]


def probe_finetuned(w):
    """The fine-tuned recogniser whose layer weights pick the layer (probe.layers: finetune)."""
    if config["probe"]["layers"] != "finetune":
        return []
    return f"results/finetune/{w.model}/{w.pool}/{w.amount}/{finetune_label(config)}/model.pt"


def probe_caches(w):
    return [cache_path(w.corpus, w.model, s, config) for s in sorted({"train", w.split})]


rule phone_labels:
    input:
        feats=expand("data/features/{{corpus}}/fbank_{split}.pt", split=["train", "dev", "test"]),
        cmvn="data/features/{corpus}/cmvn.pt",
        cuts=expand("data/manifests/{{corpus}}/cuts_{split}.jsonl.gz", split=["train", "dev", "test"]),
    output:
        labels=expand("results/phones/{{corpus}}/labels_{split}.pt", split=["train", "dev", "test"]),
        aligner="results/phones/{corpus}/aligner.pt",
        report="results/phones/{corpus}/report.json",
    params:
        settings=lambda w: json.dumps([config["probe"]["aligner"], config["seed"]], sort_keys=True),
        torch_threads=lambda w, threads: min(threads, MACHINE_CORES),
    threads: config["threads_per_job"]
    log:
        "logs/phone_labels/{corpus}.log",
    shell:
        "{PYTHON} {SCRIPTS}/phone_labels.py --config {EFFECTIVE_CONFIG} --corpus {wildcards.corpus}"
        " --out-dir results/phones/{wildcards.corpus} --threads {params.torch_threads}"
        " --no-progress --log {log}"


rule phone_probe:
    input:
        pretrained=pretrained_input,
        imported=imported_input,
        finetuned=probe_finetuned,
        caches=probe_caches,
        cmvn="data/features/{corpus}/cmvn.pt",
        labels=lambda w: sorted({f"results/phones/{w.corpus}/labels_{s}.pt" for s in ("train", w.split)}),
    output:
        "results/probe/{model}/{pool}/{amount}/{corpus}/{split}/probe.json",
    params:
        settings=lambda w: json.dumps(
            [
                {k: v for k, v in config["probe"].items() if k not in ("aligner", "enabled")},
                config["seed"],
                config["imported"].get(w.model),
            ],
            sort_keys=True,
        ),
        pretrained=lambda w, input: f"--pretrained {input.pretrained}" if input.pretrained else "",
        finetuned=lambda w, input: f"--finetuned {input.finetuned}" if input.finetuned else "",
        torch_threads=lambda w, threads: min(threads, MACHINE_CORES),
    threads: config["threads_per_job"]
    log:
        "logs/phone_probe/{model}/{pool}/{amount}/{corpus}/{split}.log",
    shell:
        "{PYTHON} {SCRIPTS}/phone_probe.py --config {EFFECTIVE_CONFIG} --upstream {wildcards.model}"
        " {params.pretrained} {params.finetuned} --corpus {wildcards.corpus} --split {wildcards.split}"
        " --labels-dir results/phones/{wildcards.corpus}"
        " --coord model={wildcards.model} --coord pool={wildcards.pool}"
        " --coord amount={wildcards.amount} --out {output} --threads {params.torch_threads}"
        " --log {log}"


rule phone_probe_table:
    input:
        probe_files(),
    output:
        report("results/phone_probe_table.csv", category="Phone probe"),
    log:
        "logs/phone_probe_table.log",
    shell:
        "{PYTHON} {SCRIPTS}/probe_table.py --probes {input} --csv {output} 2> {log}"


rule phone_probe_plot:
    input:
        probes="results/phone_probe_table.csv",
        wer="results/wer_table.csv",
    output:
        report("results/plots/phone_acc_vs_wer.png", category="Phone probe"),
    log:
        "logs/phone_probe_plot.log",
    shell:
        "{PYTHON} {SCRIPTS}/plot_phone_probe.py --probe-table {input.probes}"
        " --wer-table {input.wer} --out {output} 2> {log}"
