"""The synthetic corpus: .mo catalogues, sentence filtering, splits, plans, espeak-ng, manifests."""

from __future__ import annotations

import gzip
import json
import re
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fillets_fixture import _package as make_deb
from lhotse import CutSet, RecordingSet, SupervisionSet

from sslgrid.audio import write_flac
from sslgrid.corpora.debian import ChecksumError
from sslgrid.corpora.synthetic import (
    CatalogueMessage,
    MoFormatError,
    Sentence,
    SynthesisError,
    SyntheticSettings,
    check_voices,
    collect_sentences,
    message_sentences,
    plan_clips,
    prepare_synthetic,
    read_mo_catalogue,
    split_sentences,
    unspeakable_reason,
)
from sslgrid.text import normalise

SPLITS = ("train", "dev", "test")
HEADER = "Content-Type: text/plain; charset=UTF-8\nLanguage: nl\n"


def mo_file(entries: Sequence[tuple[str, str]], charset: str = "utf-8", order: str = "<") -> bytes:
    """A compiled gettext catalogue, laid out as msgfmt writes one (without a hash table).

    ``entries`` are ``(msgid, msgstr)`` with gettext's own separators: ``\\x04`` after a
    context, ``\\x00`` between plural forms. The header entry is added.
    """
    pairs = sorted(
        [(b"", HEADER.replace("UTF-8", charset).encode())]
        + [(i.encode(charset), s.encode(charset)) for i, s in entries]
    )
    count = len(pairs)
    originals_at, translations_at = 28, 28 + 8 * count
    data_at = 28 + 16 * count
    tables: list[bytes] = [b"", b""]
    blob = b""
    for column in (0, 1):
        for pair in pairs:
            tables[column] += struct.pack(order + "2I", len(pair[column]), data_at + len(blob))
            blob += pair[column] + b"\0"
    header = struct.pack(
        order + "7I", 0x950412DE, 0, count, originals_at, translations_at, 0, data_at
    )
    return header + tables[0] + tables[1] + blob


# Real-looking catalogue entries: what each should become is in the tests below.
MESSAGES = [
    ("Print the user name.", "Toont de naam van de huidige gebruiker."),
    ("Show the user name.", "Toont de naam van de huidige gebruiker."),  # duplicate
    ("cannot open %s", "kan %s niet openen"),
    ("%d file\x00%d files", "%d bestand\x00%d bestanden"),
    ("Untranslated message here", ""),
    ("menu\x04Open the file now", "Open het bestand nu meteen"),
    (
        "Copy SOURCE to DEST.  Do it fast.\n\n  -a, --all      copy all\n                 files\n",
        "Kopieer BRON naar DOEL.  Doe het snel en goed.\n\n  -a, --all      alles\n"
        "                 kopiëren\n",
    ),
    ("See https://example.org for more", "Zie https://example.org voor meer informatie"),
    ("Try --help for more information.", "Probeer '--help' voor meer informatie."),
    ("Done", "Klaar"),
    ("Linux kernel module loader here", "Linux kernel module loader here"),
    ("Wait 5 seconds please.", "Wacht 5 seconden alstublieft."),
    ("Do you want to continue?", "Wilt u doorgaan met de installatie?"),
    ("The disk is full. Remove files.", "De schijf is vol. Er moeten bestanden weg."),
    ("Line one.\nLine two.", "Eerst dit en dan dat, zo gaat het hier."),
    ("Cannot read the partition table.", "Kan de partitietabel niet lezen."),
    ("The clock was not set.", "De klok is niet ingesteld."),
    ("No space left on device.", "Er is geen ruimte meer op het apparaat."),
    ("The network is unreachable.", "Het netwerk is onbereikbaar."),
    ("Whether the window is visible.", "Of het venster zichtbaar is."),
    ("The file already exists.", "Het bestand bestaat al."),
    ("Permission denied for this user.", "Toegang geweigerd voor deze gebruiker."),
    ("The printer is out of paper.", "De printer heeft geen papier meer."),
]
KEPT = {
    "toont de naam van de huidige gebruiker": "Print the user name.",
    "open het bestand nu meteen": "Open the file now",
    "kopieer bron naar doel": "Copy SOURCE to DEST.",
    "doe het snel en goed": "Do it fast.",
    "wacht vijf seconden alstublieft": "Wait 5 seconds please.",
    "wilt u doorgaan met de installatie": "Do you want to continue?",
    "de schijf is vol": "The disk is full.",
    "er moeten bestanden weg": "Remove files.",
    "eerst dit en dan dat zo gaat het hier": "Line one. Line two.",
    "kan de partitietabel niet lezen": "Cannot read the partition table.",
    "de klok is niet ingesteld": "The clock was not set.",
    "er is geen ruimte meer op het apparaat": "No space left on device.",
    "het netwerk is onbereikbaar": "The network is unreachable.",
    "of het venster zichtbaar is": "Whether the window is visible.",
    "het bestand bestaat al": "The file already exists.",
    "toegang geweigerd voor deze gebruiker": "Permission denied for this user.",
    "de printer heeft geen papier meer": "The printer is out of paper.",
}


