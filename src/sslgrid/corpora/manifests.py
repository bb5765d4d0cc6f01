"""The manifest contract shared by the corpus recipes: one cut per utterance, split files, report.

Every recipe ends the same way: a cut per supervision segment (``cut_for_supervision``), the
cuts of each split written to ``<manifest_dir>/cuts_<split>.jsonl.gz`` (``write_split_cuts``)
and a ``report.json`` beside them (``write_report``), both atomically so that a crash never
leaves a half-written manifest that a later rule would take for a finished one.

Cuts point at the corpus' own audio files; a recording that is not at 16 kHz gets Lhotse's
resampling transform, so ``cut.load_audio()`` returns 16 kHz audio without a converted copy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lhotse import CutSet, Recording, SupervisionSegment
from lhotse.cut import Cut, MonoCut, MultiCut
from lhotse.utils import fastcopy

__all__ = [
    "SAMPLE_RATE",
    "SPLITS",
    "Tally",
    "check_fractions",
    "check_unique_ids",
    "cut_for_supervision",
    "split_summary",
    "write_report",
    "write_split_cuts",
]

SPLITS = ("train", "dev", "test")
SAMPLE_RATE = 16000


def cut_for_supervision(recording: Recording, supervision: SupervisionSegment) -> Cut:
    """A cut spanning exactly ``supervision``, with the id of the supervision, at 16 kHz.

    The supervision inside the cut starts at 0 (cut-relative time). A single-channel recording
    gives a ``MonoCut``; a multi-channel one a ``MultiCut`` over all channels, which
    ``cut.load_audio()`` returns as (channels, samples) for the reader to average, so no
    speaker of a two-sided recording is lost.
    """
    inner = fastcopy(supervision, start=0.0)
    channels = list(recording.channel_ids)
    if len(channels) == 1:
        inner = fastcopy(inner, channel=channels[0])
        cut: Cut = MonoCut(
            id=supervision.id,
            start=supervision.start,
            duration=supervision.duration,
            channel=channels[0],
            recording=recording,
            supervisions=[inner],
        )
    else:
        inner = fastcopy(inner, channel=channels)
        cut = MultiCut(
            id=supervision.id,
            start=supervision.start,
            duration=supervision.duration,
            channel=channels,
            recording=recording,
            supervisions=[inner],
        )
    if recording.sampling_rate != SAMPLE_RATE:
        cut = cut.resample(SAMPLE_RATE)
    return cut


def check_fractions(dev_fraction: float, test_fraction: float) -> None:
    if not 0 <= dev_fraction < 1 or not 0 <= test_fraction < 1:
        raise ValueError(f"dev/test fractions must be in [0, 1): {dev_fraction}, {test_fraction}")
    if dev_fraction + test_fraction >= 1:
        raise ValueError(f"dev + test fractions must be below 1: {dev_fraction + test_fraction}")


def check_unique_ids(cuts: Iterable[Cut], what: str) -> None:
    """Two utterances with one id would silently overwrite each other downstream."""
    seen: set[str] = set()
    for cut in cuts:
        if cut.id in seen:
            raise ValueError(f"{what}: utterance id {cut.id!r} is made twice")
        seen.add(cut.id)


def write_split_cuts(cuts: Sequence[Cut], split: str, manifest_dir: Path) -> None:
    """``<manifest_dir>/cuts_<split>.jsonl.gz``, in the order given."""
    manifest_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(manifest_dir / f"cuts_{split}.jsonl.gz", CutSet.from_cuts(cuts).to_file)


def write_report(report: Mapping[str, Any], manifest_dir: Path) -> None:
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    manifest_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(manifest_dir / "report.json", lambda tmp: Path(tmp).write_text(text))


def split_summary(cuts: Sequence[Cut]) -> dict[str, Any]:
    speakers = sorted({s.speaker for c in cuts for s in c.supervisions if s.speaker})
    return {
        "hours": round(sum(c.duration for c in cuts) / 3600, 4),
        "utterances": len(cuts),
        "num_speakers": len(speakers),
        "speakers": speakers,
    }


@dataclass
class Tally:
    """Items of one kind that were set aside: all counted, the first ``keep`` listed."""

    keep: int = 50
    count: int = 0
    examples: list[Any] = field(default_factory=list)

    def add(self, item: Any) -> None:
        self.count += 1
        if len(self.examples) < self.keep:
            self.examples.append(item)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "examples": list(self.examples)}


def write_atomic(path: Path, write: Any) -> None:
    """Write through ``write(tmp_path)`` and rename, so a crash leaves no half manifest."""
    tmp = path.with_name(f".{path.name}.tmp{''.join(path.suffixes)}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
