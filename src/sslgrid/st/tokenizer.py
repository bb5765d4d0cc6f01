"""A byte-level BPE tokenizer trained on the LM's own text, as a ``transformers`` tokenizer.

Byte-level BPE (``tokenizers``) encodes any text, Dutch diacritics and English punctuation
alike, without an unknown token, so hypotheses are never lossy. The result is a
``PreTrainedTokenizerFast`` that ``save_pretrained``/``AutoTokenizer.from_pretrained`` round-trip,
the same interface a user's GPT-2 Dutch or GEITje directory offers.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, BOS, EOS = "<pad>", "<s>", "</s>"


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE with ``vocab_size`` entries (special tokens included) learnt on ``texts``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, bos_token=BOS, eos_token=EOS
    )


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> None:
    """Give a tokenizer without a padding token (most causal LMs) its end token as one.

    Padding positions are masked out of attention and loss, so which id fills them is moot.
    """
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the LM's tokenizer has neither a padding nor an end token")
        tokenizer.pad_token = tokenizer.eos_token


def encode_line(
    tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int | None = None
) -> list[int]:
    """``<bos> text <eos>`` (bos when the tokenizer has one); text cut to fit ``max_tokens``."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    if max_tokens is not None:
        ids = ids[: max(0, max_tokens - len(bos) - 1)]
    return bos + ids + [tokenizer.eos_token_id]