def catalogue_package(root: Path, name: str, catalogues: dict[str, bytes]) -> dict[str, str]:
    files = {
        f"usr/share/locale/nl/LC_MESSAGES/{domain}.mo": mo for domain, mo in catalogues.items()
    }
    files["usr/share/locale/de/LC_MESSAGES/x.mo"] = mo_file([("Yes, really", "Ja, wirklich")])
    root.mkdir(parents=True, exist_ok=True)
    return make_deb(root, name, files)


# --------------------------------------------------------------------------------------------
# Catalogues


@pytest.mark.parametrize("order", ["<", ">"])
def test_read_mo_reads_plurals_contexts_and_either_byte_order(order: str) -> None:
    data = mo_file(
        [("Open", "Openen"), ("%d file\x00%d files", "%d bestand\x00%d bestanden"),
         ("menu\x04Quit", "Afsluiten"), ("Untranslated", "")],
        order=order,
    )  # fmt: skip
    messages = {m.msgid: m for m in read_mo_catalogue(data, "t.mo")}
    assert set(messages) == {"Open", "%d file", "Quit", "Untranslated"}  # no header entry
    assert messages["Open"] == CatalogueMessage("Open", ("Openen",))
    assert messages["%d file"] == CatalogueMessage(
        "%d file", ("%d bestand", "%d bestanden"), msgid_plural="%d files"
    )
    assert messages["Quit"] == CatalogueMessage("Quit", ("Afsluiten",), context="menu")
    assert messages["Untranslated"].msgstr == ("",)


def test_read_mo_decodes_with_the_header_charset() -> None:
    data = mo_file([("Idea", "Ideeën zijn één")], charset="iso-8859-1")
    assert read_mo_catalogue(data, "t.mo")[0].msgstr == ("Ideeën zijn één",)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x00" * 10, "too short"),
        (b"not a catalogue at all, really", "not a .mo file"),
        (mo_file([("a", "b")])[:40], "past the end"),
    ],
)
def test_read_mo_rejects_broken_files_naming_them(data: bytes, problem: str) -> None:
    with pytest.raises(MoFormatError, match=rf"^pkg\.deb:x\.mo: .*{problem}"):
        read_mo_catalogue(data, "pkg.deb:x.mo")


# --------------------------------------------------------------------------------------------
# Sentences


def test_message_sentences_joins_wrapped_lines_and_leaves_out_tables() -> None:
    text = (
        "\nOpmerking: als een bestand verwijderd wordt, is het vaak nog\n"
        "mogelijk om de inhoud te herstellen.  Gebruik bijv. de opdracht 'shred'.\n\n"
        "BROKKEN mag zijn:\n"
        "  N       in N bestanden splitsen\n"
        "  -a, --all     niets negeren, ook niet\n"
        "                de verborgen bestanden\n"
        "Daarna komt weer gewone tekst!\n"
    )
    assert message_sentences(text) == [
        [
            "Opmerking: als een bestand verwijderd wordt, is het vaak nog mogelijk om de "
            "inhoud te herstellen.",
            "Gebruik bijv. de opdracht 'shred'.",
        ],
        ["BROKKEN mag zijn:", "Daarna komt weer gewone tekst!"],
    ]


