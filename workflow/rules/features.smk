# features: the input caches upstreams read, per corpus and split. `fbank`: 80-dim log-mel
# filterbanks and the training split's CMVN statistics; `wav`: the 16 kHz waveform as 16-bit PCM
# (only built when a waveform model is in the grid).


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
        "{PYTHON} {SCRIPTS}/compute_features.py --kind fbank"
        " --manifest-dir data/manifests/{wildcards.corpus} --out-dir data/features/{wildcards.corpus}"
        " --config {EFFECTIVE_CONFIG} --threads {threads} --log {log}"


rule waveforms:
    input:
        cuts=expand("data/manifests/{{corpus}}/cuts_{split}.jsonl.gz", split=["train", "dev", "test"]),
    output:
        wavs=expand("data/features/{{corpus}}/wav_{split}.pt", split=["train", "dev", "test"]),
    threads: 1
    log:
        "logs/waveforms/{corpus}.log",
    shell:
        "{PYTHON} {SCRIPTS}/compute_features.py --kind wav"
        " --manifest-dir data/manifests/{wildcards.corpus} --out-dir data/features/{wildcards.corpus}"
        " --config {EFFECTIVE_CONFIG} --threads {threads} --log {log}"
