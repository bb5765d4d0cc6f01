"""The synthesiser's own phoneme timing: libespeak-ng's phoneme events, through ctypes.

The ``espeak-ng`` command has no option that prints when each phoneme starts, but the library
does report it: initialised with ``espeakINITIALIZE_PHONEME_EVENTS``, every synthesis callback
carries ``espeakEVENT_PHONEME`` events whose ``sample`` is the phoneme's first sample and whose
``id.string`` is its mnemonic (the ``-x`` mnemonics ``sslgrid.probe.phones`` reads). In
synchronous mode the library's samples are those of ``espeak-ng --stdout`` with the same voice,
rate and pitch, minus the trailing silence the command appends (checked in the tests), so the
events time the synthetic corpus' clean speech exactly; sox's resampling and reverberation and
the added noise keep the timing.

The library keeps global state, so one process holds one ``EspeakTimer`` (a second one reuses
the first initialisation) and calls are serialised with a lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sslgrid.probe.phones import ESPEAK_NL, OTHER, split_espeak_mnemonics

LIBRARY_NAMES = ("libespeak-ng.so.1", "espeak-ng")
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
EVENT_LIST_TERMINATED = 0
EVENT_PHONEME = 7
POS_CHARACTER = 1
CHARS_UTF8 = 1
PARAM_RATE = 1
PARAM_PITCH = 3
EE_OK = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class EspeakLibraryError(RuntimeError):
    """libespeak-ng is missing or refused a request."""


@dataclass(frozen=True)
class PhonemeEvent:
    """One phoneme as spoken: its espeak mnemonic and first sample (at ``sample_rate``)."""

    mnemonic: str
    sample: int


@dataclass(frozen=True)
class TimedSynthesis:
    samples: np.ndarray  # int16, the speech as espeak-ng --stdout writes it (no trailing pad)
    sample_rate: int
    events: tuple[PhonemeEvent, ...]

    def phone_starts(self) -> list[tuple[str, float]]:
        """(phone, start in seconds) of every phone, mapped as ``sslgrid.probe.phones`` does.

        Pauses and modifiers are left out as the phonemiser leaves them out; a mnemonic that
        maps to two phones (``tS``) starts both at its start.
        """
        out = []
        for event in self.events:
            for mnemonic in split_espeak_mnemonics(event.mnemonic):
                for phone in ESPEAK_NL.get(mnemonic, (OTHER,)):
                    out.append((phone, event.sample / self.sample_rate))
        return out


class EspeakTimer:
    """Synthesise text with libespeak-ng and collect its phoneme events."""

    _lock = threading.Lock()
    _lib: ctypes.CDLL | None = None
    _sample_rate: int = 0

    def __init__(self) -> None:
        with self._lock:
            if EspeakTimer._lib is None:
                lib = _load_library()
                rate = lib.espeak_Initialize(
                    AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INITIALIZE_PHONEME_EVENTS
                )
                if rate <= 0:
                    raise EspeakLibraryError(f"espeak_Initialize failed ({rate})")
                lib.espeak_Synth.argtypes = [
                    ctypes.c_char_p,
                    ctypes.c_size_t,
                    ctypes.c_uint,
                    ctypes.c_int,
                    ctypes.c_uint,
                    ctypes.c_uint,
                    ctypes.c_void_p,
                    ctypes.c_void_p,
                ]
                lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
                EspeakTimer._lib, EspeakTimer._sample_rate = lib, rate

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    def synthesise(
        self, text: str, voice: str = "nl", rate: int = 175, pitch: int = 50
    ) -> TimedSynthesis:
        """Speak ``text`` as ``espeak-ng -v voice -s rate -p pitch`` would, with its timing."""
        lib = self._lib
        assert lib is not None
        chunks: list[np.ndarray] = []
        events: list[PhonemeEvent] = []

        def collect(wav, count, event_list) -> int:
            if count > 0:
                chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
            i = 0
            while event_list[i].type != EVENT_LIST_TERMINATED:
                event = event_list[i]
                if event.type == EVENT_PHONEME:
                    name = bytes(event.id.string).split(b"\0", 1)[0].decode("ascii", "replace")
                    events.append(PhonemeEvent(name, int(event.sample)))
                i += 1
            return 0

        callback = _CALLBACK(collect)  # kept alive until synthesis returns
        data = text.encode("utf-8")
        with self._lock:
            lib.espeak_SetSynthCallback(callback)
            _check(lib.espeak_SetVoiceByName(voice.encode("ascii")), f"voice {voice!r}")
            _check(lib.espeak_SetParameter(PARAM_RATE, int(rate), 0), f"rate {rate}")
            _check(lib.espeak_SetParameter(PARAM_PITCH, int(pitch), 0), f"pitch {pitch}")
            _check(
                lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None),
                f"synthesis of {text!r}",
            )
            _check(lib.espeak_Synchronize(), "synchronise")
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return TimedSynthesis(samples, self._sample_rate, tuple(events))


def _load_library() -> ctypes.CDLL:
    tried = []
    for name in (*LIBRARY_NAMES, ctypes.util.find_library("espeak-ng")):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError as err:
            tried.append(f"{name}: {err}")
    raise EspeakLibraryError(
        "libespeak-ng is not available (install the Debian package espeak-ng); tried "
        + "; ".join(tried)
    )


def _check(status: int, what: str) -> None:
    if status != EE_OK:
        raise EspeakLibraryError(f"libespeak-ng refused {what} (status {status})")


def boundary_errors(
    reference: Sequence[tuple[str, float]], hypothesis: Sequence[tuple[str, float]]
) -> list[float] | None:
    """Absolute start-time differences (seconds) of corresponding phones after the first.

    Phones correspond by position; ``None`` when the two phone sequences differ (they come
    from the same text, so they differ only if the phonemiser and the library disagree).
    The first phone's start is left out: it is where speech begins, not a phone boundary.
    """
    if [p for p, _ in reference] != [p for p, _ in hypothesis]:
        return None
    return [abs(r - h) for (_, r), (_, h) in zip(reference[1:], hypothesis[1:], strict=True)]
