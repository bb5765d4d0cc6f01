# sslgrid: self-supervised speech pre-training compared on Flemish Dutch.
# `snakemake --cores 8 results/wer_table.csv` builds the whole grid described by config.yaml.
import json
import os
import sys
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from sslgrid.config import validate_config  # noqa: E402
from sslgrid.grid import (  # noqa: E402
    NO_PRETRAIN,
    cache_kinds,
    cache_path,
    continued_from,
    finetune_cells,
    finetune_flags,
    finetune_label,
    finetune_setting,
    held_out_of,
    pool_corpora,
    stage_cells,
    training_settings,
    upstream_cells,
)


# The default grid sits beside this file; --configfile/--config layer on top of it.
configfile: os.path.join(workflow.basedir, "config.yaml")


_validated = validate_config(dict(config), source="config (config.yaml + --configfile/--config)")
config.clear()
config.update(_validated)

# Local corpora and imported checkpoints must exist before anything is planned on them.
from sslgrid.corpora.validate import check_config_paths  # noqa: E402

_missing = check_config_paths(config, corpora=sorted(cache_kinds(config)))
if _missing:
    raise WorkflowError("paths in the config that do not exist:\n  " + "\n  ".join(_missing))

# The scripts read the effective configuration (config files plus --config overrides) from one
# file; rules also list their own settings as params, so a change reruns only what it touches.
EFFECTIVE_CONFIG = Path(".snakemake/sslgrid/config.yaml")
EFFECTIVE_CONFIG.parent.mkdir(parents=True, exist_ok=True)
EFFECTIVE_CONFIG.write_text(yaml.safe_dump(config, sort_keys=True), encoding="utf-8")

PYTHON = sys.executable
SCRIPTS = Path(workflow.basedir) / "scripts"
# Torch threads per job: never more than the machine has, whatever --cores says.
MACHINE_CORES = os.cpu_count() or 1


def settings(*keys):
    """JSON of the config sections a rule depends on (a rerun trigger)."""
    node = config
    for key in keys:
        node = node[key]
    return json.dumps(node, sort_keys=True)


def imported_input(w):
    """The off-the-shelf checkpoint behind an imported upstream (its path must exist)."""
    return config["imported"][w.model]["path"] if w.model in config["imported"] else []


wildcard_constraints:
    corpus=r"[a-z0-9-]+",
    pool=r"[a-z0-9-]+",
    model=r"[a-z0-9]+",
    # "-r<r>": pre-training repeat r > 0 (pretrain.repeats)
    amount=r"none|(?:all|[0-9.]+h)(?:-r[1-9][0-9]*)?",
    finetune=r"[a-z]+-[a-z0-9.-]+",
    split=r"train|dev|test",


report: "workflow/report/workflow.rst"


include: "workflow/rules/corpus.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/decode.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/st.smk"
include: "workflow/rules/curves.smk"


rule all:
    input:
        "results/wer_table.csv",
        "results/wer_table.md",
        "results/wer_repeats.csv",
        "results/plots/wer_by_upstream.png",
        "results/plots/wer_vs_hours.png",
        "results/plots/pretrain_curves.png",
        "results/plots/finetune_curves.png",
        "results/training_summary.csv",
        probe_targets(),
        st_targets(),
    default_target: True
