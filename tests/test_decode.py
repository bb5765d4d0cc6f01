"""scripts/decode.py and scripts/score.py run every decoder of a (cell, test set) in one process.

The test set is encoded and its CTC emissions computed once, greedy search and the LM's beam
search both read them, and each decoder's files are what a run of its own would write. The
recogniser is a tiny one fine-tuned here on random filterbanks for an epoch, the LM a bigram
ARPA file written by hand (KenLM reads ARPA text under the ``lm.bin`` name the lm stage uses),
so nothing needs lmplz.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
import torch
import yaml
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment
from lhotse.audio import AudioSource

pytest.importorskip("flashlight.lib.text", reason="flashlight-text is not installed")

from sslgrid.asr.downstream import DownstreamConfig  # noqa: E402
from sslgrid.asr.finetune import finetune_frozen  # noqa: E402
from sslgrid.features.fbank import FbankConfig  # noqa: E402
from sslgrid.features.store import FeatureCache, save_cache  # noqa: E402
from sslgrid.models.factory import build_upstream, upstream_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FBANK = FbankConfig()
WORDS = "de kat zit op het dak en een hond loopt in de tuin".split()
VOCABULARY = sorted(set(WORDS))
# The clip the features stage left out: in the test cuts, not in the test cache.
DROPPED = "gone"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_cache(ids: list[str], seed: int) -> FeatureCache:
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(40 + 9 * i, 80, generator=g).half() for i in range(len(ids))]
    return FeatureCache(ids, feats, FBANK)


def texts(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    return [
        " ".join(WORDS[int(j)] for j in torch.randint(len(WORDS), (3,), generator=g))
        for _ in range(n)
    ]


def write_cuts(path: Path, transcripts: dict[str, str]) -> Path:
    """One cut per id with one supervision, ``sup-<id>``; the audio is never read."""
    cuts = []
    for cut_id, text in transcripts.items():
        source = AudioSource(type="file", channels=[0], source=f"{cut_id}.wav")
        recording = Recording(cut_id, [source], 16000, 16000, 1.0)
        supervision = SupervisionSegment(f"sup-{cut_id}", cut_id, 0.0, 1.0, text=text)
        cuts.append(MonoCut(cut_id, 0.0, 1.0, 0, recording=recording, supervisions=[supervision]))
    CutSet.from_cuts(cuts).to_file(path)
    return path


def bigram_arpa(words: list[str]) -> str:
    """A flat word bigram (KenLM needs at least order 2): any word may start, follow or end."""
    unigrams = ["-99\t<s>\t-0.3", "-1.0\t</s>", "-2.0\t<unk>\t0"]
    unigrams += [f"-1.0\t{w}\t-0.3" for w in words]
    bigrams = [f"-0.5\t<s> {w}" for w in words] + [f"-0.5\t{w} </s>" for w in words]
    header = ["\\data\\", f"ngram 1={len(unigrams)}", f"ngram 2={len(bigrams)}", ""]
    body = ["\\1-grams:", *unigrams, "", "\\2-grams:", *bigrams, "", "\\end\\"]
    return "\n".join(header + body) + "\n"


@pytest.fixture(scope="module")
def cell(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fine-tuned checkpoint, test and dev inputs and cuts, an LM folder and a config."""
    root = tmp_path_factory.mktemp("cell")
    torch.manual_seed(0)
    downstream = DownstreamConfig(num_layers=1, hidden_size=16, dropout=0.0, subsample=2)
    finetune_frozen(
        build_upstream("fbank", {}, FBANK),
        # Every word once, so that the recogniser has every letter of the LM's lexicon.
        (random_cache([f"t{i}" for i in range(6)], seed=1), [" ".join(WORDS), *texts(5, seed=1)]),
        (random_cache([f"d{i}" for i in range(3)], seed=2), texts(3, seed=2)),
        downstream,
        # What scripts/finetune.py records, so that decoding can rebuild the recogniser.
        {
            "upstream": upstream_spec("fbank", {}, FBANK),
            "mode": "frozen",
            "downstream": downstream.to_dict(),
        },
        root / "finetune" / "model.pt",
        epochs=1,
        batch_seconds=2.5,
        learning_rate=3e-3,
        seed=0,
        progress=False,
    )
    test_ids, dev_ids = [f"u{i}" for i in range(4)], [f"v{i}" for i in range(3)]
    save_cache(random_cache(test_ids, seed=3), root / "fbank_test.pt")
    save_cache(random_cache(dev_ids, seed=4), root / "fbank_dev.pt")
    test_texts = dict(zip([*test_ids, DROPPED], texts(5, seed=5), strict=True))
    write_cuts(root / "cuts_test.jsonl.gz", test_texts)
    write_cuts(root / "cuts_dev.jsonl.gz", dict(zip(dev_ids, texts(3, seed=6), strict=True)))
    lm_dir = root / "lm"
    lm_dir.mkdir()
    (lm_dir / "lm.bin").write_text(bigram_arpa(VOCABULARY), encoding="utf-8")
    (lm_dir / "words.txt").write_text("\n".join(VOCABULARY) + "\n", encoding="utf-8")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["decode"]["lm"].update(beam_size=4, lm_weights=[0.0, 1.0], word_scores=[0.0])
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    return {
        "model": root / "finetune" / "model.pt",
        "features": root / "fbank_test.pt",
        "cuts": root / "cuts_test.jsonl.gz",
        "config": root / "config.yaml",
        "lm_dir": lm_dir,
        "dev_features": root / "fbank_dev.pt",
        "dev_cuts": root / "cuts_dev.jsonl.gz",
    }


