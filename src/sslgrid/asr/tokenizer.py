"""Character vocabulary for CTC: index 0 is the blank, the rest are the training characters."""

from __future__ import annotations

from collections.abc import Iterable

BLANK = "<blank>"


class CharTokenizer:
    def __init__(self, symbols: list[str]) -> None:
        if not symbols or symbols[0] != BLANK:
            raise ValueError("the first symbol of a CTC vocabulary must be the blank")
        self.symbols = symbols
        self.index = {s: i for i, s in enumerate(symbols)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        chars = sorted({c for text in texts for c in text})
        return cls([BLANK, *chars])

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> list[int]:
        """Indices of ``text``; characters never seen in training are dropped."""
        return [self.index[c] for c in text if c in self.index]

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join("".join(self.symbols[i] for i in ids if i != 0).split())

    def unknown(self, text: str) -> set[str]:
        return {c for c in text if c not in self.index}