@pytest.mark.parametrize(
    ("sentence", "reason"),
    [
        ("kan %s niet openen", "format directive"),
        ("kan '%.250s' niet openen", "format directive"),
        ("%y tijdstip van laatste wijziging", "format directive"),
        ("bestand {name} bestaat al", "format directive"),
        ("waarde van ${HOME} is leeg", "format directive"),
        ("Zie https://www.gnu.org/software voor meer", "url, e-mail or path"),
        ("Meld fouten aan bug-coreutils@gnu.org alstublieft", "url, e-mail or path"),
        ("kan /etc/fstab niet lezen", "url, e-mail or path"),
        ("Probeer '--help' voor meer informatie.", "command-line option"),
        ("gebruik -r voor mappen", "command-line option"),
        ("Gebruik: ls [OPTIE]... [BESTAND]...", "code or markup"),
        ("de waarde a=b is ongeldig", "code or markup"),
        ("_Bestand openen nu meteen", "code or markup"),
        ("waarschuwing: '.' zou ':' moeten zijn", "quoted symbol"),
        ("Het is 50% klaar, bijna.", None),
        ("Zo'n bestand kan niet worden gelezen.", None),
        ("kan 'inotify' niet gebruiken; val terug op polsen", None),
        ("Locatie op afstand — doorzoekt alleen de huidige map", None),
        ("en/of meer dan één e-mail sturen", None),
    ],
)
def test_unspeakable_reason(sentence: str, reason: str | None) -> None:
    assert unspeakable_reason(sentence) == reason


def test_collect_sentences_keeps_speakable_distinct_sentences_with_their_english() -> None:
    messages = read_mo_catalogue(mo_file(MESSAGES), "core.mo")
    pool = collect_sentences([("core", "x/core.mo", messages)])
    assert {s.text: s.translation for s in pool.sentences} == KEPT
    assert all(s.source == "core:x/core.mo" for s in pool.sentences)
    by_text = {s.text: s for s in pool.sentences}
    assert by_text["wacht vijf seconden alstublieft"].orig_text == "Wacht 5 seconden alstublieft."
    report = pool.report()
    assert report["dropped"] == {
        "duplicate": 1,
        "format directive": 1,
        "identical to English": 1,
        "plural message": 1,
        "too short": 1,
        "untranslated message": 1,
        "url, e-mail or path": 1,
        "command-line option": 1,
    }
    assert report["packages"]["core"]["kept"] == report["kept"] == len(KEPT)
    assert report["dropped_examples"]["format directive"] == ["kan %s niet openen"]


def test_collect_sentences_without_a_trustworthy_english_pairing_has_none() -> None:
    message = CatalogueMessage(
        "First line. Second line.\n\nThird.",  # 2 + 1 sentences against the Dutch 1 + 2
        ("Eerst komt deze zin.\n\nDan komt die zin. En dan nog een zin.",),
    )
    pool = collect_sentences([("p", "c.mo", [message])])
    assert [(s.text, s.translation) for s in pool.sentences] == [
        ("eerst komt deze zin", None),
        ("dan komt die zin", None),
        ("en dan nog een zin", None),
    ]
    assert pool.report()["kept_without_translation"] == 3


def test_collect_sentences_leaves_out_excluded_texts_in_any_written_form() -> None:
    messages = read_mo_catalogue(mo_file(MESSAGES), "core.mo")
    exclude = ["Het netwerk is ONBEREIKBAAR!", "wacht vijf seconden alstublieft"]
    pool = collect_sentences([("core", "core.mo", messages)], exclude_texts=exclude)
    texts = {s.text for s in pool.sentences}
    assert texts == set(KEPT) - {normalise(t) for t in exclude}
    assert pool.report()["dropped"]["excluded"] == 2


def test_collect_sentences_word_limits() -> None:
    messages = read_mo_catalogue(mo_file(MESSAGES), "core.mo")
    pool = collect_sentences([("core", "core.mo", messages)], min_words=6, max_words=7)
    assert all(6 <= len(s.text.split()) <= 7 for s in pool.sentences)
    assert pool.report()["dropped"]["too short"] > 1


# --------------------------------------------------------------------------------------------
# Splits and plans


