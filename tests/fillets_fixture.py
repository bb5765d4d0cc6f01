"""Build small but real Fish Fillets Debian packages for tests, in a fraction of a second.

``make_fillets_packages`` writes the two packages the corpus recipe reads: an audio package
with one generated Ogg Vorbis clip per dialog (22.05 kHz stereo, like the real track) and a
data package with the ``dialogs_<lang>.lua`` scripts. Both are genuine ``.deb`` files (``ar``
archives with ``debian-binary``, ``control.tar.xz`` and ``data.tar.xz``).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

GAME_ROOT = "usr/share/games/fillets-ng"
AUDIO_RATE = 22050

DialogSpec = tuple[str, str, str, str | None]  # dialog id, font, English, translation


def make_fillets_packages(
    root: Path,
    levels: Mapping[str, Sequence[DialogSpec]],
    language: str = "nl",
    seconds: float = 1.0,
    *,
    without_audio: Collection[str] = (),
    audio_only: Mapping[str, Sequence[str]] | None = None,
    corrupt_audio: Collection[str] = (),
) -> list[dict[str, str]]:
    """Write the audio and script packages under ``root``; return their package entries.

    ``levels`` maps a level name to its dialogs; a translation of ``None`` writes a
    ``dialogId`` with no ``dialogStr``. ``without_audio`` names ``"<level>/<id>"`` dialogs that
    get no clip, ``audio_only`` adds clips that no script mentions, and ``corrupt_audio`` names
    clips whose bytes are not audio. Entries are ``{"name", "url", "sha256"}`` with ``file://``
    urls, ready for ``prepare_fillets``.
    """
    root.mkdir(parents=True, exist_ok=True)
    audio_files: dict[str, bytes] = {}
    script_files: dict[str, bytes] = {}
    for level, dialogs in levels.items():
        script_files[f"{GAME_ROOT}/script/{level}/dialogs_{language}.lua"] = _lua(dialogs)
        for dialog_id, *_ in dialogs:
            if f"{level}/{dialog_id}" not in without_audio:
                audio_files[_clip_path(level, dialog_id, language)] = b""
    for level, dialog_ids in (audio_only or {}).items():
        for dialog_id in dialog_ids:
            audio_files[_clip_path(level, dialog_id, language)] = b""
    for path in audio_files:
        level, dialog_id = _level_and_id(path, language)
        corrupt = f"{level}/{dialog_id}" in corrupt_audio
        audio_files[path] = b"not an ogg file" if corrupt else _ogg(dialog_id, seconds)
    return [
        _package(root, f"fillets-ng-data-{language}", audio_files),
        _package(root, "fillets-ng-data", script_files),
    ]


def _clip_path(level: str, dialog_id: str, language: str) -> str:
    return f"{GAME_ROOT}/sound/{level}/{language}/{dialog_id}.ogg"


def _level_and_id(path: str, language: str) -> tuple[str, str]:
    level, _, name = path.removeprefix(f"{GAME_ROOT}/sound/").partition(f"/{language}/")
    return level, name.removesuffix(".ogg")


def _lua(dialogs: Sequence[DialogSpec]) -> bytes:
    """A dialogs script in the layout of the real ones: two calls, then two blank lines."""
    lines = [""]
    for dialog_id, font, english, translation in dialogs:
        lines.append(f"dialogId({_quote(dialog_id)}, {_quote(font)}, {_quote(english)})")
        if translation is not None:
            lines.append(f"dialogStr({_quote(translation)})")
        lines += ["", ""]
    return "\n".join(lines).encode()


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ogg(dialog_id: str, seconds: float) -> bytes:
    """A few harmonics whose pitch depends on the dialog id, as 22.05 kHz stereo Vorbis."""
    f0 = 100.0 + zlib.crc32(dialog_id.encode()) % 200
    t = np.arange(int(seconds * AUDIO_RATE)) / AUDIO_RATE
    mono = sum(0.2 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 4))
    stereo = np.stack([mono, 0.8 * mono], axis=1).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, stereo, AUDIO_RATE, format="OGG", subtype="VORBIS")
    return buffer.getvalue()


def _package(root: Path, name: str, files: Mapping[str, bytes]) -> dict[str, str]:
    control = (
        f"Package: {name}\nVersion: 1.0.1-1.1\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: test fixture\n"
    ).encode()
    deb = _ar(
        [
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz", _tar_xz({"control": control})),
            ("data.tar.xz", _tar_xz(files)),
        ]
    )
    path = root / f"{name}_1.0.1-1.1_all.deb"
    path.write_bytes(deb)
    return {
        "name": name,
        "url": path.resolve().as_uri(),
        "sha256": hashlib.sha256(deb).hexdigest(),
    }


def _tar_xz(files: Mapping[str, bytes]) -> bytes:
    """A ``./``-rooted tar.xz, as dpkg-deb writes them, with the parent directories."""
    buffer = io.BytesIO()
    now = 1_600_000_000  # fixed, so equal inputs give byte-identical packages
    with tarfile.open(fileobj=buffer, mode="w:xz", preset=0) as tar:
        for directory in sorted({p for path in files for p in _parents(path)}):
            info = tarfile.TarInfo(f"./{directory}/")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
            tar.addfile(info)
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(f"./{path}")
            info.size, info.mode, info.mtime = len(data), 0o644, now
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _parents(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _ar(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A common-format ``ar`` archive: 60-byte headers, members padded to even length."""
    out = [b"!<arch>\n"]
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{0o100644:<8o}{len(data):<10}".encode() + b"`\n"
        assert len(header) == 60
        out += [header, data, b"\n" if len(data) % 2 else b""]
    return b"".join(out)
