"""validate stage: a data report for one corpus (report.md, report.json, report.png).

Every cut of the corpus' train/dev/test manifests goes through the checks of
``sslgrid.corpora.validate`` (the same ones the features stage applies while it reads the
audio), under the config's ``validation`` policy. The report gives per split the utterances,
hours and speakers that are left, the duration and sample-rate histograms, everything that was
repaired or left out and why (by this validation and by the corpus recipe's ``report.json``),
and the characters of dev/test transcripts that never occur in the training transcripts.

The config is checked against the data too: a ``pretrain.amounts`` entry larger than a pool's
usable training audio, or a local path of the corpus that does not exist, is an error naming
the key.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lhotse import CutSet
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from sslgrid.config import ConfigError, load_config
from sslgrid.corpora.manifests import SPLITS
from sslgrid.corpora.validate import (
    check_config_paths,
    check_pretrain_amounts,
    read_cuts,
    summary_line,
    validate_cuts,
    validation_settings,
)
from sslgrid.logs import setup_logging

log = logging.getLogger("sslgrid.validate_data")

PLOT_NAME = "report.png"
SPLIT_COLOURS = {"train": "#1f77b4", "dev": "#ff7f0e", "test": "#2ca02c"}


# --------------------------------------------------------------------------------------------
# Collecting


def validate_splits(
    manifest_dir: Path, policy: str, limits: Any
) -> dict[str, tuple[CutSet, dict[str, Any]]]:
    """Each split's usable cuts and its validation report."""
    result = {}
    for split in SPLITS:
        cuts, bad_lines = read_cuts(manifest_dir / f"cuts_{split}.jsonl.gz", policy)
        clean, report = validate_cuts(cuts, policy, limits.max_seconds, limits=limits)
        if bad_lines.count:
            report["skipped"]["bad_manifest_line"] = bad_lines.to_dict()
        log.info("%s: %s", split, summary_line(report))
        result[split] = (clean, report)
    return result


def split_summary(cuts: CutSet, report: Mapping[str, Any]) -> dict[str, Any]:
    durations = [c.duration for c in cuts]
    return {
        "utterances_in": report["cuts_in"],
        "utterances": len(durations),
        "hours": round(sum(durations) / 3600, 4),
        "hours_usable_audio": report["hours_usable_audio"],
        "speakers": len(speakers_of(cuts)),
        "duration_seconds": describe(durations),
        "sample_rates": report["sample_rates"],
        "channels": report["channels"],
        "skipped": report["skipped"],
        "repaired": report["repaired"],
        "noted": report["noted"],
    }


def speakers_of(cuts: CutSet) -> set[str]:
    return {s.speaker for c in cuts for s in c.supervisions if s.speaker}


def describe(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "mean": round(statistics.fmean(values), 3),
        "max": round(max(values), 3),
    }


def shared_speakers(splits: Mapping[str, CutSet]) -> dict[str, Any]:
    sets = {split: speakers_of(cuts) for split, cuts in splits.items()}
    names = list(sets)
    return {
        "total": len(set().union(*sets.values())),
        "shared": {
            f"{a}-{b}": len(sets[a] & sets[b]) for i, a in enumerate(names) for b in names[i + 1 :]
        },
    }


def shared_ids(splits: Mapping[str, CutSet]) -> dict[str, Any]:
    """Utterance ids found in two splits: held-out data that training would also see."""
    ids = {split: set(cuts.ids) for split, cuts in splits.items()}
    names = list(ids)
    shared = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            both = sorted(ids[a] & ids[b])
            if both:
                shared[f"{a}-{b}"] = {"count": len(both), "examples": both[:5]}
    return shared


def oov_characters(splits: Mapping[str, CutSet], examples: int = 5) -> dict[str, Any]:
    """Characters of dev/test transcripts that no training transcript has."""
    train_chars = {ch for cut in splits["train"] for ch in _text(cut)}
    found: dict[str, Any] = {}
    for split in ("dev", "test"):
        counts: Counter[str] = Counter()
        where: dict[str, list[str]] = {}
        for cut in splits[split]:
            for ch in _text(cut):
                if ch != " " and ch not in train_chars:
                    counts[ch] += 1
                    ids = where.setdefault(ch, [])
                    if len(ids) < examples and cut.id not in ids:
                        ids.append(cut.id)
        found[split] = {
            ch: {"code_point": f"U+{ord(ch):04X}", "count": n, "examples": where[ch]}
            for ch, n in counts.most_common()
        }
    return found


