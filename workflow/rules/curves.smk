# training_curves: the per-epoch pre-training loss and fine-tuning dev CER of every cell, one
# figure each, from the history.tsv files beside the models (cells in grid order, so a pool
# has the same colour in both), and one summary row per training (epochs, time, losses,
# selected epoch).


def history_files(stage):
    """The history.tsv of every pre-trained cell (``pretrain``) or fine-tuning (``finetune``)."""
    if stage == "pretrain":
        cells = [c for c in upstream_cells(config) if c.pool != NO_PRETRAIN]
        return [f"results/pretrain/{c.path}/history.tsv" for c in cells]
    return [f"results/finetune/{c.path}/{s.label}/history.tsv" for c, s in finetune_cells(config)]


rule training_curves:
    input:
        pretrain=history_files("pretrain"),
        finetune=history_files("finetune"),
    output:
        pretrain=report("results/plots/pretrain_curves.png", category="Training", caption="../report/training_curves.rst"),
        finetune=report("results/plots/finetune_curves.png", category="Training", caption="../report/training_curves.rst"),
        summary=report("results/training_summary.csv", category="Training", caption="../report/training_summary.rst"),
    log:
        "logs/training_curves.log",
    shell:
        "{PYTHON} {SCRIPTS}/plot_training.py --pretrain {input.pretrain}"
        " --finetune {input.finetune} --pretrain-out {output.pretrain}"
        " --finetune-out {output.finetune} --summary-out {output.summary} 2> {log}"
