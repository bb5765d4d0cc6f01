"""The causal LM "tuned on Standard Dutch" that the speech encoder is aligned to.

With ``base`` a local Hugging Face directory (a GPT-2 Dutch or GEITje checkpoint), the LM is
loaded from it and its training continues on Dutch text for ``dutch.steps`` updates. Without
one (the embedded default, which cannot download a checkpoint) a small LM is built from
scratch: a byte-level BPE tokenizer and a GPT-2 or Llama network of a few million parameters
are trained on Dutch and English text (``pretrain``; with ``parallel``, also Dutch sentences
followed by their English translation in the translation prompt), then tuned on Dutch alone
(``dutch``). The text comes from ``sslgrid.st.lm_text`` and never holds a dev/test sentence.

Training is a fixed number of updates on batches drawn at random (seeded by step), and
checkpoints every ``checkpoint_every`` updates, so a killed job resumes where it stopped and
ends with the same weights.
"""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from sslgrid.st.cells import split_prompt
from sslgrid.st.lm_text import LmText
from sslgrid.st.tokenizer import encode_line, ensure_pad_token, train_bpe_tokenizer
from sslgrid.train.checkpoint import atomic_save
from sslgrid.train.loop import new_train_state, optimise

log = logging.getLogger(__name__)

ARCHITECTURES = ("gpt2", "llama")


@dataclass(frozen=True)
class PhaseSettings:
    """One training phase: ``steps`` updates of ``batch_size`` lines at ``learning_rate``."""

    steps: int
    batch_size: int
    learning_rate: float


def new_causal_lm(
    architecture: str, size: Mapping[str, Any], tokenizer: PreTrainedTokenizerBase
) -> PreTrainedModel:
    """A randomly initialised causal LM for ``tokenizer``'s vocabulary.

    ``size``: ``hidden_size``, ``num_layers``, ``num_heads``, ``max_positions`` and optionally
    ``intermediate_size`` (default 4 x hidden) and ``dropout`` (default 0.1). Input and output
    embeddings are tied, as in GPT-2, which halves the parameters of a small-vocabulary LM.
    """
    hidden, layers, heads = size["hidden_size"], size["num_layers"], size["num_heads"]
    common = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": True,
    }
    dropout = size.get("dropout", 0.1)
    intermediate = size.get("intermediate_size") or 4 * hidden
    if architecture == "gpt2":
        config = GPT2Config(
            n_positions=size["max_positions"],
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_inner=intermediate,
            resid_pdrop=dropout,
            embd_pdrop=dropout,
            attn_pdrop=dropout,
            **common,
        )
        return GPT2LMHeadModel(config)
    if architecture == "llama":
        config = LlamaConfig(
            hidden_size=hidden,
            intermediate_size=intermediate,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=size["max_positions"],
            attention_dropout=dropout,
            **common,
        )
        return LlamaForCausalLM(config)
    raise ValueError(f"LM architecture {architecture!r}; expected one of {list(ARCHITECTURES)}")


def load_causal_lm(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a local directory; nothing is downloaded."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: not a Hugging Face model directory (no config.json); the LM must be a "
            "local directory written by save_pretrained"
        )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    ensure_pad_token(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    return model, tokenizer


def max_positions(model: PreTrainedModel) -> int | None:
    """The longest input the LM's position embeddings allow (None: no hard limit known)."""
    config = model.config
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)


def parallel_lines(pairs: Sequence[tuple[str, str]], prompt: str) -> list[str]:
    """Dutch sentences in the translation prompt, followed by their English translation.

    The prompt's speech slot holds the Dutch text, so the LM learns from text alone what the
    aligned speech will later ask of it.
    """
    before, after = split_prompt(prompt, "st.prompts.translate")
    return [f"{before}{dutch}{after}{english}" for dutch, english in pairs]


def pretrain_lines(text: LmText, translate_prompt: str | None) -> list[str]:
    """The from-scratch phase's text: Dutch, English and, with a prompt, parallel lines."""
    lines = [*text.dutch, *text.english]
    if translate_prompt is not None:
        lines += parallel_lines(text.pairs, translate_prompt)
    return lines