def decode_args(cell: dict[str, Path], *decoders: str, lm: bool = True) -> list[str]:
    """decode.py's inputs for ``decoders``; ``--out`` and the rest are appended."""
    args = [f"--{k}={cell[k]}" for k in ("model", "features", "cuts")]
    if lm:
        args += [f"--{k.replace('_', '-')}={cell[k]}" for k in ("config", "lm_dir")]
        args += [f"--{k.replace('_', '-')}={cell[k]}" for k in ("dev_features", "dev_cuts")]
    return [*args, "--batch-seconds", "2.5", "--decoder", *decoders]


def read_hyps(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {row["id"]: row["hyp"] for row in map(json.loads, lines)}


@pytest.fixture(scope="module")
def decoded(cell: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """greedy and lm in one run of decode.py (in this process, so that its calls are
    counted): the output folder and how often the test and dev sets were encoded and run
    through the recogniser."""
    decode = load_script("decode")
    calls: Counter[str] = Counter()

    def counted(name: str):
        original = getattr(decode, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        return wrapper

    out = tmp_path_factory.mktemp("decoded")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("encode", "emissions"):
            patch.setattr(decode, name, counted(name))
        patch.setattr(decode, "setup_logging", lambda log: None)  # pytest keeps its handlers
        decode.main([*decode_args(cell, "greedy", "lm"), "--out", f"{out}/{{decoder}}/hyps.jsonl"])
    return {"out": out, "calls": calls}


def test_one_run_writes_every_decoders_hypotheses_from_one_encoding(decoded, cell):
    out = decoded["out"]
    # The test set once, the dev set once (for the LM's weights): not the test set per decoder.
    assert decoded["calls"] == {"encode": 2, "emissions": 2}
    greedy, lm = read_hyps(out / "greedy" / "hyps.jsonl"), read_hyps(out / "lm" / "hyps.jsonl")
    every = [f"sup-u{i}" for i in range(4)] + [f"sup-{DROPPED}"]
    assert list(greedy) == list(lm) == every
    assert greedy[f"sup-{DROPPED}"] == lm[f"sup-{DROPPED}"] == ""
    # A lexicon search spells only the LM's words.
    lm_words = [word for hyp in lm.values() for word in hyp.split()]
    assert lm_words and set(lm_words) <= set(VOCABULARY)
    weights = json.loads((out / "lm" / "lm_weights.json").read_text())
    assert weights["lm_weight"] in (0.0, 1.0) and weights["tuned_on"] == str(cell["dev_cuts"])
    assert not (out / "greedy" / "lm_weights.json").exists()
    assert not list(out.rglob("*.tmp"))


def test_one_decoder_writes_the_same_hypotheses_alone(decoded, cell, tmp_path):
    """The command line of a single decoder still works, and sharing changes nothing."""
    out, log = tmp_path / "hyps.jsonl", tmp_path / "decode.log"
    args = decode_args(cell, "greedy", lm=False)
    done = subprocess.run(
        [sys.executable, REPO / "scripts" / "decode.py", *args, "--out", out, "--log", log],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert read_hyps(out) == read_hyps(decoded["out"] / "greedy" / "hyps.jsonl")
    assert "left out by the features stage" in log.read_text()


def test_score_reads_the_references_once_for_every_decoder(decoded, cell, monkeypatch):
    score = load_script("score")
    reads: Counter[str] = Counter()
    original = score.read_references

    def counted(path):
        reads[str(path)] += 1
        return original(path)

    monkeypatch.setattr(score, "read_references", counted)
    out = decoded["out"]
    score.main(
        ["--cuts", str(cell["cuts"]), "--decoder", "greedy", "lm",
         "--hyps", f"{out}/{{decoder}}/hyps.jsonl", "--coord", "model=fbank",
         "--coord", "decoder={decoder}", "--n-resamples", "50",
         "--out", f"{out}/{{decoder}}/score.json", "--per-utt", f"{out}/{{decoder}}/per_utt.tsv"]
    )  # fmt: skip
    assert reads == {str(cell["cuts"]): 1}
    for decoder in ("greedy", "lm"):
        record = json.loads((out / decoder / "score.json").read_text())
        assert record["coords"] == {"model": "fbank", "decoder": decoder}
        assert record["hyps"] == f"{out}/{decoder}/hyps.jsonl"
        # The dropped clip is scored, as all deletions.
        assert record["n_utts"] == 5
        assert (out / decoder / "per_utt.tsv").read_text().count(f"sup-{DROPPED}\t") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--decoder", "greedy", "lm", "--out", "x/hyps.jsonl"], r"--out x/hyps.jsonl has no"),
        (["--decoder", "greedy", "greedy", "--out", "{decoder}.jsonl"], "greedy given more than"),
        (["--decoder", "lm", "--out", "x.jsonl"], "--decoder lm needs --config --lm-dir"),
    ],
)
def test_decode_refuses_outputs_it_could_not_write(args, message, capsys):
    decode = load_script("decode")
    inputs = ["--model", "m.pt", "--features", "f.pt", "--cuts", "c.jsonl.gz"]
    with pytest.raises(SystemExit):
        decode.parse_args([*inputs, *args])
    assert message in capsys.readouterr().err
