"""The speech-translation part of the grid as paths; importable without torch (the Snakefile
and ``dvc.yaml`` generator plan with it).

A run is one encoder cell of the ASR grid (model x pool x amount), one causal LM of
``st.llms`` and one adapter mode (``frozen``: only the layer weights and projector train;
``lora``: LoRA adapters in the LM train too). Each run is decoded for every task and test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sslgrid.grid import UpstreamCell, stage_cells

TASKS = ("translate", "transcribe")
ADAPTERS = ("frozen", "lora")
SPEECH_SLOT = "{speech}"


@dataclass(frozen=True)
class StRun:
    """One aligned speech LLM: an encoder cell, an LM name and an adapter mode."""

    cell: UpstreamCell
    llm: str
    adapter: str

    @property
    def path(self) -> str:
        return f"{self.cell.path}/{self.llm}-{self.adapter}"


def st_corpus(config: dict[str, Any]) -> str:
    """The corpus whose training split aligns the LM (its dev split selects the epoch)."""
    return config["st"].get("corpus") or config["finetune"]["corpus"]


def st_test_sets(config: dict[str, Any]) -> list[str]:
    """``corpus/split`` test sets of the stage: ``st.test_sets``, or the grid's."""
    return list(config["st"].get("test_sets") or config["test_sets"])


def held_out_corpora(config: dict[str, Any]) -> list[str]:
    """Corpora whose dev and test sentences no LM text may contain."""
    return sorted({st_corpus(config), *(t.split("/")[0] for t in st_test_sets(config))})


def st_cells(config: dict[str, Any]) -> list[UpstreamCell]:
    """The ASR grid's encoder cells (``st.cells``: all, or the headline ones) whose model is in
    ``st.encoders``.

    Only upstreams the grid fine-tunes take part, so that every BLEU has the encoder's WER
    beside it; a known model the grid does not fine-tune is left out
    (``st_encoders_left_out``). A name that is no upstream at all raises ``ValueError``.
    """
    known = {"fbank", *config["models"], *config.get("imported", {})}
    unknown = [m for m in config["st"]["encoders"] if m not in known]
    if unknown:
        raise ValueError(
            f"st.encoders: {unknown} are not upstreams; expected fbank, a model under models "
            f"or an imported checkpoint: {sorted(known)}"
        )
    wanted = set(config["st"]["encoders"])
    return [cell for cell in stage_cells(config, "st") if cell.model in wanted]


def st_encoders_left_out(config: dict[str, Any]) -> list[str]:
    """Names in ``st.encoders`` that are not in ``finetune.upstreams`` (so get no ST run)."""
    return [m for m in config["st"]["encoders"] if m not in config["finetune"]["upstreams"]]


def st_runs(config: dict[str, Any]) -> list[StRun]:
    return [
        StRun(cell, llm, adapter)
        for cell in st_cells(config)
        for llm in config["st"]["llms"]
        for adapter in config["st"]["adapters"]
    ]


def llm_dir(name: str) -> str:
    """The LM tuned on Standard Dutch, as a Hugging Face directory."""
    return f"results/st/llm/{name}"


def decode_dir(run: StRun, test_set: str, task: str) -> str:
    return f"results/st/{run.path}/{test_set}/{task}"


def st_score_files(config: dict[str, Any]) -> list[str]:
    """Every score file the ST table collects, in table order."""
    return [
        f"{decode_dir(run, test_set, task)}/score.json"
        for run in st_runs(config)
        for test_set in st_test_sets(config)
        for task in config["st"]["tasks"]
    ]


def split_prompt(template: str, where: str = "prompt") -> tuple[str, str]:
    """A prompt template's text before and after its one ``{speech}`` slot."""
    if template.count(SPEECH_SLOT) != 1:
        raise ValueError(
            f"{where}: expected exactly one {SPEECH_SLOT} in the template, got {template!r}"
        )
    before, _, after = template.partition(SPEECH_SLOT)
    return before, after
