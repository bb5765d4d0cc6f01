"""Loading and validating the grid description (config.yaml).

The schema in ``workflow/schemas/config.schema.yaml`` is the single statement of what a
config may contain; this module turns its violations into messages that name the key and
what is allowed, and adds the checks a schema cannot express (references between sections).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that does not describe a valid grid."""


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config, merge ``overrides`` into it, validate it and fill in defaults."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    with open(path, encoding="utf-8") as fh:
        try:
            config = yaml.safe_load(fh)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if overrides:
        config = deep_merge(config, overrides)
    return validate_config(config, source=str(path))


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (update wins)."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate ``config`` against the schema and cross-references; return it with defaults."""
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{source}: {describe_error(err, schema)}" for err in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    config = fill_defaults(copy.deepcopy(config), schema, schema)
    check_references(config, source)
    return config


def key_path(err: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in err.absolute_path) or "<top level>"


def describe_error(err: jsonschema.ValidationError, schema: dict[str, Any]) -> str:
    """One line naming the offending key and what is allowed there."""
    where = key_path(err)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        unknown = sorted(set(err.instance) - set(allowed))
        if allowed:
            return f"unknown key(s) {unknown} in {where}; allowed keys: {allowed}"
    if err.validator == "enum":
        return f"{where}: {err.instance!r} is not allowed; allowed values: {err.validator_value}"
    if err.validator == "required":
        return f"{where}: {err.message}"
    if err.validator == "anyOf":
        return f"{where}: {err.instance!r} is not valid; expected one of: " + "; ".join(
            describe_subschema(s) for s in err.validator_value
        )
    description = err.schema.get("description")
    hint = f" ({description})" if description else ""
    return f"{where}: {err.message}{hint}"


def describe_subschema(sub: Mapping[str, Any]) -> str:
    if "const" in sub:
        return repr(sub["const"])
    if "$ref" in sub:
        return sub["$ref"].rsplit("/", 1)[-1].replace("_", " ")
    return ", ".join(f"{k}={v}" for k, v in sub.items())


def resolve(sub: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in sub:
        node: Any = root
        for part in sub["$ref"].lstrip("#/").split("/"):
            node = node[part]
        sub = node
    return sub


def fill_defaults(value: Any, sub: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """Fill schema ``default``s into mappings, recursing through properties and refs."""
    sub = resolve(sub, root)
    if not isinstance(value, dict):
        return value
    for key, declared in sub.get("properties", {}).items():
        prop = resolve(declared, root)
        # A default written beside a $ref belongs to this property and wins over the target's.
        default_from = declared if "default" in declared else prop
        if key not in value and "default" in default_from:
            value[key] = copy.deepcopy(default_from["default"])
        if key in value:
            value[key] = fill_defaults(value[key], prop, root)
    for branch in sub.get("allOf", []):
        # if/then branches select a variant by a const (a corpus' recipe): fill its defaults.
        condition = branch.get("if", {}).get("properties", {})
        if "then" in branch and all(
            value.get(key) == cond.get("const") for key, cond in condition.items()
        ):
            value = fill_defaults(value, branch["then"], root)
    extra = sub.get("additionalProperties")
    if isinstance(extra, Mapping):
        known = set(sub.get("properties", {}))
        for key in value:
            if key not in known:
                value[key] = fill_defaults(value[key], extra, root)
    return value


def check_references(config: Mapping[str, Any], source: str) -> None:
    """Checks between sections: names used in one section must be defined in another."""
    corpora = sorted(config["corpora"])
    problems: list[str] = []

    def need_corpus(key: str, name: str) -> None:
        if name not in config["corpora"]:
            problems.append(f"{key}: corpus {name!r} is not defined; defined corpora: {corpora}")

    for name, corpus in config["corpora"].items():
        for key in ("exclude_text_of", "exclude_levels_of"):
            for i, other in enumerate(corpus.get(key, [])):
                need_corpus(f"corpora.{name}.{key}.{i}", other)
    pt = config["pretrain"]
    mixes, continued = pt.get("mixes", {}), pt.get("continued", {})
    for name in sorted((set(mixes) | set(continued)) & set(config["corpora"])):
        problems.append(
            f"pretrain: pool name {name!r} is also a corpus; give the pool another name"
        )
    for name in sorted(set(mixes) & set(continued)):
        problems.append(f"pretrain: {name!r} is both under mixes and under continued")
    for name, members in mixes.items():
        for i, corpus in enumerate(members):
            need_corpus(f"pretrain.mixes.{name}.{i}", corpus)
    for name, spec in continued.items():
        need_corpus(f"pretrain.continued.{name}.then", spec["then"])
        start = spec["from"]
        if start in continued:
            problems.append(
                f"pretrain.continued.{name}.from: {start!r} is itself a continued pool; "
                "expected a corpus or a mix"
            )
        elif start not in mixes and start not in config["corpora"]:
            problems.append(
                f"pretrain.continued.{name}.from: {start!r} is neither a corpus "
                f"({corpora}) nor a mix ({sorted(mixes)})"
            )
    for i, pool in enumerate(pt["pools"]):
        if pool not in mixes and pool not in continued:
            need_corpus(f"pretrain.pools.{i}", pool)
    need_corpus("finetune.corpus", config["finetune"]["corpus"])
    for i, test_set in enumerate(config["test_sets"]):
        need_corpus(f"test_sets.{i}", test_set.split("/")[0])
    imported = config.get("imported", {})
    own = sorted(config["models"])
    for key, names in (
        ("pretrain.models", config["pretrain"]["models"]),
        ("finetune.upstreams", config["finetune"]["upstreams"]),
    ):
        for i, model in enumerate(names):
            if model in imported or model in config["models"]:
                continue
            if model == "fbank" and key == "finetune.upstreams":
                continue
            problems.append(
                f"{key}.{i}: {model!r} is neither a model under models ({own}) nor an "
                f"imported checkpoint ({sorted(imported)})"
                + ("; 'fbank' is only a fine-tuning upstream" if model == "fbank" else "")
            )
    for model in sorted(set(config["pretrain"]["models"]) & set(config["models"])):
        entry = config["models"][model]
        if entry["size"] not in entry["sizes"]:
            problems.append(
                f"models.{model}.size: {entry['size']!r} is not defined; "
                f"allowed values: {sorted(entry['sizes'])}"
            )
    for clash in sorted(set(imported) & (set(config["models"]) | {"fbank"})):
        problems.append(f"imported.{clash}: the name is taken by a model; choose another")
    not_pretrained = (
        set(config["finetune"]["upstreams"])
        - {"fbank"}
        - set(imported)
        - set(config["pretrain"]["models"])
    )
    for model in sorted(not_pretrained):
        problems.append(
            f"finetune.upstreams: {model!r} is fine-tuned but not in pretrain.models "
            f"{config['pretrain']['models']}"
        )
    if problems:
        raise ConfigError(
            "invalid configuration:\n  " + "\n  ".join(f"{source}: {p}" for p in problems)
        )