def test_split_sentences_is_disjoint_deterministic_and_near_the_fractions() -> None:
    texts = [f"zin nummer {i}" for i in range(200)]
    first = split_sentences(texts, 0.1, 0.1, seed=5)
    assert first == split_sentences(list(reversed(texts)), 0.1, 0.1, seed=5)
    assert first != split_sentences(texts, 0.1, 0.1, seed=6)
    counts = {split: list(first.values()).count(split) for split in SPLITS}
    assert counts == {"train": 160, "dev": 20, "test": 20}


@pytest.mark.parametrize("n", [3, 4, 7])
def test_split_sentences_fills_every_split_from_three_texts(n: int) -> None:
    for seed in range(5):
        assignment = split_sentences([f"t{i}" for i in range(n)], 0.1, 0.1, seed)
        assert set(assignment.values()) == set(SPLITS)


def _settings(**overrides: object) -> SyntheticSettings:
    config: dict = {
        "packages": [{"name": "p", "url": "file:///x.deb", "sha256": "0" * 64}],
        "hours": 0.01,
        "voices": ["nl", "nl+m3", "nl+f2"],
        "rate": [150, 190],
        "pitch": [30, 70],
        "noise_snr_db": [15, 30],
        "reverb": 0.5,
    }
    config.update(overrides)
    return SyntheticSettings.from_config(config, "synthetic-nl")


def test_plan_clips_is_seeded_per_sentence_and_changes_voice_per_rendition() -> None:
    sentences = [Sentence(f"zin {i}", f"Zin {i}?", None, "p:c.mo") for i in range(20)]
    settings = _settings()
    plans = list(plan_clips(sentences, settings, seed=3))
    assert len(plans) == 20 * 3
    again = {(p.sentence.text, p.rendition): p for p in plan_clips(sentences[::-1], settings, 3)}
    assert all(again[(p.sentence.text, p.rendition)] == p for p in plans)
    voices: dict[str, set[str]] = {}
    for plan in plans:
        voices.setdefault(plan.sentence.text, set()).add(plan.voice)
        assert 150 <= plan.rate <= 190 and 30 <= plan.pitch <= 70
        assert plan.snr_db is not None and 15 <= plan.snr_db <= 30
        assert plan.spoken_text == plan.sentence.text + "?"
    assert all(len(v) == 3 for v in voices.values())
    assert {p.room is None for p in plans} == {True, False}
    assert len({p.key for p in plans}) == len(plans)
    assert [p.voice for p in plan_clips(sentences, settings, 4)] != [p.voice for p in plans]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hours": 0}, r"corpora\.synthetic-nl\.hours: expected a number > 0, got 0"),
        ({"language": "nl/../x"}, r"corpora\.synthetic-nl\.language: expected a word"),
        ({"rate": [200, 100]}, r"corpora\.synthetic-nl\.rate: expected \[min, max\]"),
        ({"pitch": [0, 120]}, r"corpora\.synthetic-nl\.pitch"),
        ({"voices": []}, r"corpora\.synthetic-nl\.voices"),
        ({"reverb": 1.5}, r"corpora\.synthetic-nl\.reverb"),
        ({"dev_fraction": 0.5, "test_fraction": 0.5}, r"must be below 1"),
        ({"hourz": 1}, r"unknown key\(s\) \['hourz'\]; allowed: \["),
        ({"packages": [{"name": "p", "url": "u"}]}, r"packages\[0\]: expected exactly"),
        ({"recipe": "fillets"}, r"recipe: expected 'synthetic'"),
    ],
)
def test_settings_errors_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _settings(**overrides)


def test_settings_noise_can_be_switched_off() -> None:
    sentences = [Sentence("zin een", "Zin een.", None, "p:c.mo")]
    (plan, *_) = plan_clips(sentences, _settings(noise_snr_db=None), seed=1)
    assert plan.snr_db is None and plan.noise is None


# --------------------------------------------------------------------------------------------
# The recipe, with espeak-ng and sox

VOICES = ["nl", "nl+m3", "nl+f2"]


def _packages(root: Path) -> list[dict[str, str]]:
    more = {"a": mo_file(MESSAGES[12:18]), "b": mo_file(MESSAGES[18:])}
    return [
        catalogue_package(root, "core-l10n", {"core": mo_file(MESSAGES[:12])}),
        catalogue_package(root, "more-l10n", more),
    ]


