"""Batches by total duration, so that a batch's cost and memory stay roughly constant."""

from __future__ import annotations

import random
from collections.abc import Sequence


def duration_batches(
    lengths: Sequence[int], max_total: int, seed: int, shuffle: bool = True
) -> list[list[int]]:
    """Group item indices into batches whose padded size (longest x count) stays <= max_total.

    Items are sorted by length so that padding stays small; the order of batches is shuffled
    with ``seed`` (pass a different seed per epoch). An item longer than ``max_total`` gets a
    batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        candidate = max(longest, lengths[i])
        if current and candidate * (len(current) + 1) > max_total:
            batches.append(current)
            current, candidate = [], lengths[i]
        current.append(i)
        longest = candidate
    if current:
        batches.append(current)
    if shuffle:
        random.Random(seed).shuffle(batches)
    return batches
