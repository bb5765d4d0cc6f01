"""Audio input and output: decode to 16 kHz mono float32, write FLAC atomically.

Reading goes through ``soundfile`` (libsndfile: WAV, FLAC, Ogg Vorbis, ...) because torchaudio
2.9 and later no longer do audio I/O; resampling uses ``torchaudio.functional.resample``.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

__all__ = ["AudioError", "decode_audio", "load_audio", "write_flac"]


class AudioError(ValueError):
    """Audio that cannot be used; the message names the file and what is wrong with it."""


def load_audio(path: str | os.PathLike[str], target_sr: int = 16000) -> np.ndarray:
    """Read ``path`` as a mono float32 array at ``target_sr`` Hz.

    Channels are averaged; the signal is resampled when the file's rate differs.
    Raises ``AudioError`` for a missing file, undecodable data or zero-length audio.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    return _decode(path, str(path), target_sr)


def decode_audio(data: bytes, source: str, target_sr: int = 16000) -> np.ndarray:
    """Like ``load_audio`` for encoded bytes held in memory; ``source`` names them in errors."""
    return _decode(io.BytesIO(data), source, target_sr)


def _decode(file: Path | io.BytesIO, source: str, target_sr: int) -> np.ndarray:
    try:
        samples, sr = sf.read(file, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{source}: cannot decode audio ({exc})") from exc
    if samples.shape[0] == 0:
        raise AudioError(f"{source}: zero-length audio")
    mono = samples.mean(axis=1, dtype=np.float32)
    return resample(mono, sr, target_sr)


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono float32 signal; a no-op when the rates already agree."""
    if orig_sr == target_sr:
        return np.ascontiguousarray(samples, dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    return AF.resample(tensor, orig_sr, target_sr).numpy().astype(np.float32, copy=False)


def write_flac(path: str | os.PathLike[str], samples: np.ndarray, sr: int) -> None:
    """Write mono ``samples`` as 16-bit FLAC, atomically: readers never see a partial file.

    Samples are clipped to [-1, 1] first, since resampling can overshoot full scale and 16-bit
    PCM would otherwise wrap around.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp_name, clipped, sr, format="FLAC", subtype="PCM_16")
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
