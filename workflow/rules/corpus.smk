# corpus: one corpus of the config to Lhotse manifests with train/dev/test splits. The embedded
# corpora fetch pinned Debian packages; local corpora (CGN, Common Voice, ...) read their root.


def held_out_manifests(w):
    """Manifests whose dev/test text (synthetic) or levels (fillets) a corpus must leave out."""
    others = held_out_of(config["corpora"][w.corpus])
    return expand("data/manifests/{other}/cuts_{split}.jsonl.gz", other=others, split=["dev", "test"])


rule corpus:
    input:
        held_out=held_out_manifests,
    output:
        cuts=expand("data/manifests/{{corpus}}/cuts_{split}.jsonl.gz", split=["train", "dev", "test"]),
        report="data/manifests/{corpus}/report.json",
    params:
        settings=lambda w: json.dumps([config["corpora"][w.corpus], config["seed"]], sort_keys=True),
    threads: lambda w: 2 if config["corpora"][w.corpus]["recipe"] == "synthetic" else 1
    log:
        "logs/corpus/{corpus}.log",
    shell:
        "{PYTHON} {SCRIPTS}/prepare_corpus.py --config {EFFECTIVE_CONFIG} --corpus {wildcards.corpus}"
        " --download-dir data/downloads --audio-dir data/audio/{wildcards.corpus}"
        " --manifest-dir data/manifests/{wildcards.corpus} --workers {threads} --log {log}"
