"""The comparison grid as paths: which cells config.yaml asks for, and where each lives."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from sslgrid.corpora.subsets import amount_label

NO_PRETRAIN = "none"  # pool and amount of the fbank baseline

# What each upstream reads from the features stage (its ``Upstream.input_kind``). Kept here,
# apart from the models, so the workflow can plan its inputs without importing torch; a test
# checks it against the models themselves.
INPUT_KINDS = {
    "fbank": "fbank",
    "apc": "fbank",
    "mockingjay": "fbank",
    "tera": "fbank",
    "cpc": "wav",
    "wav2vec": "wav",
    "wav2vec2": "wav",
}


def family(model: str, config: dict[str, Any] | None = None) -> str:
    """The architecture of grid model ``model``: itself, or that of an imported checkpoint."""
    imported = (config or {}).get("imported", {})
    return imported[model]["model"] if model in imported else model


def is_imported(model: str, config: dict[str, Any]) -> bool:
    return model in config.get("imported", {})


def input_kind(model: str, config: dict[str, Any] | None = None) -> str:
    try:
        return INPUT_KINDS[family(model, config)]
    except KeyError:
        raise ValueError(
            f"unknown upstream {model!r}; known upstreams: {list(INPUT_KINDS)}"
        ) from None


def cache_name(model: str, split: str, config: dict[str, Any] | None = None) -> str:
    """File name of the features-stage cache that ``model`` reads for one split."""
    return f"{input_kind(model, config)}_{split}.pt"


def cache_path(corpus: str, model: str, split: str, config: dict[str, Any] | None = None) -> str:
    return f"data/features/{corpus}/{cache_name(model, split, config)}"


def held_out_of(corpus: dict[str, Any]) -> list[str]:
    """Corpora whose dev/test data a corpus must stay clear of, so it is built after them.

    ``exclude_text_of``: a synthetic corpus never speaks their dev/test sentences;
    ``exclude_levels_of``: a Fish Fillets track leaves out the game levels of their dev/test
    splits (the same scenes in another language).
    """
    names: list[str] = []
    for key in ("exclude_text_of", "exclude_levels_of"):
        names += [n for n in corpus.get(key, []) if n not in names]
    return names


def pool_corpora(pool: str, config: dict[str, Any]) -> list[str]:
    """The corpora whose training audio pre-training pool ``pool`` draws from.

    A pool is a corpus (its training split), a mix under ``pretrain.mixes`` (the union of its
    corpora's training splits), or a continued pool under ``pretrain.continued`` (the corpus
    pre-training continues on; its start is another pool's model).
    """
    pt = config["pretrain"]
    if pool in pt.get("mixes", {}):
        return list(pt["mixes"][pool])
    if pool in pt.get("continued", {}):
        return [pt["continued"][pool]["then"]]
    return [pool]


def continued_from(pool: str, config: dict[str, Any]) -> str | None:
    """The pool whose model a continued pool starts from, or ``None``."""
    spec = config["pretrain"].get("continued", {}).get(pool)
    return spec["from"] if spec else None


def largest_amount(config: dict[str, Any]) -> str:
    """Label of the largest of ``pretrain.amounts`` ("all" is the largest)."""
    amounts = config["pretrain"]["amounts"]
    if "all" in amounts:
        return "all"
    return amount_label(max(float(a) for a in amounts))


def pool_amounts(pool: str, config: dict[str, Any]) -> list[str]:
    """Amount labels a pool is pre-trained at: all of them, or the largest for continued pools.

    Continued pre-training starts from the ``from`` pool's model at the largest amount and
    adds the same amount of the ``then`` corpus.
    """
    if continued_from(pool, config) is not None:
        return [largest_amount(config)]
    return [amount_label(a) for a in config["pretrain"]["amounts"]]


def pool_description(pool: str, config: dict[str, Any]) -> dict[str, str]:
    """``language`` and ``domain`` of a pool, for the table's columns and the plots' panels.

    A mix joins its corpora's values with ``+``; a continued pool writes ``from>then``.
    """
    corpora = config["corpora"]

    def of(names: list[str], key: str) -> str:
        values = []
        for name in names:
            value = str(corpora[name].get(key, "unknown"))
            if value not in values:
                values.append(value)
        return "+".join(values)

    start = continued_from(pool, config)
    if start is not None:
        first, then = pool_corpora(start, config), pool_corpora(pool, config)
        return {
            key: of(first, key)
            if of(first, key) == of(then, key)
            else f"{of(first, key)}>{of(then, key)}"
            for key in ("language", "domain")
        }
    names = pool_corpora(pool, config)
    return {"language": of(names, "language"), "domain": of(names, "domain")}


def pool_columns(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Per pre-training pool (and ``none``), its language and domain."""
    columns = {NO_PRETRAIN: {"language": NO_PRETRAIN, "domain": NO_PRETRAIN}}
    for pool in config["pretrain"]["pools"]:
        columns[pool] = pool_description(pool, config)
    return columns


def pretrain_corpora(config: dict[str, Any]) -> list[str]:
    """Every corpus some pre-training pool reads, in config order, once each."""
    seen: list[str] = []
    for pool in config["pretrain"]["pools"]:
        for corpus in pool_corpora(pool, config):
            if corpus not in seen:
                seen.append(corpus)
    return seen


def cache_kinds(config: dict[str, Any]) -> dict[str, set[str]]:
    """Which input caches each corpus of the grid needs: ``{corpus: {"fbank", "wav"}}``.

    Every corpus gets ``fbank`` (its CMVN also normalises the fbank upstreams); ``wav`` only
    where a waveform model pre-trains on it or is fine-tuned and tested on it.
    """
    ft_corpora = {config["finetune"]["corpus"], *(t.split("/")[0] for t in config["test_sets"])}
    pools = set(pretrain_corpora(config))
    kinds: dict[str, set[str]] = {c: {"fbank"} for c in ft_corpora | pools}
    for corpus in pools:
        kinds[corpus] |= {input_kind(m, config) for m in config["pretrain"]["models"]}
    for corpus in ft_corpora:
        kinds[corpus] |= {input_kind(m, config) for m in config["finetune"]["upstreams"]}
    return kinds


@dataclass(frozen=True)
class UpstreamCell:
    """One pre-trained upstream (or the fbank baseline) of the grid.

    ``amount`` is the path's label: hours such as ``0.5h`` (or ``all``, or ``none`` for an
    upstream that is not pre-trained), plus ``-r<r>`` for pre-training repeat r > 0
    (``pretrain.repeats``)."""

    model: str
    pool: str
    amount: str

    @property
    def path(self) -> str:
        return f"{self.model}/{self.pool}/{self.amount}"

    @property
    def hours(self) -> str:
        """The amount without the repeat: ``0.5h``, ``all`` or ``none``."""
        return split_amount_label(self.amount)[0]

    @property
    def repeat(self) -> int:
        """Which pre-training of the same model, pool and amount (0: the first)."""
        return split_amount_label(self.amount)[1]


_REPEAT_SUFFIX = re.compile(r"^(?P<label>.+)-r(?P<repeat>[1-9][0-9]*)$")


def pretrain_amount_label(amount: str, repeat: int) -> str:
    """Path label of pre-training repeat ``repeat`` of an amount label: the label itself for
    the first (so a grid without repeats keeps its paths), ``<amount>-r<repeat>`` after it."""
    if repeat < 0:
        raise ValueError(f"pre-training repeat {repeat}: expected 0 or more")
    return amount if repeat == 0 else f"{amount}-r{repeat}"


def split_repeat_suffix(label: str) -> tuple[str, int]:
    """A path label without its repeat suffix, and the repeat: ``("0.5h", 2)`` for ``0.5h-r2``,
    ``("frozen-c", 1)`` for ``frozen-c-r1``; ``(label, 0)`` without a suffix."""
    match = _REPEAT_SUFFIX.match(label)
    if match is None:
        return label, 0
    return match["label"], int(match["repeat"])


def split_amount_label(label: str) -> tuple[str, int]:
    """``("0.5h", 2)`` for the pre-training path label ``0.5h-r2``; ``(label, 0)`` without a
    repeat."""
    return split_repeat_suffix(label)


def split_pretrain_repeat(coords: dict[str, Any]) -> dict[str, Any]:
    """A result's grid coordinates with the pre-training repeat taken out of ``amount``
    (``amount: 0.5h-r1`` -> ``amount: 0.5h, pretrain_repeat: 1``); 0 for every other."""
    out = dict(coords)
    if "amount" in out:
        out["amount"], out["pretrain_repeat"] = split_amount_label(str(out["amount"]))
    return out


def first_upstream_cells(config: dict[str, Any]) -> list[UpstreamCell]:
    """Every upstream the grid fine-tunes, each pre-trained once (no pre-training repeats).

    ``fbank`` and imported checkpoints as they are have pool and amount ``none``; models in
    ``pretrain.models`` get one cell per pool and amount (for an imported checkpoint: continued
    pre-training from it; for a continued pool: the largest amount only).
    """
    cells = []
    for model in config["finetune"]["upstreams"]:
        if model == "fbank" or is_imported(model, config):
            cells.append(UpstreamCell(model, NO_PRETRAIN, NO_PRETRAIN))
        if model not in config["pretrain"]["models"]:
            continue
        for pool in config["pretrain"]["pools"]:
            for amount in pool_amounts(pool, config):
                cells.append(UpstreamCell(model, pool, amount))
    return cells


def headline_cells(config: dict[str, Any]) -> list[UpstreamCell]:
    """The grid's headline cells: ``fbank`` and imported checkpoints as they are, and every
    pre-trained model at the largest amount of the first pool in ``pretrain.pools`` (its
    first pre-training)."""
    pool, amount = config["pretrain"]["pools"][0], largest_amount(config)
    return [
        cell
        for cell in first_upstream_cells(config)
        if cell.pool == NO_PRETRAIN or (cell.pool == pool and cell.amount == amount)
    ]


def pretrain_repeat_count(config: dict[str, Any]) -> int:
    """How often each repeated cell is pre-trained (``pretrain.repeats.count``; 1: once)."""
    return int((config["pretrain"].get("repeats") or {}).get("count", 1))


def pretrain_repeats(config: dict[str, Any]) -> list[UpstreamCell]:
    """The extra pre-trainings (repeats r > 0) of ``pretrain.repeats``, in grid order.

    ``cells: headline`` repeats the pre-trained headline cells, ``all`` every pre-trained
    cell. Repeat r of a continued pool starts from repeat r of the pool it continues from,
    which therefore joins the grid too (each repeat is a whole chain of its own).
    """
    count = pretrain_repeat_count(config)
    if count == 1:
        return []
    which = (config["pretrain"].get("repeats") or {}).get("cells", "all")
    if which == "all":
        chosen = first_upstream_cells(config)
    elif which == "headline":
        chosen = headline_cells(config)
    else:
        raise ValueError(f"pretrain.repeats.cells: {which!r}; expected 'all' or 'headline'")
    wanted = {c for c in chosen if c.pool != NO_PRETRAIN}
    for cell in list(wanted):
        start = continued_from(cell.pool, config)  # never itself continued (config checks)
        if start is not None:
            wanted.add(UpstreamCell(cell.model, start, cell.amount))
    return [
        UpstreamCell(cell.model, cell.pool, pretrain_amount_label(cell.amount, r))
        for cell in first_upstream_cells(config)
        if cell in wanted
        for r in range(1, count)
    ]


def upstream_cells(config: dict[str, Any]) -> list[UpstreamCell]:
    """Every upstream the grid fine-tunes: :func:`first_upstream_cells`, then the repeated
    pre-trainings (``pretrain.repeats``)."""
    return first_upstream_cells(config) + pretrain_repeats(config)


def stage_cells(config: dict[str, Any], section: str) -> list[UpstreamCell]:
    """The upstream cells a later stage (``probe``, ``st``) runs on: its ``cells`` setting."""
    which = config[section].get("cells", "all")
    if which == "all":
        return upstream_cells(config)
    if which == "headline":
        return headline_cells(config)
    raise ValueError(f"{section}.cells: {which!r}; expected 'all' or 'headline'")


# Fine-tuning modes: ``frozen`` trains the BiLSTM recogniser on the frozen upstream's layers;
# ``full`` trains the upstream too (its waveform CNN excepted) under a linear CTC head. The
# fbank baseline has nothing to fine-tune, so it is only ever ``frozen``.
FINETUNE_MODES = ("frozen", "full")


@dataclass(frozen=True)
class FinetuneSetting:
    """One fine-tuning setting: mode and hours of labelled data of ``finetune.corpus``, and
    which repeat of it (``finetune.repeats``: the same labels, another training seed)."""

    mode: str
    corpus: str
    amount: str  # "all" or hours such as "0.5h"
    repeat: int = 0

    @property
    def label(self) -> str:
        """Path component: ``<mode>-<corpus>``, plus ``-<amount>`` for a labelled subset and
        ``-r<repeat>`` for a repeat after the first (whose paths are those of a grid without
        repeats)."""
        base = f"{self.mode}-{self.corpus}"
        base = base if self.amount == "all" else f"{base}-{self.amount}"
        return base if self.repeat == 0 else f"{base}-r{self.repeat}"

    @property
    def first(self) -> FinetuneSetting:
        """The same setting's first repeat."""
        return replace(self, repeat=0)


def finetune_settings(config: dict[str, Any]) -> list[FinetuneSetting]:
    """Every fine-tuning setting of the grid: modes x labelled amounts."""
    ft = config["finetune"]
    return [
        FinetuneSetting(mode, ft["corpus"], amount_label(amount))
        for mode in ft["modes"]
        for amount in ft["amounts"]
    ]


def repeat_count(config: dict[str, Any]) -> int:
    """How often each repeated cell is fine-tuned (``finetune.repeats.count``; 1: once)."""
    return int((config["finetune"].get("repeats") or {}).get("count", 1))


def repeated_cells(config: dict[str, Any]) -> list[UpstreamCell]:
    """The upstream cells fine-tuned ``finetune.repeats.count`` times (``repeats.cells``)."""
    which = (config["finetune"].get("repeats") or {}).get("cells", "all")
    if which == "all":
        return upstream_cells(config)
    if which == "headline":
        return headline_cells(config)
    raise ValueError(f"finetune.repeats.cells: {which!r}; expected 'all' or 'headline'")


def repeat_seed(seed: int, repeat: int, what: str = "fine-tuning") -> int:
    """The training seed of a (``what``: fine-tuning or pre-training) repeat: ``seed`` itself
    for the first, so that a grid without repeats trains exactly as before; for the others a
    seed derived from both (NumPy's SeedSequence), far from ``seed + k``, which the epochs'
    shuffles use."""
    if repeat < 0:
        raise ValueError(f"{what} repeat {repeat}: expected 0 or more")
    if repeat == 0:
        return seed
    return int(np.random.SeedSequence([seed, repeat]).generate_state(1)[0] & 0x7FFFFFFF)


def finetune_setting(config: dict[str, Any], label: str) -> FinetuneSetting:
    """The setting a path's fine-tuning label names (repeats included)."""
    count = repeat_count(config)
    for setting in finetune_settings(config):
        for repeat in range(count):
            if replace(setting, repeat=repeat).label == label:
                return replace(setting, repeat=repeat)
    known = [s.label for s in finetune_settings(config)]
    extra = f" (and their repeats -r1..-r{count - 1})" if count > 1 else ""
    raise ValueError(
        f"fine-tuning setting {label!r} is not in the grid; the grid has {known}{extra}"
    )


def finetune_cells(config: dict[str, Any]) -> list[tuple[UpstreamCell, FinetuneSetting]]:
    """Every (upstream cell, fine-tuning setting) the grid trains a recogniser for: each
    setting once per cell, and ``finetune.repeats.count`` times for the repeated cells."""
    repeated = set(repeated_cells(config))
    count = repeat_count(config)
    cells = []
    for cell in upstream_cells(config):
        for setting in finetune_settings(config):
            if cell.model == "fbank" and setting.mode != "frozen":
                continue
            repeats = range(count) if cell in repeated else range(1)
            cells += [(cell, replace(setting, repeat=r)) for r in repeats]
    return cells


def finetune_label(config: dict[str, Any]) -> str:
    """Label of the grid's main fine-tuning setting: frozen (if in the grid) on all labels.

    Stages that read one fine-tuned recogniser per upstream cell (the phone probe's layer
    weights) use this one.
    """
    settings = finetune_settings(config)
    frozen = [s for s in settings if s.mode == "frozen"]
    return (frozen or settings)[0].label


def finetune_flags(setting: FinetuneSetting) -> str:
    """``scripts/finetune.py``'s options for a setting; ``--repeat`` only after the first
    repeat, so the first keeps the command of a grid without repeats (no rerun when repeats
    are added to a grid that has run)."""
    flags = f"--mode {setting.mode} --labelled {setting.amount}"
    return flags if setting.repeat == 0 else f"{flags} --repeat {setting.repeat}"


def pretrained_flag(cell: UpstreamCell) -> str:
    """`` --pretrained <checkpoint>`` for a pre-trained cell, else empty, for command lines.

    The leading space lives in the value, so a command never holds two spaces in a row: DVC
    writes long commands into ``dvc.lock`` folded over several lines, and YAML drops a space
    at a fold, after which ``dvc status`` would see a changed command.
    """
    if cell.pool == NO_PRETRAIN:
        return ""
    return f" --pretrained results/pretrain/{cell.path}/model.pt"


def model_args(config: dict[str, Any], model: str) -> dict[str, Any]:
    entry = config["models"][model]
    return dict(entry["sizes"][entry["size"]])


# Keys of the pretrain and finetune sections that say which cells the grid has, not how a cell
# is trained. A cell's job depends on the other keys only, so that adding a model, pool, amount
# or fine-tuning setting to the grid leaves the cells already trained alone.
GRID_KEYS = {
    "pretrain": ("models", "pools", "amounts", "mixes", "continued", "repeats"),
    "finetune": ("upstreams", "modes", "amounts", "repeats"),
}


def training_settings(
    config: dict[str, Any], section: str, pool: str | None = None
) -> dict[str, Any]:
    """The settings of ``section`` ("pretrain" or "finetune") that decide how one cell trains.

    For a pre-training cell of a mixed or continued ``pool``, that pool's own definition too.
    """
    settings = {k: v for k, v in config[section].items() if k not in GRID_KEYS[section]}
    if section == "pretrain" and pool is not None:
        for kind in ("mixes", "continued"):
            if pool in config[section].get(kind, {}):
                settings[kind] = {pool: config[section][kind][pool]}
    return settings


def pretrain_settings(config: dict[str, Any], model: str) -> dict[str, Any]:
    """The pretrain section with ``models.<model>.pretrain``'s settings in place of its own
    (a model trained from our own architectures may set its learning rate, batch, epochs)."""
    own = (config["models"].get(model) or {}).get("pretrain") or {}
    return {**config["pretrain"], **own}


def training_keys(
    config: dict[str, Any], section: str, written: dict[str, Any] | None = None
) -> list[str]:
    """Dotted config keys of :func:`training_settings` (without a pool's definition).

    ``written`` is the config file as written (keys it leaves to their defaults are not in it;
    a tool that reads the file, such as DVC, can only track the keys it has); None: all keys.
    """
    keys = [k for k in config[section] if k not in GRID_KEYS[section]]
    if written is not None:
        keys = [k for k in keys if k in (written.get(section) or {})]
    return [f"{section}.{k}" for k in sorted(keys)]