def _config(packages: list[dict[str, str]], **overrides: object) -> dict:
    config: dict = {
        "recipe": "synthetic",
        "language": "nl",
        "region": "nl",
        "domain": "synthetic-tts",
        "packages": packages,
        "hours": 24 / 3600,
        "voices": VOICES,
        "rate": [170, 200],
        "pitch": [35, 65],
        "noise_snr_db": [15, 30],
        "reverb": 0.5,
        "dev_fraction": 0.15,
        "test_fraction": 0.15,
    }
    config.update(overrides)
    return config


def _prepare(base: Path, config: dict, **kwargs: object) -> dict:
    options: dict = {
        "download_dir": base / "dl",
        "audio_dir": base / "audio",
        "manifest_dir": base / "manifests",
        "seed": 7,
        "progress": False,
    }
    options.update(kwargs)
    return prepare_synthetic(config, **options)


def _cuts(manifest_dir: Path, split: str) -> CutSet:
    return CutSet.from_file(manifest_dir / f"cuts_{split}.jsonl.gz")


def test_prepare_writes_manifests_with_the_contract_fields(tmp_path: Path) -> None:
    packages = _packages(tmp_path / "debs")
    report = _prepare(tmp_path, _config(packages))
    manifests = tmp_path / "manifests"
    texts: dict[str, set[str]] = {}
    total = 0.0
    for split in SPLITS:
        recordings = RecordingSet.from_file(manifests / f"recordings_{split}.jsonl.gz")
        supervisions = SupervisionSet.from_file(manifests / f"supervisions_{split}.jsonl.gz")
        cuts = _cuts(manifests, split)
        assert len(recordings) == len(supervisions) == len(cuts) >= 1
        assert report["splits"][split]["utterances"] == len(cuts)
        texts[split] = {c.supervisions[0].text for c in cuts}
        for cut in cuts:
            (sup,) = cut.supervisions
            assert sup.id == sup.recording_id == cut.recording.id
            assert sup.text in KEPT and sup.language == "nl"
            assert sup.custom["translation"] == KEPT[sup.text]
            assert sup.custom["domain"] == "synthetic-tts" and sup.custom["region"] == "nl"
            assert sup.custom["corpus"] == "synthetic-nl"
            assert sup.custom["source"].split(":")[0] in {"core-l10n", "more-l10n"}
            tts = sup.custom["tts"]
            assert sup.speaker == "synthetic-nl-" + tts["voice"].replace("+", "-")
            assert tts["voice"] in VOICES and 170 <= tts["rate"] <= 200
            assert cut.recording.sampling_rate == 16000
            audio = cut.load_audio()
            assert audio.shape == (1, cut.recording.num_samples)
            assert np.sqrt(np.mean(audio**2)) > 0.01  # speech, not silence
            path = Path(cut.recording.sources[0].source)
            assert path.parent.parent == tmp_path / "audio"
            info = sf.info(str(path))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            total += cut.duration
    assert not texts["train"] & texts["dev"]
    assert not texts["train"] & texts["test"]
    assert not texts["dev"] & texts["test"]
    assert total <= 24 + 8  # the cap, give or take the first clip of dev and test
    assert report["text"]["kept"] == len(KEPT)
    assert set(report["text"]["packages"]) == {"core-l10n", "more-l10n"}
    assert report["text"]["packages"]["more-l10n"]["catalogues"] == [
        "usr/share/locale/nl/LC_MESSAGES/a.mo",
        "usr/share/locale/nl/LC_MESSAGES/b.mo",
    ]
    assert report["run"]["clips_synthesised"] >= sum(
        s["utterances"] for s in report["splits"].values()
    )
    written = json.loads((manifests / "report.json").read_text())
    assert written == report


