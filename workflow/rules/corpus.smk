# corpus: fetch the pinned Debian packages and write Lhotse manifests with level-based splits.


rule corpus:
    output:
        cuts=expand("data/manifests/{{corpus}}/cuts_{split}.jsonl.gz", split=["train", "dev", "test"]),
        report="data/manifests/{corpus}/report.json",
    params:
        settings=lambda w: json.dumps([config["corpora"][w.corpus], config["seed"]], sort_keys=True),
    log:
        "logs/corpus/{corpus}.log",
    shell:
        "{PYTHON} {SCRIPTS}/prepare_corpus.py --config {EFFECTIVE_CONFIG} --corpus {wildcards.corpus}"
        " --download-dir data/downloads --audio-dir data/audio/{wildcards.corpus}"
        " --manifest-dir data/manifests/{wildcards.corpus} --log {log}"