def _text(cut: Any) -> str:
    return " ".join(s.text for s in cut.supervisions if s.text)


def corpus_findings(report_path: Path) -> dict[str, Any]:
    """The counted entries of the recipe's report.json (what corpus preparation set aside)."""
    if not report_path.is_file():
        return {}
    report = json.loads(report_path.read_text(encoding="utf-8"))
    findings = {}
    for key, value in report.items():
        if isinstance(value, Mapping) and isinstance(value.get("count"), int):
            listed = value.get("examples", value.get("items", []))
            findings[key] = {"count": value["count"], "examples": list(listed)[:5]}
    return findings


# --------------------------------------------------------------------------------------------
# Writing


def plot(splits: Mapping[str, CutSet], summaries: Mapping[str, Any], path: Path) -> None:
    """Duration histogram per split and the files' sample rates, one PNG (Agg, no display)."""
    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    ax_dur, ax_sr = fig.subplots(1, 2, width_ratios=[3, 2])
    durations = {split: [c.duration for c in cuts] for split, cuts in splits.items()}
    longest = max((max(d) for d in durations.values() if d), default=1.0)
    bins = [longest * i / 40 for i in range(41)]
    # Each split as shares of its own utterances, so a small test set compares with train.
    for split, values in durations.items():
        if values:
            ax_dur.hist(
                values, bins=bins, weights=[1 / len(values)] * len(values), histtype="step",
                linewidth=1.5, color=SPLIT_COLOURS.get(split), label=f"{split} ({len(values)})",
            )  # fmt: skip
    ax_dur.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax_dur.set_xlabel("duration (s)")
    ax_dur.set_ylabel("share of the split's utterances")
    ax_dur.set_title("Utterance durations (kept cuts)")
    ax_dur.legend()

    rates = sorted({int(r) for s in summaries.values() for r in s["sample_rates"]})
    width = 0.8 / max(len(summaries), 1)
    for i, (split, summary) in enumerate(summaries.items()):
        counts = [summary["sample_rates"].get(str(r), 0) for r in rates]
        xs = [j + (i - (len(summaries) - 1) / 2) * width for j in range(len(rates))]
        ax_sr.bar(xs, counts, width, color=SPLIT_COLOURS.get(split), label=split)
    ax_sr.set_xticks(range(len(rates)), [f"{r / 1000:g} kHz" for r in rates])
    ax_sr.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_sr.set_ylabel("cuts")
    ax_sr.set_title("Sample rate in the audio files")
    if rates:
        ax_sr.legend()
    fig.tight_layout()
    _write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def markdown(report: Mapping[str, Any]) -> str:
    splits = report["splits"]
    limits = report["limits"]
    lines = [
        f"# Data report: {report['corpus']}",
        "",
        f"Generated {report['generated']} by `scripts/validate_data.py` from "
        f"`{report['manifest_dir']}`. Policy `{report['policy']}` "
        f"(maximum {limits['max_seconds']} s, silence below {limits['silence_dbfs']} dBFS, "
        f"at most {100 * limits['max_clipped_fraction']:g}% clipped samples).",
        "",
        "## Splits",
        "",
        "| split | utterances | of | hours | speakers | duration min / median / max (s) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for split, s in splits.items():
        d = s["duration_seconds"]
        spread = f"{d['min']} / {d['median']} / {d['max']}" if d else "-"
        lines.append(
            f"| {split} | {s['utterances']} | {s['utterances_in']} | {s['hours']:.3f} | "
            f"{s['speakers']} | {spread} |"
        )
    spk = report["speakers"]
    shared = ", ".join(f"{k} {v}" for k, v in spk["shared"].items())
    lines += ["", f"Speakers: {spk['total']} in all; shared between splits: {shared}.", ""]
    overlap = report["ids_in_two_splits"]
    lines.append(
        "Utterance ids in two splits: "
        + (
            "; ".join(f"**{k} {v['count']}** (e.g. {', '.join(v['examples'])})"
                      for k, v in overlap.items())
            if overlap
            else "none."
        )
    )  # fmt: skip
    lines.append("")

    lines += ["## Audio", "", f"![durations and sample rates]({report['plot']})", ""]
    lines += ["| split | sample rate of the files | channels read |", "|---|---|---|"]
    for split, s in splits.items():
        lines.append(
            f"| {split} | {_counts(s['sample_rates'], ' Hz')} | {_counts(s['channels'], ' ch')} |"
        )

    lines += ["", "## Repaired and left out", ""]
    lines += _findings_table(
        "Validation (this stage)",
        [(split, kind, code, t) for split, s in splits.items()
         for kind in ("skipped", "repaired", "noted") for code, t in s[kind].items()],
    )  # fmt: skip
    lines += _findings_table(
        f"Corpus preparation (`{report['corpus_report_file']}`)",
        [("all", "set aside", code, t) for code, t in report["corpus_report"].items()],
    )

    lines += ["## Characters in dev/test transcripts that training never has", ""]
    rows = [
        f"| {split} | `{_cell(ch)}` | {info['code_point']} | {info['count']} | "
        f"{_cell(', '.join(info['examples']))} |"
        for split, chars in report["oov_characters"].items()
        for ch, info in chars.items()
    ]
    if rows:
        lines += ["| split | character | code point | count | e.g. in |", "|---|---|---|---:|---|"]
        lines += rows
    else:
        lines.append("None: every dev/test character occurs in the training transcripts.")
    return "\n".join(lines) + "\n"


def _findings_table(title: str, rows: Sequence[tuple[str, str, str, Mapping[str, Any]]]) -> list:
    lines = [f"### {title}", ""]
    if not rows:
        return lines + ["Nothing.", ""]
    lines += ["| split | outcome | what | count | e.g. |", "|---|---|---|---:|---|"]
    for split, kind, code, tally in rows:
        example = _example(tally["examples"][0]) if tally["examples"] else ""
        lines.append(f"| {split} | {kind} | {code} | {tally['count']} | {_cell(example)} |")
    return lines + [""]


def _example(item: Any) -> str:
    if isinstance(item, Mapping):
        detail = item.get("problem") or item.get("detail") or item.get("orig_text") or ""
        return f"{item.get('id', '')}: {detail}".strip(": ")
    return str(item)


def _counts(counts: Mapping[str, int], unit: str) -> str:
    return ", ".join(f"{k}{unit}: {v}" for k, v in counts.items()) or "-"


def _cell(text: str, width: int = 100) -> str:
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.replace("|", "\\|").replace("\n", " ")


def _write_atomic(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_text(path: Path, text: str) -> None:
    _write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# --------------------------------------------------------------------------------------------


def check_config(config: Mapping[str, Any], corpus: str, usable_train_hours: float) -> None:
    """Config entries the data contradicts, as one ``ConfigError`` naming each key."""
    problems = check_config_paths(config, [corpus] if corpus in config["corpora"] else [])
    problems += check_pretrain_amounts(config, corpus, usable_train_hours)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def build_report(args: argparse.Namespace, config: Mapping[str, Any]) -> dict[str, Any]:
    policy, limits = validation_settings(config)
    validated = validate_splits(args.manifest_dir, policy, limits)
    check_config(config, args.corpus, validated["train"][1]["hours_usable_audio"])
    clean = {split: cuts for split, (cuts, _) in validated.items()}
    summaries = {split: split_summary(cuts, rep) for split, (cuts, rep) in validated.items()}
    plot(clean, summaries, args.out_dir / PLOT_NAME)
    corpus_report = args.manifest_dir / "report.json"
    return {
        "corpus": args.corpus,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "manifest_dir": str(args.manifest_dir),
        "policy": policy,
        "limits": validated["train"][1]["limits"],
        "splits": summaries,
        "speakers": shared_speakers(clean),
        "ids_in_two_splits": shared_ids(clean),
        "corpus_report_file": str(corpus_report),
        "corpus_report": corpus_findings(corpus_report),
        "oov_characters": oov_characters(clean),
        "plot": PLOT_NAME,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True, help="sslgrid config file")
    parser.add_argument("--corpus", required=True, help="corpus name (for the report)")
    parser.add_argument("--manifest-dir", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)
    setup_logging(args.log)
    report = build_report(args, load_config(args.config))
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    _write_text(args.out_dir / "report.json", text)
    _write_text(args.out_dir / "report.md", markdown(report))
    log.info("data report of %s in %s", args.corpus, args.out_dir)


if __name__ == "__main__":
    main()