def pack_lines(lines: Sequence[Sequence[int]], block_size: int) -> torch.Tensor:
    """Lines (each ``<bos> ... <eos>``) concatenated and cut into (N, block_size) blocks.

    Packing wastes no compute on padding, which matters on a CPU; the last partial block is
    dropped unless it is the only one (then it is padded with its own start, never empty).
    """
    stream = [token for line in lines for token in line]
    if not stream:
        raise ValueError("no tokens to pack")
    if len(stream) < block_size:
        stream = (stream * (block_size // len(stream) + 1))[:block_size]
    n = len(stream) // block_size
    return torch.tensor(stream[: n * block_size], dtype=torch.long).view(n, block_size)


def block_batch(blocks: torch.Tensor, batch_size: int, seed: str) -> torch.Tensor:
    """``batch_size`` blocks drawn with ``seed`` (so step k always trains on the same ones)."""
    rng = random.Random(seed)
    return blocks[[rng.randrange(len(blocks)) for _ in range(batch_size)]]


@torch.no_grad()
def mean_loss(model: PreTrainedModel, lines: Sequence[Sequence[int]], pad_id: int) -> float:
    """Token-level cross-entropy of ``lines`` (held-out text: how well the LM knows it)."""
    model.eval()
    device = model.device
    total, count = 0.0, 0
    for start in range(0, len(lines), 32):
        chunk = lines[start : start + 32]
        width = max(len(x) for x in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, line in enumerate(chunk):
            ids[row, : len(line)] = torch.tensor(line)
            mask[row, : len(line)] = 1
        ids, mask = ids.to(device), mask.to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
        )
        total += float(loss)
        count += int((targets != -100).sum())
    return total / max(count, 1)


def train_phase(
    model: PreTrainedModel,
    blocks: torch.Tensor,
    phase: PhaseSettings,
    name: str,
    checkpoint: Path,
    run_config: dict[str, Any],
    seed: int,
    checkpoint_every: int = 100,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> list[dict[str, Any]]:
    """``phase.steps`` updates of ``model`` on packed ``blocks``; resumes from ``checkpoint``.

    A checkpoint written with a different ``run_config`` (the settings changed) is ignored.
    Returns the loss every ``checkpoint_every`` updates and at the end.
    """
    if phase.steps == 0:
        return []
    state = new_train_state(
        model,
        run_config,
        steps_per_epoch=phase.steps,
        epochs=1,
        learning_rate=phase.learning_rate,
        weight_decay=0.01,
        warmup_steps=max(1, phase.steps // 10),
        seed=seed,
    )
    if checkpoint.is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if saved["config"] == run_config:
            state.restore(saved)
            log.info("LM phase %s resumes at update %d from %s", name, state.step, checkpoint)
    model.train()
    running, history = [], list(state.history)
    bar = tqdm(
        range(state.step, phase.steps), desc=f"LM {name}", disable=not progress, mininterval=5
    )
    for step in bar:
        ids = block_batch(blocks, phase.batch_size, f"{seed}:{name}:{step}").to(model.device)
        loss = model(input_ids=ids, labels=ids).loss
        optimise(state, loss)
        running.append(loss.item())
        if on_step is not None:
            on_step(state.step, running[-1])
        if state.step % checkpoint_every == 0 or state.step == phase.steps:
            history.append({"phase": name, "step": state.step, "loss": sum(running) / len(running)})
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}", refresh=False)
            running = []
            state.history = history
            atomic_save(state.to_checkpoint(), checkpoint)
    return history


def build_lm(
    settings: Mapping[str, Any],
    text: LmText,
    translate_prompt: str,
    checkpoint_dir: Path,
    seed: int,
    dev_dutch: Sequence[str] = (),
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any], dict[str, list[str]]]:
    """The LM of one ``st.llms`` entry tuned on Dutch, a report, and each phase's exact text.

    ``dev_dutch`` (dev transcripts, never trained on) measures the LM's Dutch before and
    after tuning, as cross-entropy per token.
    """
    torch.manual_seed(seed)
    block_size = settings["block_size"]
    report: dict[str, Any] = {"base": settings["base"]}
    if settings["base"]:
        model, tokenizer = load_causal_lm(settings["base"])
        phases = []
    else:
        parallel = translate_prompt if settings["text"]["parallel"] else None
        scratch_text = pretrain_lines(text, parallel)
        tokenizer = train_bpe_tokenizer(scratch_text, settings["vocab_size"])
        model = new_causal_lm(settings["architecture"], settings["size"], tokenizer)
        phases = [("pretrain", scratch_text, PhaseSettings(**settings["pretrain"]))]
        report["pretrain_lines"] = len(scratch_text)
    phases.append(("dutch", text.dutch, PhaseSettings(**settings["dutch"])))
    model.to(device)
    report["parameters"] = sum(p.numel() for p in model.parameters())
    report["vocab_size"] = len(tokenizer)
    block_size = min(block_size, max_positions(model) or block_size)
    dev_ids = [encode_line(tokenizer, t, block_size) for t in dev_dutch if t]
    history: list[dict[str, Any]] = []
    for name, lines, phase in phases:
        if not lines:
            raise ValueError(f"LM phase {name!r}: no text to train on")
        blocks = pack_lines([encode_line(tokenizer, line) for line in lines], block_size)
        run_config = {"settings": dict(settings), "phase": name, "seed": seed, "lines": len(lines)}
        report[f"{name}_tokens"] = blocks.numel()
        history += train_phase(
            model,
            blocks,
            phase,
            name,
            checkpoint_dir / f"{name}.pt",
            run_config,
            seed,
            checkpoint_every=max(1, min(100, phase.steps // 5 or 1)),
            progress=progress,
        )
        if dev_ids:
            report[f"dev_loss_after_{name}"] = mean_loss(model, dev_ids, tokenizer.pad_token_id)
            log.info("after %s: dev Dutch loss %.3f", name, report[f"dev_loss_after_{name}"])
    report["history"] = history
    model.eval().cpu()
    return model, tokenizer, report, {name: list(lines) for name, lines, _ in phases}


def save_lm(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    extra_files: Mapping[str, str] | None = None,
) -> None:
    """``save_pretrained`` both, plus ``extra_files`` (relative path -> text), into ``out_dir``.

    Everything is written to a temporary folder beside it first and renamed into place, so a
    killed job never leaves a half-written LM directory under the real name.
    """
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for name, content in (extra_files or {}).items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
