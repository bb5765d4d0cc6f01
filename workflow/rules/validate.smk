# validate: the data report of one corpus. Every cut goes through the checks the features stage
# applies (sslgrid.corpora.validate, under config `validation`); the report lists per split the
# hours, utterances and speakers left, duration and sample-rate histograms, what was repaired or
# left out and why (here and in the recipe's report.json), and dev/test characters unseen in
# training. A pretrain.amounts entry larger than the pool's usable training audio stops it here.


rule validate:
    input:
        cuts=expand("data/manifests/{{corpus}}/cuts_{split}.jsonl.gz", split=["train", "dev", "test"]),
        report="data/manifests/{corpus}/report.json",
    output:
        md="results/data_report/{corpus}/report.md",
        json="results/data_report/{corpus}/report.json",
        png="results/data_report/{corpus}/report.png",
    params:
        settings=lambda w: json.dumps(
            [config.get("validation", {}), config["pretrain"]["pools"], config["pretrain"]["amounts"]],
            sort_keys=True,
        ),
    threads: 1
    log:
        "logs/validate/{corpus}.log",
    shell:
        "{PYTHON} {SCRIPTS}/validate_data.py --config {EFFECTIVE_CONFIG} --corpus {wildcards.corpus}"
        " --manifest-dir data/manifests/{wildcards.corpus} --out-dir results/data_report/{wildcards.corpus}"
        " --log {log}"
