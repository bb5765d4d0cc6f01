"""The text a causal LM is built and tuned on, and the guarantee that no dev/test sentence is in it.

Two sources, each switchable in ``st.llms.<name>.text``:

- **catalogues**: Dutch sentences of the gettext catalogues of pinned Debian packages, with
  their English originals, read by the synthetic corpus' reader
  (``sslgrid.corpora.synthetic.collect_sentences``: speakable, deduplicated sentences).
  Packages are fetched and checked against their SHA256 like every other download.
- **corpus**: the ASR corpus' *training* transcripts (normalised Dutch, the form the
  transcription task writes) and their English translations.

Dutch is used in its normalised form (as transcripts are), English as written (as the
translation references are). A sentence that is also a dev or test sentence of a held-out
corpus, in Dutch or in English, is left out and counted; ``check_lm_text`` then refuses any
text that still holds one, so no LM ever sees a sentence it is scored on.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lhotse import CutSet

from sslgrid.corpora.debian import ChecksumError, fetch_package, iter_members
from sslgrid.corpora.synthetic import collect_sentences, read_mo_catalogue
from sslgrid.lm.ngram import check_no_held_out_text
from sslgrid.text import normalise

log = logging.getLogger(__name__)

Pair = tuple[str, str]  # (normalised Dutch, English as written)


@dataclass
class LmText:
    """Monolingual and parallel sentences for the LM, and where they came from."""

    dutch: list[str] = field(default_factory=list)
    english: list[str] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    def all_sentences(self) -> list[str]:
        """Every sentence in the text, parallel ones on both sides."""
        return [*self.dutch, *self.english, *(s for pair in self.pairs for s in pair)]


def split_texts(cuts_path: str | os.PathLike[str]) -> list[tuple[str, str | None]]:
    """(normalised Dutch transcript, English translation or None) of every supervision."""
    out = []
    for cut in CutSet.from_file(cuts_path):
        for sup in cut.supervisions:
            translation = (sup.custom or {}).get("translation")
            out.append((sup.text or "", translation or None))
    return out


def held_out_sentences(manifest_root: Path, corpora: Sequence[str]) -> list[str]:
    """Dutch transcripts and English translations of the dev and test splits of ``corpora``."""
    sentences = []
    for corpus in corpora:
        for split in ("dev", "test"):
            for dutch, english in split_texts(manifest_root / corpus / f"cuts_{split}.jsonl.gz"):
                sentences += [s for s in (dutch, english) if s]
    return sentences


def catalogue_pairs(
    packages: Sequence[Mapping[str, str]],
    download_dir: str | os.PathLike[str],
    exclude: Iterable[str],
    language: str = "nl",
    min_words: int = 3,
    max_words: int = 30,
    progress: bool = False,
) -> tuple[list[tuple[str, str | None]], dict[str, Any]]:
    """Dutch catalogue sentences (normalised) with their English, and the reader's report.

    ``exclude`` holds sentences never to keep (compared after normalisation, Dutch side).
    """
    catalogues = []
    pattern = re.compile(rf"usr/share/locale/{re.escape(language)}/LC_MESSAGES/[^/]+\.mo")
    for package in packages:
        try:
            deb = fetch_package(package["url"], package["sha256"], download_dir, progress)
        except ChecksumError as err:
            raise ChecksumError(f"package {package['name']}: {err}") from err
        found = sorted(iter_members(deb, pattern))
        if not found:
            raise ValueError(
                f"package {package['name']} ({deb.name}) has no catalogue "
                f"usr/share/locale/{language}/LC_MESSAGES/*.mo"
            )
        catalogues += [
            (package["name"], path, read_mo_catalogue(data, f"{deb.name}:{path}"))
            for path, data in found
        ]
    pool = collect_sentences(catalogues, exclude, min_words, max_words)
    return [(s.text, s.translation) for s in pool.sentences], pool.report()


def gather_lm_text(
    text_settings: Mapping[str, Any],
    manifest_root: Path,
    corpus: str,
    held_out_corpora: Sequence[str],
    download_dir: str | os.PathLike[str],
) -> LmText:
    """The LM text of ``st.llms.<name>.text``; dev/test sentences left out, then checked.

    Raises ``ValueError`` when the sources give no Dutch sentence at all.
    """
    held_out = held_out_sentences(manifest_root, held_out_corpora)
    held_out_set = {normalise(s) for s in held_out}
    text = LmText(report={"held_out_corpora": list(held_out_corpora)})
    sources: list[tuple[str, list[tuple[str, str | None]]]] = []
    if text_settings["catalogues"]:
        pairs, report = catalogue_pairs(
            text_settings["packages"],
            download_dir,
            held_out,
            min_words=text_settings["min_words"],
        )
        text.report["catalogues"] = {
            "packages": [p["name"] for p in text_settings["packages"]],
            "kept": report["kept"],
            "dropped": report["dropped"],
        }
        sources.append(("catalogues", pairs))
    if text_settings["corpus"]:
        sources.append((corpus, split_texts(manifest_root / corpus / "cuts_train.jsonl.gz")))
    for name, pairs in sources:
        counts = _add_source(text, pairs, held_out_set)
        text.report.setdefault("sources", {})[name] = counts
        log.info("LM text from %s: %s", name, counts)
    if not text.dutch:
        raise ValueError(
            "the LM text sources (st.llms.<name>.text) give no Dutch sentence that is not a "
            f"dev/test sentence of {list(held_out_corpora)}; enable catalogues or corpus"
        )
    check_lm_text(text.all_sentences(), held_out)
    return text


def _add_source(
    text: LmText, pairs: Iterable[tuple[str, str | None]], held_out: set[str]
) -> dict[str, int]:
    """Add one source's sentences to ``text``; left out: empty and held-out sentences."""
    counts = {"dutch": 0, "english": 0, "pairs": 0, "held_out_left_out": 0}
    for dutch, english in pairs:
        dutch = normalise(dutch)
        keep_nl = bool(dutch) and dutch not in held_out
        keep_en = english is not None and bool(english.strip())
        if keep_en and normalise(english) in held_out:
            keep_en = False
            counts["held_out_left_out"] += 1
        if dutch and not keep_nl:
            counts["held_out_left_out"] += 1
        if keep_nl:
            text.dutch.append(dutch)
            counts["dutch"] += 1
        if keep_en:
            text.english.append(english.strip())
            counts["english"] += 1
        if keep_nl and keep_en:
            text.pairs.append((dutch, english.strip()))
            counts["pairs"] += 1
    return counts


def check_lm_text(sentences: Iterable[str], held_out: Iterable[str]) -> None:
    """Refuse LM text holding any dev/test sentence (whole sentences, normalised)."""
    check_no_held_out_text(sentences, held_out)
