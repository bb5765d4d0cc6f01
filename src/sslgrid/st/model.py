"""The speech LLM: frozen upstream layers -> learnable layer weights -> projector -> causal LM.

Each example is one sequence of LM input embeddings::

    <bos> prompt-before  [speech positions]  prompt-after  target </s>

where the prompt is the task's template (``st.prompts``) split at its ``{speech}`` slot, the
speech positions come from the projector, and the target is the Dutch transcript
(``transcribe``) or the English translation (``translate``). Cross-entropy is taken on the
target tokens and the closing ``</s>`` only: prompt, speech and padding positions carry the
label -100. The LM's own weights stay frozen; with ``adapter: lora`` LoRA matrices (``peft``)
are added to it and train with the projector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from sslgrid.asr.downstream import WeightedLayerSum
from sslgrid.st.cells import ADAPTERS, split_prompt
from sslgrid.st.dutch_lm import max_positions
from sslgrid.st.projector import FrameStackProjector

IGNORE = -100


@dataclass(frozen=True)
class SpeechLLMConfig:
    """Everything besides the LM's weights that rebuilds a speech LLM.

    Args:
        upstream_dim: feature size of the upstream's hidden states.
        upstream_layers: number of hidden states the layer weights combine.
        stack: upstream frames per LM position.
        projector_hidden: width of the projector's hidden layer.
        prompts: task -> template with one ``{speech}`` slot.
        adapter: ``frozen`` or ``lora``.
        lora: ``r``, ``alpha``, ``dropout``, ``target_modules`` (None: peft's default for the
            LM's architecture) when ``adapter`` is ``lora``.
    """

    upstream_dim: int
    upstream_layers: int
    stack: int
    projector_hidden: int
    prompts: Mapping[str, str]
    adapter: str = "frozen"
    lora: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "prompts": dict(self.prompts), "lora": dict(self.lora)}


def with_lora(llm: PreTrainedModel, lora: Mapping[str, Any]) -> nn.Module:
    """``llm`` with trainable LoRA matrices beside its frozen weights."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora.get("dropout", 0.0),
        target_modules=lora.get("target_modules"),
        # GPT-2 keeps its projections as Conv1D, (in, out) weights.
        fan_in_fan_out=llm.config.model_type == "gpt2",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(llm, config)


class SpeechLLM(nn.Module):
    """Upstream hidden states in, LM loss or generated text out."""

    def __init__(
        self, llm: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: SpeechLLMConfig
    ) -> None:
        super().__init__()
        if config.adapter not in ADAPTERS:
            raise ValueError(f"adapter {config.adapter!r}; expected one of {list(ADAPTERS)}")
        self.config = config
        self.tokenizer = tokenizer
        embed_dim = llm.get_input_embeddings().embedding_dim
        self.layer_sum = WeightedLayerSum(config.upstream_layers)
        self.projector = FrameStackProjector(
            config.upstream_dim, embed_dim, config.stack, config.projector_hidden
        )
        self.max_positions = max_positions(llm)
        llm.requires_grad_(False)
        self.llm = with_lora(llm, config.lora) if config.adapter == "lora" else llm
        self.llm.eval()
        bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        self.prompt_ids: dict[str, tuple[list[int], list[int]]] = {}
        for task, template in config.prompts.items():
            before, after = split_prompt(template, f"st.prompts.{task}")
            self.prompt_ids[task] = (bos + self._ids(before), self._ids(after))

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def train(self, mode: bool = True) -> SpeechLLM:
        """The LM always runs in evaluation mode: its weights are fixed, so no dropout."""
        super().train(mode)
        self.llm.eval()
        return self

    def target_ids(self, text: str) -> list[int]:
        """A target text's tokens and the closing end token the LM learns to stop with."""
        return [*self._ids(text), self.tokenizer.eos_token_id]

    def speech_positions(self, frames: int) -> int:
        return -(-frames // self.config.stack)

    def sequence_length(self, frames: int, task: str, targets: int = 0) -> int:
        """LM positions of one example: prompt, speech and ``targets`` target tokens."""
        before, after = self.prompt_ids[task]
        return len(before) + self.speech_positions(frames) + len(after) + targets

    def embed_speech(
        self, layers: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(L, B, T, D) hidden states -> (B, N, E) LM embeddings and their lengths."""
        return self.projector(self.layer_sum(layers), lengths)

    def _embed_tokens(self, ids: Sequence[int], device: torch.device) -> torch.Tensor:
        table = self.llm.get_input_embeddings()
        return table(torch.tensor(list(ids), dtype=torch.long, device=device))

    def _sequences(
        self,
        speech: torch.Tensor,
        lengths: torch.Tensor,
        tasks: Sequence[str],
        targets: Sequence[Sequence[int]] | None,
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per example: (S, E) input embeddings and (S,) labels."""
        out = []
        dtype = self.llm.get_input_embeddings().weight.dtype
        for i, task in enumerate(tasks):
            before, after = self.prompt_ids[task]
            target = list(targets[i]) if targets is not None else []
            n = int(lengths[i])
            parts = [
                self._embed_tokens(before, speech.device),
                speech[i, :n].to(dtype),
                self._embed_tokens(after, speech.device),
            ]
            if target:
                parts.append(self._embed_tokens(target, speech.device))
            embeds = torch.cat(parts)
            labels = torch.full((embeds.shape[0],), IGNORE, dtype=torch.long, device=speech.device)
            if target:
                labels[-len(target) :] = torch.tensor(target, device=speech.device)
            out.append((embeds, labels))
        return out

    @staticmethod
    def _pad(
        sequences: Sequence[tuple[torch.Tensor, torch.Tensor]], left: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pad to the longest: embeddings, attention mask, labels (left padding to generate)."""
        width = max(e.shape[0] for e, _ in sequences)
        first = sequences[0][0]
        embeds = first.new_zeros((len(sequences), width, first.shape[-1]))
        mask = torch.zeros((len(sequences), width), dtype=torch.long, device=first.device)
        labels = torch.full((len(sequences), width), IGNORE, dtype=torch.long, device=first.device)
        for row, (e, lab) in enumerate(sequences):
            span = slice(width - e.shape[0], width) if left else slice(0, e.shape[0])
            embeds[row, span], mask[row, span], labels[row, span] = e, 1, lab
        return embeds, mask, labels

    def forward(
        self,
        layers: torch.Tensor,
        lengths: torch.Tensor,
        tasks: Sequence[str],
        targets: Sequence[Sequence[int]],
    ) -> torch.Tensor:
        """Mean cross-entropy per target token (``targets`` end with the end token)."""
        speech, speech_lengths = self.embed_speech(layers, lengths)
        embeds, mask, labels = self._pad(
            self._sequences(speech, speech_lengths, tasks, targets), left=False
        )
        return self.llm(inputs_embeds=embeds, attention_mask=mask, labels=labels).loss

    @torch.no_grad()
    def generate(
        self,
        layers: torch.Tensor,
        lengths: torch.Tensor,
        tasks: Sequence[str],
        num_beams: int,
        max_new_tokens: int,
    ) -> list[str]:
        """Beam-search output text per example (prompt and speech left-padded together)."""
        speech, speech_lengths = self.embed_speech(layers, lengths)
        embeds, mask, _ = self._pad(self._sequences(speech, speech_lengths, tasks, None), left=True)
        budget = max_new_tokens
        if self.max_positions is not None:
            budget = min(budget, self.max_positions - embeds.shape[1])
        if budget < 1:
            return [""] * len(tasks)
        out = self.llm.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            num_beams=num_beams,
            max_new_tokens=budget,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            bos_token_id=self.tokenizer.bos_token_id,
        )
        return [self.decode_ids(row.tolist()) for row in out]

    def decode_ids(self, ids: Sequence[int]) -> str:
        """Generated ids up to the first end token, as text."""
        eos = self.tokenizer.eos_token_id
        ids = list(ids)
        if eos in ids:
            ids = ids[: ids.index(eos)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


class TrainableParameters(nn.Module):
    """The parameters of ``model`` that train, as a module of their own.

    They are the same tensors (not copies), so the training loop's optimiser, gradient
    clipping and checkpoints (``state_dict``/``load_state_dict``) see only these: a
    checkpoint holds the layer weights, projector and LoRA matrices, never the frozen LM.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.trained = nn.ParameterDict(
            {name.replace(".", ":"): p for name, p in model.named_parameters() if p.requires_grad}
        )

    def names(self) -> list[str]:
        return [k.replace(":", ".") for k in self.trained]
