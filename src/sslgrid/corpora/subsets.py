"""Nested pre-training subsets stated in hours of audio."""

from __future__ import annotations

import random
from collections.abc import Sequence


class SubsetError(ValueError):
    """A subset that asks for more audio than the pool holds."""


def amount_label(amount: str | float) -> str:
    """Path component of a pre-training amount: ``all`` or hours such as ``0.5h``."""
    return "all" if amount == "all" else f"{float(amount):g}h"


def parse_amount(label: str, what: str = "pre-training amount") -> str | float:
    """``all`` or the hours of a label such as ``0.5h``; ``what`` names it in the error."""
    if label == "all":
        return "all"
    try:
        hours = float(label[:-1]) if label.endswith("h") else None
    except ValueError:
        hours = None
    if hours is None or not hours > 0:
        raise ValueError(f"{what} {label!r}: expected 'all' or positive hours such as '0.5h'")
    return hours


def nested_subset_by_hours(
    ids: Sequence[str], durations: Sequence[float], hours: str | float, seed: int
) -> list[str]:
    """The first utterances of one seeded permutation of the pool, up to ``hours`` of audio.

    Every amount takes a prefix of the same permutation, so a larger subset always contains
    the smaller ones, and the total lands within one utterance of the request.
    """
    if hours == "all":
        return list(ids)
    wanted = float(hours) * 3600
    total = float(sum(durations))
    if wanted > total + 1e-6:
        raise SubsetError(f"{hours} h asks for more audio than the pool has ({total / 3600:.3f} h)")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    random.Random(seed).shuffle(order)
    chosen, acc = [], 0.0
    for i in order:
        if acc >= wanted:
            break
        chosen.append(ids[i])
        acc += durations[i]
    return chosen
