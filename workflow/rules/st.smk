# st: speech-to-text translation (sslgrid.st). dutch_lm: the causal LM tuned on Standard Dutch
# (built from scratch unless st.llms.<llm>.base names a local checkpoint); align_llm: a frozen
# encoder cell aligned to it (layer weights, projector, LoRA); translate: beam search on a test
# set for one task; st_score: BLEU/chrF or WER/CER with bootstrap intervals; st_table and
# st_plots: results/st_table.csv and BLEU against the encoder's ASR WER.

from sslgrid.st.cells import held_out_corpora, st_corpus, st_runs, st_score_files  # noqa: E402


def st_targets():
    """What `rule all` asks of the ST stage: nothing when no encoder cell takes part."""
    if not st_runs(config):
        return []
    return ["results/st_table.csv", "results/plots/bleu_vs_wer.png"]


def st_text_manifests(w):
    """The manifests the LM text reads (train) or must keep out (dev/test)."""
    corpora = sorted({st_corpus(config), *held_out_corpora(config)})
    return expand("data/manifests/{c}/cuts_{s}.jsonl.gz", c=corpora, s=["train", "dev", "test"])


def st_llm_settings(w):
    return json.dumps(
        [config["st"]["llms"][w.llm], config["st"]["prompts"]["translate"], config["seed"],
         st_corpus(config), held_out_corpora(config)],
        sort_keys=True,
    )


rule dutch_lm:
    input:
        cuts=st_text_manifests,
        base=lambda w: config["st"]["llms"][w.llm]["base"] or [],
    output:
        directory("results/st/llm/{llm}"),
    params:
        settings=st_llm_settings,
        torch_threads=lambda w, threads: min(threads, MACHINE_CORES),
    wildcard_constraints:
        llm=r"[a-z0-9][a-z0-9-]*",
    threads: config["threads_per_job"]
    log:
        "logs/st/dutch_lm/{llm}.log",
    shell:
        "{PYTHON} {SCRIPTS}/build_dutch_lm.py --config {EFFECTIVE_CONFIG} --llm {wildcards.llm}"
        " --out-dir {output} --threads {params.torch_threads} --no-progress --log {log}"


def st_training_data(w):
    corpus = st_corpus(config)
    return [
        cache_path(corpus, w.model, "train", config),
        cache_path(corpus, w.model, "dev", config),
        f"data/features/{corpus}/cmvn.pt",
    ] + expand("data/manifests/{c}/cuts_{s}.jsonl.gz", c=corpus, s=["train", "dev"])


ALIGN_KEYS = ("tasks", "prompts", "lora", "projector", "epochs", "batch_seconds", "learning_rate",
              "max_utterance_seconds")


rule align_llm:
    input:
        pretrained=pretrained_input,
        imported=imported_input,
        llm="results/st/llm/{llm}",
        data=st_training_data,
    output:
        model="results/st/{model}/{pool}/{amount}/{llm}-{adapter}/model.pt",
        history="results/st/{model}/{pool}/{amount}/{llm}-{adapter}/history.tsv",
    params:
        # What shapes the trained model (not which other cells, LMs or test sets there are).
        settings=lambda w: json.dumps(
            [{k: v for k, v in config["st"].items() if k in ALIGN_KEYS}, st_corpus(config),
             config["features"], config["seed"], config["imported"].get(w.model)],
            sort_keys=True,
        ),
        pretrained=lambda w, input: f"--pretrained {input.pretrained}" if input.pretrained else "",
        torch_threads=lambda w, threads: min(threads, MACHINE_CORES),
    wildcard_constraints:
        llm=r"[a-z0-9][a-z0-9-]*",
        adapter=r"frozen|lora",
    threads: config["threads_per_job"]
    log:
        "logs/st/align_llm/{model}/{pool}/{amount}/{llm}-{adapter}.log",
    shell:
        "{PYTHON} {SCRIPTS}/align_llm.py --config {EFFECTIVE_CONFIG} --upstream {wildcards.model}"
        " {params.pretrained} --llm-dir {input.llm} --adapter {wildcards.adapter}"
        " --out {output.model} --threads {params.torch_threads} --no-progress --log {log}"


ST_CELL = "results/st/{model}/{pool}/{amount}/{llm}-{adapter}"
ST_DECODE = ST_CELL + "/{corpus}/{split}/{task}"


rule translate:
    input:
        model=ST_CELL + "/model.pt",
        llm="results/st/llm/{llm}",
        feats=lambda w: cache_path(w.corpus, w.model, w.split, config),
        cuts="data/manifests/{corpus}/cuts_{split}.jsonl.gz",
    output:
        hyps=ST_DECODE + "/hyps.jsonl",
    params:
        beam=config["st"]["beam_size"],
        max_new=config["st"]["max_new_tokens"],
        batch=config["st"]["decode_batch_size"],
        torch_threads=lambda w, threads: min(threads, MACHINE_CORES),
    wildcard_constraints:
        llm=r"[a-z0-9][a-z0-9-]*",
        adapter=r"frozen|lora",
        task=r"translate|transcribe",
    threads: 1
    log:
        "logs/st/translate/{model}/{pool}/{amount}/{llm}-{adapter}/{corpus}/{split}/{task}.log",
    shell:
        "{PYTHON} {SCRIPTS}/translate.py --model {input.model} --llm-dir {input.llm}"
        " --features {input.feats} --cuts {input.cuts} --task {wildcards.task}"
        " --beam-size {params.beam} --max-new-tokens {params.max_new} --batch-size {params.batch}"
        " --out {output.hyps} --threads {params.torch_threads} --no-progress --log {log}"


rule st_score:
    input:
        hyps=ST_DECODE + "/hyps.jsonl",
        cuts="data/manifests/{corpus}/cuts_{split}.jsonl.gz",
    output:
        score=ST_DECODE + "/score.json",
        per_utt=ST_DECODE + "/per_utt.tsv",
    wildcard_constraints:
        llm=r"[a-z0-9][a-z0-9-]*",
        adapter=r"frozen|lora",
        task=r"translate|transcribe",
    log:
        "logs/st/score/{model}/{pool}/{amount}/{llm}-{adapter}/{corpus}/{split}/{task}.log",
    shell:
        "{PYTHON} {SCRIPTS}/st_score.py --cuts {input.cuts} --hyps {input.hyps}"
        " --task {wildcards.task} --coord model={wildcards.model} --coord pool={wildcards.pool}"
        " --coord amount={wildcards.amount} --coord llm={wildcards.llm}"
        " --coord adapter={wildcards.adapter} --coord corpus={wildcards.corpus}"
        " --coord split={wildcards.split} --seed {config[seed]}"
        " --out {output.score} --per-utt {output.per_utt} 2> {log}"


rule st_table:
    input:
        scores=st_score_files(config),
    output:
        csv=report("results/st_table.csv", category="Speech translation"),
    log:
        "logs/st/st_table.log",
    shell:
        "{PYTHON} {SCRIPTS}/st_table.py table --scores {input.scores} --csv {output.csv} 2> {log}"


rule st_plots:
    input:
        st="results/st_table.csv",
        wer="results/wer_table.csv",
    output:
        bleu=report("results/plots/bleu_vs_wer.png", category="Speech translation"),
    params:
        finetune=finetune_label(config),
    log:
        "logs/st/st_plots.log",
    shell:
        "{PYTHON} {SCRIPTS}/st_table.py plot --table {input.st} --wer-table {input.wer}"
        " --finetune {params.finetune} --out {output.bleu} 2> {log}"