def test_prepare_is_deterministic_to_the_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packages = _packages(tmp_path / "debs")
    reports = []
    for run in ("one", "two"):
        (tmp_path / run).mkdir()
        monkeypatch.chdir(tmp_path / run)  # relative audio paths, so manifests can be equal
        reports.append(
            _prepare(Path("."), _config(packages), audio_dir="audio", manifest_dir="manifests")
        )
    one, two = tmp_path / "one", tmp_path / "two"
    names = sorted(p.name for p in (one / "manifests").iterdir())
    assert len(names) == 10  # 3 kinds × 3 splits + report.json
    for name in names:
        if name != "report.json":
            assert (one / "manifests" / name).read_bytes() == (
                two / "manifests" / name
            ).read_bytes()
    reports[0].pop("run"), reports[1].pop("run")
    assert reports[0] == reports[1]
    flacs = sorted(p.relative_to(one) for p in (one / "audio").rglob("*.flac"))
    assert flacs == sorted(p.relative_to(two) for p in (two / "audio").rglob("*.flac"))
    for flac in flacs:
        assert (one / flac).read_bytes() == (two / flac).read_bytes()
    with gzip.open(one / "manifests" / "cuts_train.jsonl.gz", "rt") as f:
        assert '"source": "audio/' in f.read()


def test_prepare_resumes_keeping_clips_already_written(tmp_path: Path) -> None:
    packages = _packages(tmp_path / "debs")
    _prepare(tmp_path, _config(packages))
    (cut, *_) = _cuts(tmp_path / "manifests", "train")
    path = Path(cut.recording.sources[0].source)
    marker = 0.5 * np.sin(np.linspace(0, 2000, cut.recording.num_samples, dtype=np.float32))
    write_flac(path, marker, 16000)  # a rerun must not synthesise this clip again
    report = _prepare(tmp_path, _config(packages))
    assert report["run"]["clips_synthesised"] == 0
    assert report["run"]["clips_reused"] >= report["splits"]["train"]["utterances"]
    np.testing.assert_allclose(sf.read(str(path))[0], marker, atol=1e-4)


def test_prepare_more_hours_reuse_the_first_clips_and_add_voices(tmp_path: Path) -> None:
    packages = _packages(tmp_path / "debs")
    small = _prepare(tmp_path, _config(packages, hours=10 / 3600, voices=["nl", "nl+f2"]))
    big = _prepare(tmp_path, _config(packages, hours=1.0, voices=["nl", "nl+f2"]))
    assert big["run"]["clips_reused"] >= sum(s["utterances"] for s in small["splits"].values())
    train = _cuts(tmp_path / "manifests", "train")
    # 1 h is more than there is: every training sentence is spoken once per voice.
    assert len(train) == 2 * big["splits"]["train"]["sentences"]
    assert big["splits"]["train"]["speakers"] == ["synthetic-nl-nl", "synthetic-nl-nl-f2"]


def test_prepare_leaves_out_excluded_texts(tmp_path: Path) -> None:
    packages = _packages(tmp_path / "debs")
    exclude = ["Het netwerk is onbereikbaar.", "Er is geen ruimte meer op het apparaat."]
    report = _prepare(tmp_path, _config(packages, hours=1.0, voices=["nl"]), exclude_texts=exclude)
    texts = {
        c.supervisions[0].text for split in SPLITS for c in _cuts(tmp_path / "manifests", split)
    }
    assert texts == set(KEPT) - {normalise(t) for t in exclude}
    assert report["text"]["dropped"]["excluded"] == 2 and report["excluded_texts"] == 2


def test_prepare_sha256_mismatch_names_the_package(tmp_path: Path) -> None:
    packages = _packages(tmp_path / "debs")
    packages[1] = {**packages[1], "sha256": "f" * 64}
    with pytest.raises(ChecksumError, match=r"^package more-l10n: .*more-l10n.*SHA256 mismatch"):
        _prepare(tmp_path, _config(packages))
    assert not (tmp_path / "manifests").exists()


def test_prepare_package_without_dutch_catalogue_names_it(tmp_path: Path) -> None:
    packages = [make_deb(tmp_path, "empty-l10n", {"usr/share/doc/x/README": b"nothing"})]
    with pytest.raises(ValueError, match=r"package empty-l10n .* has no catalogue"):
        _prepare(tmp_path, _config(packages))


def test_check_voices_rejects_a_variant_espeak_would_silently_replace() -> None:
    with pytest.raises(SynthesisError, match=r"voice 'nl\+nobody': espeak-ng has no variant"):
        check_voices(["nl", "nl+nobody"])
    with pytest.raises(SynthesisError, match=r"voice 'xx': espeak-ng has no voice 'xx'"):
        check_voices(["xx"])
    versions = check_voices(VOICES)
    assert re.match(r"eSpeak NG", versions["espeak-ng"]) and "SoX" in versions["sox"]
