# features: 80-dim log-mel filterbank cache per split and the training split's CMVN statistics.
# The waveform models take is the 16 kHz FLAC audio the corpus rule writes.


rule features:
    input:
        cuts=expand("data/manifests/{{corpus}}/cuts_{split}.jsonl.gz", split=["train", "dev", "test"]),
    output:
        feats=expand("data/features/{{corpus}}/fbank_{split}.pt", split=["train", "dev", "test"]),
        cmvn="data/features/{corpus}/cmvn.pt",
    params:
        settings=lambda w: settings("features"),
    threads: 1
    log:
        "logs/features/{corpus}.log",
    shell:
        "{PYTHON} {SCRIPTS}/compute_features.py --manifest-dir data/manifests/{wildcards.corpus}"
        " --out-dir data/features/{wildcards.corpus}"
        " --config {EFFECTIVE_CONFIG}"
        " --threads {threads} --log {log}"
