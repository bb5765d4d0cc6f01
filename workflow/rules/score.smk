# score: WER/CER with bootstrap intervals per cell and test set; table: all cells in one file.


def all_scores():
    scores = []
    for cell, setting in finetune_cells(config):
        for test_set in config["test_sets"]:
            for decoder in config["decode"]["decoders"]:
                scores.append(
                    f"results/decode/{cell.path}/{setting.label}/{test_set}/{decoder}/score.json"
                )
    return scores


# One job per fine-tuned cell and test set scores every decoder's hypotheses.
rule score:
    input:
        hyps=expand(
            "results/decode/{{model}}/{{pool}}/{{amount}}/{{finetune}}/"
            "{{corpus}}/{{split}}/{decoder}/hyps.jsonl",
            decoder=config["decode"]["decoders"],
        ),
        cuts="data/manifests/{corpus}/cuts_{split}.jsonl.gz",
    output:
        score=expand(
            "results/decode/{{model}}/{{pool}}/{{amount}}/{{finetune}}/"
            "{{corpus}}/{{split}}/{decoder}/score.json",
            decoder=config["decode"]["decoders"],
        ),
        per_utt=expand(
            "results/decode/{{model}}/{{pool}}/{{amount}}/{{finetune}}/"
            "{{corpus}}/{{split}}/{decoder}/per_utt.tsv",
            decoder=config["decode"]["decoders"],
        ),
    params:
        decoders=" ".join(config["decode"]["decoders"]),
        hyps=per_decoder("hyps.jsonl"),
        score=per_decoder("score.json"),
        per_utt=per_decoder("per_utt.tsv"),
    log:
        "logs/score/{model}/{pool}/{amount}/{finetune}/{corpus}/{split}.log",
    shell:
        "{PYTHON} {SCRIPTS}/score.py --cuts {input.cuts} --decoder {params.decoders}"
        " --hyps '{params.hyps}'"
        " --coord model={wildcards.model} --coord pool={wildcards.pool}"
        " --coord amount={wildcards.amount} --coord finetune={wildcards.finetune}"
        " --coord 'decoder={{decoder}}' --coord corpus={wildcards.corpus}"
        " --coord split={wildcards.split} --seed {config[seed]}"
        " --out '{params.score}' --per-utt '{params.per_utt}' 2> {log}"


rule wer_table:
    input:
        scores=all_scores(),
        data_reports=expand("results/data_report/{corpus}/report.md", corpus=sorted(cache_kinds(config))),
    output:
        csv=report("results/wer_table.csv", category="WER", caption="../report/wer_table.rst"),
        md="results/wer_table.md",
        config=report("results/config.yaml", category="Configuration", caption="../report/config.rst"),
    params:
        pools=lambda w: json.dumps(
            [
                {k: config["pretrain"][k] for k in ("pools", "mixes", "continued")},
                config["finetune"]["modes"],
                config["finetune"]["amounts"],
                config["finetune"]["repeats"],
                {c: [v.get("language"), v.get("domain")] for c, v in config["corpora"].items()},
            ],
            sort_keys=True,
        ),
    log:
        "logs/wer_table.log",
    shell:
        "{PYTHON} {SCRIPTS}/make_table.py --scores {input.scores} --data-reports {input.data_reports}"
        " --config {EFFECTIVE_CONFIG} --config-out {output.config}"
        " --csv {output.csv} --md {output.md} 2> {log}"


# Its own rule, reading the table: cells fine-tuned or pre-trained more than once
# (finetune.repeats, pretrain.repeats), with mean and spread over their repeats; a header line
# only when nothing is repeated.
rule wer_repeats:
    input:
        "results/wer_table.csv",
    output:
        report("results/wer_repeats.csv", category="WER", caption="../report/wer_repeats.rst"),
    log:
        "logs/wer_repeats.log",
    shell:
        "{PYTHON} {SCRIPTS}/repeat_table.py --table {input} --out {output} 2> {log}"


rule plots:
    input:
        "results/wer_table.csv",
    output:
        bars=report("results/plots/wer_by_upstream.png", category="WER", caption="../report/wer_plots.rst"),
        hours=report("results/plots/wer_vs_hours.png", category="WER", caption="../report/wer_plots.rst"),
    log:
        "logs/plots.log",
    shell:
        "{PYTHON} {SCRIPTS}/plot_results.py --table {input} --bars {output.bars}"
        " --hours {output.hours} 2> {log}"
