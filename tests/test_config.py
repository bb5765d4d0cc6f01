"""Config validation: errors name the key and what is allowed; defaults are filled in."""

import copy
from pathlib import Path

import pytest
import yaml

from sslgrid.config import ConfigError, load_config, validate_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def broken(mutate):
    config = copy.deepcopy(DEFAULT)
    mutate(config)
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    return str(err.value)


def test_default_config_is_valid_and_gets_defaults():
    config = load_config(REPO / "config.yaml")
    assert config["pretrain"]["max_utterance_seconds"] == 20.0
    assert config["corpora"]["fillets-nl"]["max_clips"] is None


def test_unknown_key_is_named_with_the_allowed_keys():
    msg = broken(lambda c: c["pretrain"].update(modles=["apc"]))
    assert "'modles'" in msg and "pretrain" in msg
    assert "allowed keys" in msg and "'models'" in msg


def test_unknown_top_level_key():
    msg = broken(lambda c: c.update(grid={}))
    assert "'grid'" in msg and "<top level>" in msg


def test_wrong_enum_value_lists_the_allowed_values():
    msg = broken(lambda c: c["finetune"].update(upstreams=["fbank", "wav2vec3"]))
    assert "finetune.upstreams.1" in msg and "'wav2vec3'" in msg and "'apc'" in msg


def test_wrong_type_names_the_key():
    msg = broken(lambda c: c["pretrain"].update(epochs="ten"))
    assert "pretrain.epochs" in msg and "integer" in msg


def test_a_models_own_pretraining_settings_are_checked_by_name():
    msg = broken(lambda c: c["models"]["cpc"].update(pretrain={"lr": 2e-4}))
    assert "models.cpc.pretrain" in msg and "'lr'" in msg and "'learning_rate'" in msg
    msg = broken(lambda c: c["models"]["cpc"].update(pretrain={"learning_rate": 0}))
    assert "models.cpc.pretrain.learning_rate" in msg


def test_bad_amount_says_what_is_expected():
    msg = broken(lambda c: c["pretrain"].update(amounts=["lots"]))
    assert "pretrain.amounts.0" in msg and "'all'" in msg and "positive number" in msg


def test_bad_checksum_is_rejected():
    msg = broken(lambda c: c["corpora"]["fillets-nl"]["packages"][0].update(sha256="abc"))
    assert "corpora.fillets-nl.packages.0.sha256" in msg


def test_reference_to_an_undefined_corpus():
    msg = broken(lambda c: c["pretrain"].update(pools=["cgn"]))
    assert "pretrain.pools.0" in msg and "'cgn'" in msg and "fillets-nl" in msg


def test_undefined_model_size():
    msg = broken(lambda c: c["models"]["apc"].update(size="huge"))
    assert "models.apc.size" in msg and "'paper'" in msg and "'tiny'" in msg


def test_finetuned_model_must_be_pretrained():
    msg = broken(lambda c: c["pretrain"].update(models=[]))
    assert "finetune.upstreams" in msg and "'apc'" in msg


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)


def test_overrides_are_validated_too():
    with pytest.raises(ConfigError, match="finetune.epochs"):
        load_config(REPO / "config.yaml", overrides={"finetune": {"epochs": 0}})
    config = load_config(REPO / "config.yaml", overrides={"finetune": {"epochs": 3}})
    assert config["finetune"]["epochs"] == 3
    assert config["finetune"]["modes"] == ["frozen"]
    assert config["finetune"]["amounts"] == DEFAULT["finetune"]["amounts"]


SYNTHETIC = {
    "recipe": "synthetic",
    "language": "nl",
    "region": "nl",
    "domain": "synthetic-tts",
    "packages": [{"name": "p", "url": "file:///p.deb", "sha256": "0" * 64}],
    "hours": 0.5,
    "exclude_text_of": ["fillets-nl"],
}


def test_each_recipe_takes_its_own_keys():
    config = copy.deepcopy(DEFAULT)
    config["corpora"]["synthetic-nl"] = copy.deepcopy(SYNTHETIC)
    config["corpora"]["cgn-vl"] = {"recipe": "cgn", "root": "/data/CGN", "region": "vl"}
    validated = validate_config(config)
    assert validated["corpora"]["fillets-nl"]["dev_fraction"] == 0.1  # defaults of its branch
    assert validated["corpora"]["synthetic-nl"]["exclude_text_of"] == ["fillets-nl"]

    msg = broken(lambda c: c["corpora"].update({"s": {**SYNTHETIC, "max_clips": 3}}))
    assert "'max_clips'" in msg and "corpora.s" in msg and "'hours'" in msg
    msg = broken(lambda c: c["corpora"].update({"s": {**SYNTHETIC, "recipe": "tts"}}))
    assert "corpora.s.recipe" in msg and "synthetic" in msg


def test_a_corpus_excluding_an_undefined_corpus_is_named():
    msg = broken(lambda c: c["corpora"].update({"s": {**SYNTHETIC, "exclude_text_of": ["cgn-nl"]}}))
    assert "corpora.s.exclude_text_of.0" in msg and "'cgn-nl'" in msg
