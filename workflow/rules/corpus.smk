# corpus: fetch the pinned Debian packages and write Lhotse manifests with level-based splits.


rule corpus:
    output:
        cuts=expand("data/manifests/{{corpus}}/cuts_{split}.jsonl.gz", split=["train", "dev", "test"]),
        report="data/manifests/{corpus}/report.json",
    params:
        settings=lambda w: settings("corpora", w.corpus),
        packages=lambda w: shlex.quote(json.dumps(config["corpora"][w.corpus]["packages"])),
        corpus=lambda w: config["corpora"][w.corpus],
        max_clips=lambda w: (
            f"--max-clips {config['corpora'][w.corpus]['max_clips']}"
            if config["corpora"][w.corpus]["max_clips"]
            else ""
        ),
    log:
        "logs/corpus/{corpus}.log",
    shell:
        "{PYTHON} scripts/prepare_corpus.py --corpus {wildcards.corpus}"
        " --download-dir data/downloads --audio-dir data/audio/{wildcards.corpus}"
        " --manifest-dir data/manifests/{wildcards.corpus} --packages-json {params.packages}"
        " --language {params.corpus[language]} --region {params.corpus[region]}"
        " --domain {params.corpus[domain]} --dev-fraction {params.corpus[dev_fraction]}"
        " --test-fraction {params.corpus[test_fraction]} --seed {config[seed]}"
        " {params.max_clips} --log {log}"
