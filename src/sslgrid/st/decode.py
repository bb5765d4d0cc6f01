"""Restoring an aligned speech LLM and decoding with beam search."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sslgrid.asr.finetune import pad_layers
from sslgrid.models.upstream import Upstream
from sslgrid.st.dutch_lm import load_causal_lm
from sslgrid.st.model import SpeechLLM, SpeechLLMConfig, TrainableParameters


def load_speech_llm(
    path: str | Path, llm_dir: str | Path | None = None
) -> tuple[Upstream, SpeechLLM, dict[str, Any]]:
    """Upstream, speech LLM and run config of an ``align_llm`` checkpoint.

    The LM is read from the directory the checkpoint names (``llm_dir`` overrides it, for a
    moved results folder); the trained parameters must match the rebuilt model exactly.
    """
    from sslgrid.models.factory import upstream_from_spec

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    config = ckpt["config"]
    upstream = upstream_from_spec(config["upstream"])
    upstream.load_state_dict(ckpt["upstream"])
    llm, tokenizer = load_causal_lm(llm_dir or config["llm_dir"])
    model = SpeechLLM(llm, tokenizer, SpeechLLMConfig(**config["speech_llm"]))
    trainable = TrainableParameters(model)
    missing = set(trainable.state_dict()) ^ set(ckpt["model"])
    if missing:
        raise KeyError(
            f"{path}: trained parameters do not match the rebuilt model "
            f"(LM {llm_dir or config['llm_dir']}): {sorted(missing)[:5]}"
        )
    trainable.load_state_dict(ckpt["model"])
    return upstream.eval(), model.eval(), config


def generate_texts(
    model: SpeechLLM,
    encoded: Sequence[torch.Tensor],
    task: str,
    num_beams: int,
    max_new_tokens: int,
    batch_size: int = 8,
    progress: bool = True,
) -> list[str]:
    """The model's output for ``task`` on every encoded utterance, in input order.

    Utterances are decoded in batches of similar length, so that left padding stays short.
    """
    model.eval()
    device = next(model.projector.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: encoded[i].shape[1])
    hyps = [""] * len(encoded)
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, desc=f"{task} (beam {num_beams})", disable=not progress):
        batch = order[start : start + batch_size]
        layers, lengths = pad_layers([encoded[i] for i in batch])
        texts = model.generate(
            layers.to(device), lengths.to(device), [task] * len(batch), num_beams, max_new_tokens
        )
        for i, text in zip(batch, texts, strict=True):
            hyps[i] = text
    return hyps
