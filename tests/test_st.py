"""Speech translation: projector, speech LLM, LM text without dev/test sentences, scoring, DAG."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from fillets_fixture import make_fillets_packages
from test_synthetic import catalogue_package, mo_file
from test_workflow import REPO, tiny_config, tiny_levels
from workflow_project import run, snakemake_args, tool_env

from sslgrid.config import ConfigError, load_config
from sslgrid.lm.ngram import HeldOutTextInLMError
from sslgrid.st.cells import split_prompt, st_runs
from sslgrid.st.decode import generate_texts, load_speech_llm
from sslgrid.st.dutch_lm import (
    PhaseSettings,
    build_lm,
    load_causal_lm,
    new_causal_lm,
    pack_lines,
    train_phase,
)
from sslgrid.st.lm_text import check_lm_text, gather_lm_text
from sslgrid.st.model import IGNORE, SpeechLLM, SpeechLLMConfig, TrainableParameters
from sslgrid.st.projector import FrameStackProjector, stack_for
from sslgrid.st.scoring import transcription_scores, translation_scores
from sslgrid.st.table import plot_bleu_vs_wer, st_table
from sslgrid.st.tokenizer import encode_line, train_bpe_tokenizer
from sslgrid.st.train import align_llm, make_examples
from sslgrid.text import normalise

PROMPTS = {
    "translate": "Speech: {speech}\nEnglish translation:",
    "transcribe": "Speech: {speech}\nDutch transcript:",
}
TEXTS = [
    "de vis zwemt in het water",
    "waar is de grote vis",
    "the fish swims in the water",
    "where is the big fish",
    "we moeten hier weg",
    "we have to get out of here",
]
SIZE = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "max_positions": 96}


def tiny_lm(architecture: str = "gpt2"):
    torch.manual_seed(0)
    tokenizer = train_bpe_tokenizer(TEXTS, vocab_size=300)
    return new_causal_lm(architecture, {**SIZE, "dropout": 0.0}, tokenizer), tokenizer


def speech_llm(adapter: str = "frozen", layers: int = 3, dim: int = 8, stack: int = 2):
    llm, tokenizer = tiny_lm()
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": None}
    config = SpeechLLMConfig(
        dim, layers, stack, 16, PROMPTS, adapter, lora if adapter == "lora" else {}
    )
    return SpeechLLM(llm, tokenizer, config)


def fake_speech(lengths: list[int], layers: int = 3, dim: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(layers, len(lengths), max(lengths), dim, generator=g)
    for i, n in enumerate(lengths):
        x[:, i, n:] = 0
    return x, torch.tensor(lengths)


# --------------------------------------------------------------------------------------------
# Projector and speech LLM


def test_projector_stacks_frames_into_lm_positions():
    projector = FrameStackProjector(input_dim=8, output_dim=24, stack=5, hidden_size=12)
    out, lengths = projector(torch.randn(2, 23, 8), torch.tensor([23, 11]))
    assert out.shape == (2, 5, 24)  # ceil(23 / 5) positions of the LM's embedding size
    assert lengths.tolist() == [5, 3]
    assert projector.mlp[0].in_features == 8 * 5
    # 100 ms per LM position: 5 frames of 20 ms (wav2vec 2.0), 10 of 10 ms (fbank, APC).
    assert stack_for(20.0, 100.0) == 5 and stack_for(10.0, 100.0) == 10
    with pytest.raises(ValueError, match="at least 1"):
        FrameStackProjector(8, 24, 0, 12)


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_a_causal_lm_written_to_a_folder_loads_from_that_path(tmp_path, architecture):
    llm, tokenizer = tiny_lm(architecture)
    llm.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    loaded, loaded_tokenizer = load_causal_lm(tmp_path / "lm")
    ids = torch.tensor([encode_line(tokenizer, "de vis zwemt")])
    torch.testing.assert_close(loaded(input_ids=ids).logits, llm.eval()(input_ids=ids).logits)
    assert (
        loaded_tokenizer("waar is de vis")["input_ids"] == tokenizer("waar is de vis")["input_ids"]
    )
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_causal_lm(tmp_path / "nothing")


@pytest.mark.parametrize("adapter", ["frozen", "lora"])
def test_only_the_bridge_and_lora_receive_gradients(adapter):
    model = speech_llm(adapter)
    layers, lengths = fake_speech([7, 4])
    loss = model(
        layers,
        lengths,
        ["translate", "transcribe"],
        [model.target_ids("the fish"), model.target_ids("de vis")],
    )
    loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    trainable = set(TrainableParameters(model).names())
    assert with_grad == trainable
    assert {n.split(".")[0] for n in with_grad if "lora_" not in n} == {"layer_sum", "projector"}
    has_lora = any("lora_" in n for n in with_grad)
    assert has_lora == (adapter == "lora")
    # The LM's own weights never train, with or without LoRA.
    assert all(p.grad is None for n, p in model.llm.named_parameters() if "lora_" not in n)


def test_prompt_speech_and_padding_carry_no_loss():
    model = speech_llm()
    layers, lengths = fake_speech([6, 3])
    speech, n = model.embed_speech(layers, lengths)
    targets = [model.target_ids("the big fish"), model.target_ids("water")]
    sequences = model._sequences(speech, n, ["translate", "translate"], targets)
    for (embeds, labels), target, frames in zip(sequences, targets, [6, 3], strict=True):
        before, after = model.prompt_ids["translate"]
        prompt = len(before) + model.speech_positions(frames) + len(after)
        assert embeds.shape[0] == prompt + len(target)
        assert (labels[:prompt] == IGNORE).all()
        assert labels[prompt:].tolist() == target
    # The model's loss is the cross-entropy of the target tokens alone.
    embeds, mask, labels = model._pad(sequences, left=False)
    logits = model.llm(inputs_embeds=embeds, attention_mask=mask).logits
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE
    )
    torch.testing.assert_close(model(layers, lengths, ["translate"] * 2, targets), expected)
    assert int((labels != IGNORE).sum()) == sum(len(t) for t in targets)


def test_a_prompt_needs_one_speech_slot():
    assert split_prompt("a {speech} b") == ("a ", " b")
    with pytest.raises(ValueError, match=r"st\.prompts\.translate: expected exactly one"):
        split_prompt("no slot", "st.prompts.translate")


@pytest.mark.parametrize("adapter, fall", [("frozen", 0.9), ("lora", 0.6)])
def test_loss_falls_on_a_fixed_tiny_batch(tmp_path, adapter, fall):
    """A frozen LM that knows some text (trained here for a moment) is steered to the targets
    of a fixed batch by the projector alone, down towards the LM's own loss on that text;
    LoRA goes further."""
    llm, tokenizer = tiny_lm()
    blocks = pack_lines([encode_line(tokenizer, t) for t in TEXTS], block_size=16)
    phase = PhaseSettings(steps=300, batch_size=4, learning_rate=3e-3)
    train_phase(llm, blocks, phase, "text", tmp_path / "lm.pt", {"test": 1}, 0, progress=False)
    torch.manual_seed(0)
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": None}
    config = SpeechLLMConfig(8, 3, 2, 16, PROMPTS, adapter, lora if adapter == "lora" else {})
    model = SpeechLLM(llm, tokenizer, config)
    layers, lengths = fake_speech([6, 5, 4])
    tasks = ["translate", "transcribe", "translate"]
    texts = ("the fish swims in the water", "waar is de grote vis", "we have to get out of here")
    targets = [model.target_ids(t) for t in texts]
    optimiser = torch.optim.Adam(TrainableParameters(model).parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model(layers, lengths, tasks, targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < fall * losses[0], losses[::10]


def test_batched_beam_search_matches_one_utterance_at_a_time():
    model = speech_llm("lora").eval()
    torch.nn.init.normal_(model.projector.mlp[2].weight, std=0.5)
    layers, lengths = fake_speech([9, 4, 6], seed=3)
    encoded = [layers[:, i, :n].half() for i, n in enumerate(lengths.tolist())]
    batched = generate_texts(model, encoded, "translate", 3, 5, batch_size=3, progress=False)
    alone = [generate_texts(model, [x], "translate", 3, 5, progress=False)[0] for x in encoded]
    assert batched == alone


# --------------------------------------------------------------------------------------------
# LM text: never a dev or test sentence


def write_cuts(path: Path, rows: list[tuple[str, str, str | None]]) -> None:
    """A minimal Lhotse CutSet: one cut per (id, Dutch text, English translation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for cut_id, text, english in rows:
            sup = {
                "id": cut_id,
                "recording_id": cut_id,
                "start": 0.0,
                "duration": 1.0,
                "channel": 0,
                "text": text,
                "custom": {"translation": english},
            }
            cut = {
                "id": cut_id,
                "start": 0.0,
                "duration": 1.0,
                "channel": 0,
                "supervisions": [sup],
                "type": "MonoCut",
            }
            fh.write(json.dumps(cut) + "\n")


@pytest.fixture
def st_corpus_manifests(tmp_path):
    root = tmp_path / "manifests"
    write_cuts(
        root / "c/cuts_train.jsonl.gz",
        [
            ("t1", "de vis zwemt in het water", "The fish swims in the water."),
            ("t2", "waar is de deur", "Where is the door?"),  # also a test sentence
            ("t3", "kijk daar eens", "Have a look there."),  # its English is a dev translation
            ("t4", "hier is het water", None),
        ],
    )
    write_cuts(root / "c/cuts_dev.jsonl.gz", [("d1", "we moeten weg", "Have a look there.")])
    write_cuts(
        root / "c/cuts_test.jsonl.gz",
        [
            ("e1", "waar is de deur", "Where is the door?"),
            ("e2", "het bestand bestaat al", "The file already exists."),
        ],
    )
    return root


def catalogue_packages(root: Path) -> list[dict[str, str]]:
    messages = [
        ("The file already exists.", "Het bestand bestaat al."),  # a test sentence
        ("The disk is full.", "De schijf is vol."),
        ("The printer is out of paper.", "De printer heeft geen papier meer."),
    ]
    return [catalogue_package(root, "core-l10n", {"core": mo_file(messages)})]


def text_settings(packages, catalogues=True):
    return {
        "catalogues": catalogues,
        "packages": packages,
        "corpus": True,
        "parallel": True,
        "min_words": 3,
    }


def held_out(root: Path) -> set[str]:
    return {
        "we moeten weg",
        "waar is de deur",
        "het bestand bestaat al",
        "Where is the door?",
        "The file already exists.",
        "Have a look there.",
    }


def test_no_dev_or_test_sentence_reaches_any_lm_text(tmp_path, st_corpus_manifests):
    packages = catalogue_packages(tmp_path / "debs")
    text = gather_lm_text(
        text_settings(packages), st_corpus_manifests, "c", ["c"], tmp_path / "downloads"
    )
    assert "de schijf is vol" in text.dutch and "de vis zwemt in het water" in text.dutch
    assert "kijk daar eens" in text.dutch  # its Dutch is training text; its English is not
    assert set(text.all_sentences()).isdisjoint(held_out(st_corpus_manifests))
    # t2 in Dutch and English, t3 in English; the catalogue one never entered the pool.
    assert text.report["sources"]["c"]["held_out_left_out"] == 3
    settings = {
        "base": None,
        "architecture": "gpt2",
        "size": SIZE,
        "vocab_size": 300,
        "block_size": 32,
        "pretrain": {"steps": 2, "batch_size": 2, "learning_rate": 1e-3},
        "dutch": {"steps": 2, "batch_size": 2, "learning_rate": 1e-3},
        "text": text_settings(packages),
    }
    _, _, report, phases = build_lm(
        settings, text, PROMPTS["translate"], tmp_path / "ckpt", seed=1, progress=False
    )
    assert set(phases) == {"pretrain", "dutch"}
    assert any("\nEnglish translation:The fish swims" in line for line in phases["pretrain"])
    for lines in phases.values():
        for line in lines:
            assert not any(sentence in line for sentence in held_out(st_corpus_manifests)), line
    assert phases["dutch"] == text.dutch
    assert report["parameters"] > 0 and (tmp_path / "ckpt/dutch.pt").is_file()


def test_lm_text_with_a_held_out_sentence_is_refused():
    with pytest.raises(HeldOutTextInLMError, match="waar is de deur"):
        check_lm_text(["de vis zwemt", "Waar is de deur?"], ["waar is de deur"])


def test_lm_text_sources_can_leave_nothing(tmp_path, st_corpus_manifests):
    with pytest.raises(ValueError, match="give no Dutch sentence"):
        gather_lm_text(
            {**text_settings([], catalogues=False), "corpus": False},
            st_corpus_manifests,
            "c",
            ["c"],
            tmp_path,
        )


def test_packed_blocks_hold_every_token_once():
    blocks = pack_lines([[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 9, 2]], block_size=4)
    assert blocks.tolist() == [[1, 5, 6, 2], [1, 7, 2, 1], [8, 9, 9, 2]]


# --------------------------------------------------------------------------------------------
# Scoring and configuration


def test_translation_scores_with_intervals_and_signatures():
    refs = {"a": "The fish swims in the water.", "b": "Where is the door?", "c": None}
    perfect, rows = translation_scores(refs, {"a": refs["a"], "b": refs["b"], "c": "x"}, 200, 0)
    assert perfect["bleu"] == pytest.approx(100) and perfect["chrf"] == pytest.approx(100)
    assert perfect["n_utts"] == 2 and perfect["n_without_reference"] == 1
    assert perfect["bleu_signature"].startswith("nrefs:1|case:mixed")
    assert "chrF2" in perfect["chrf_signature"] or "nc:6" in perfect["chrf_signature"]
    partial, _ = translation_scores(refs, {"a": "The fish swims.", "b": "Where door?"}, 200, 0)
    assert partial["bleu_low"] <= partial["bleu"] <= partial["bleu_high"] < 100
    assert partial["chrf_low"] <= partial["chrf"] <= partial["chrf_high"] < 100
    assert [r["id"] for r in rows] == ["a", "b"]


def test_transcripts_are_scored_by_the_asr_wer_code():
    record, _ = transcription_scores({"a": "waar is de deur"}, {"a": "Waar is de deur?"}, 50, 0)
    assert record["wer"] == 0 and record["n_words"] == 4
    record, _ = transcription_scores({"a": "waar is de deur"}, {"a": "waar de deur"}, 50, 0)
    assert record["wer"] == pytest.approx(0.25)


def test_config_errors_name_the_st_key(tmp_path):
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    bad = dict(default)
    bad["st"] = {**default["st"], "llms": {"x": {"dutch": {"steps": 1}}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"st\.llms\.x: 'size' is a required property"):
        load_config(tmp_path / "c.yaml")
    bad["st"] = {**default["st"], "adapters": ["prefix"]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"st\.adapters\.0: 'prefix' is not allowed"):
        load_config(tmp_path / "c.yaml")


def test_st_encoders_must_be_upstreams_and_take_part_only_when_fine_tuned():
    config = load_config(REPO / "config.yaml")
    config["finetune"]["upstreams"] = ["fbank", "apc"]
    assert [r.cell.model for r in st_runs(config)] == ["fbank", "apc"]  # wav2vec2 left out
    config["st"]["encoders"] = ["fbank", "wav2vec3"]
    with pytest.raises(ValueError, match=r"st\.encoders: \['wav2vec3'\] are not upstreams"):
        st_runs(config)


def test_default_grid_aligns_the_three_named_encoders():
    config = load_config(REPO / "config.yaml")
    runs = st_runs(config)
    assert [r.cell.model for r in runs] == ["fbank", "apc", "wav2vec2"]
    assert {r.path for r in runs} >= {"fbank/none/none/tiny-nl-frozen"}
    packages = config["st"]["llms"]["tiny-nl"]["text"]["packages"]
    assert packages and all(len(p["sha256"]) == 64 for p in packages)


def test_an_aligned_lora_model_is_saved_and_rebuilt_around_its_lm_directory(tmp_path):
    """align_llm's checkpoint holds only what trained; decoding rebuilds the same model."""
    from sslgrid.features.fbank import FbankConfig
    from sslgrid.models.factory import build_upstream, upstream_spec

    llm, tokenizer = tiny_lm()
    llm.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    upstream = build_upstream("fbank", {}, FbankConfig())
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": None}
    config = SpeechLLMConfig(80, 1, 10, 16, PROMPTS, "lora", lora)
    model = SpeechLLM(*load_causal_lm(tmp_path / "lm"), config)
    encoded = [torch.randn(1, n, 80).half() for n in (30, 22, 41)]
    targets = [{"translate": "the fish", "transcribe": "de vis"}] * 3
    examples = make_examples(model, targets, [30, 22, 41], ["translate", "transcribe"])
    run_config = {
        "upstream": upstream_spec("fbank", {}, FbankConfig()),
        "llm_dir": str(tmp_path / "lm"),
        "speech_llm": config.to_dict(),
        "training": {"batch_seconds": 1.0},
    }
    out = tmp_path / "st" / "model.pt"
    align_llm(
        model,
        (encoded, examples),
        (encoded, examples),
        run_config,
        out,
        epochs=2,
        batch_frames=60,
        learning_rate=1e-2,
        seed=0,
        progress=False,
        extra={"upstream": upstream.state_dict()},
    )
    saved = torch.load(out, weights_only=False)
    assert saved["model"].keys() == TrainableParameters(model).state_dict().keys()
    assert any("lora_" in k for k in saved["model"]) and not any("wte" in k for k in saved["model"])
    assert (out.parent / "history.tsv").read_text().count("\n") == 3  # header and two epochs
    _, rebuilt, _ = load_speech_llm(out)
    expected = generate_texts(model.eval(), encoded, "translate", 2, 4, progress=False)
    assert generate_texts(rebuilt, encoded, "translate", 2, 4, progress=False) == expected


def test_bleu_is_plotted_against_the_encoders_wer(tmp_path):
    coords = {
        "pool": "none",
        "amount": "none",
        "llm": "tiny-nl",
        "adapter": "frozen",
        "corpus": "c",
        "split": "test",
    }
    scores = []
    for i, (model, task) in enumerate(
        [("fbank", "translate"), ("fbank", "transcribe"), ("apc", "translate")]
    ):
        record = {"coords": {**coords, "model": model, "task": task}, "n_utts": 3, "n_words": 9}
        if task == "translate":
            record.update(
                bleu=10.0 + i,
                bleu_low=5.0,
                bleu_high=20.0,
                chrf=30.0,
                chrf_low=20.0,
                chrf_high=40.0,
                bleu_signature="nrefs:1",
                chrf_signature="nc:6",
            )
        else:
            record.update(wer=0.5, wer_low=0.4, wer_high=0.6, cer=0.2, cer_low=0.1, cer_high=0.3)
        path = tmp_path / f"{i}.json"
        path.write_text(json.dumps(record))
        scores.append(path)
    table = st_table(scores)
    assert table.loc[1, "wer"] == 50.0 and pd.isna(table.loc[1, "bleu"])
    assert table.loc[0, "bleu_signature"] == "nrefs:1"
    wer = pd.DataFrame(
        [
            {
                "model": m,
                "pool": "none",
                "amount": "none",
                "finetune": ft,
                "decoder": d,
                "corpus": "c",
                "split": "test",
                "wer": w,
                "wer_low": w - 5,
                "wer_high": w + 5,
            }
            for m, w in (("fbank", 80.0), ("apc", 60.0))
            for ft in ("frozen-c", "full-c")
            for d in ("greedy", "lm")
        ]
    )
    out = tmp_path / "plots" / "bleu_vs_wer.png"
    assert plot_bleu_vs_wer(table, wer, out, finetune="frozen-c") == 2
    assert out.stat().st_size > 0
    # Tables written before pre-training repeats (no pretrain_repeat column) still match.
    older = table.drop(columns="pretrain_repeat")
    assert plot_bleu_vs_wer(older, wer, out, finetune="frozen-c") == 2
    with pytest.raises(ValueError, match="several rows per encoder cell"):
        plot_bleu_vs_wer(table, wer, out)


# --------------------------------------------------------------------------------------------
# End to end


@pytest.mark.e2e
def test_snakemake_builds_the_st_table(tmp_path):
    """fbank and APC aligned to a tiny LM, both tasks, scored into results/st_table.csv (the
    plot against the WER table is tested above: building the ASR grid here would double the
    run)."""
    packages = make_fillets_packages(tmp_path / "pkgs", tiny_levels())
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = tiny_config(packages, ["fbank", "apc"])
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    args = snakemake_args(workdir, workdir / "tiny.yaml")
    run([*args, "results/st_table.csv"], workdir, tool_env())
    with open(workdir / "results/st_table.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cells = {(r["model"], r["adapter"], r["task"]) for r in rows}
    assert cells == {
        (m, "frozen", t) for m in ("fbank", "apc") for t in ("translate", "transcribe")
    }
    for row in rows:
        assert row["llm"] == "tiny-nl" and (row["corpus"], row["split"]) == ("fillets-nl", "test")
        metric = "bleu" if row["task"] == "translate" else "wer"
        low, value, high = (float(row[f"{metric}{s}"]) for s in ("_low", "", "_high"))
        assert low <= value <= high
        assert (row["bleu_signature"] != "") == (row["task"] == "translate")
    lm_dir = workdir / "results/st/llm/tiny-nl"
    assert (lm_dir / "config.json").is_file() and (lm_dir / "tokenizer.json").is_file()
    lm_text = [json.loads(line) for p in (lm_dir / "text").glob("*.jsonl") for line in p.open()]
    held = set()
    for split in ("dev", "test"):
        with gzip.open(workdir / f"data/manifests/fillets-nl/cuts_{split}.jsonl.gz", "rt") as fh:
            for line in fh:
                sup = json.loads(line)["supervisions"][0]
                held |= {sup["text"], sup["custom"]["translation"]}
    # Parallel lines hold a Dutch sentence in the translate prompt, then its English.
    prompt = load_config(workdir / ".snakemake/sslgrid/config.yaml")["st"]["prompts"]
    before, after = split_prompt(prompt["translate"])
    parts = [p for line in lm_text for p in line.removeprefix(before).split(after)]
    assert parts and not {normalise(p) for p in parts} & {normalise(h) for h in held}
    again = run([*args, "-n", "results/st_table.csv"], workdir, tool_env())
    assert "Nothing to be done" in again.stdout + again.stderr
