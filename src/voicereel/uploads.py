"""Hostile uploads: decoding, checking and analysing a reference recording, bounded.

Everything else about uploads is bounded elsewhere: the body size while it arrives
(api/body_guard.py), the format by content, the header's claims (rate, channels, duration)
before decoding and the decoded length in samples at any rate (audio/io.py). A decoder or the
engine's voice analysis may still be slow on a crafted file, so the whole work (decode, speech
check, analysis) runs on a thread of its own and the request is answered 422 when it passes
`decode_timeout_seconds`. A thread cannot be killed, so it keeps one of `decode_workers` slots
until it ends by itself (`decode_upload` never decodes more than `max_reference_seconds`);
while every slot is taken, uploads are answered 503 with `Retry-After` instead of piling up
threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from voicereel.audio.io import (
    DecodedAudio,
    HeaderLimits,
    SpeechReport,
    check_reference,
    decode_upload,
)
from voicereel.errors import DecodeBusy, DecodeTimedOut
from voicereel.settings import Settings

T = TypeVar("T")


@dataclass
class Reference(Generic[T]):
    """A decoded reference, its speech measurement and what the engine made of it."""

    audio: DecodedAudio
    report: SpeechReport
    analysis: T


class _Slots:
    """A count of the decode threads alive in this process, capped by the caller's setting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = 0

    def take(self, size: int) -> bool:
        with self._lock:
            if self._busy >= size:
                return False
            self._busy += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._busy -= 1


_slots = _Slots()


def header_limits(settings: Settings) -> HeaderLimits:
    """What an upload's header may declare, from the settings."""
    return HeaderLimits(min_rate=settings.min_reference_sample_rate,
                        max_rate=settings.max_reference_sample_rate,
                        max_channels=settings.max_reference_channels,
                        max_samples=settings.max_reference_samples)


def decode_reference(data: bytes, settings: Settings,
                     analyse: Callable[[np.ndarray, int], T]) -> Reference[T]:
    """Decode, judge and analyse (`analyse(samples, rate)`) an uploaded reference, bounded.

    Raises the audio errors, `DecodeTimedOut` past `decode_timeout_seconds`, and `DecodeBusy`
    when `decode_workers` uploads are already being worked on.
    """
    if not _slots.take(settings.decode_workers):
        raise DecodeBusy(f"{settings.decode_workers} uploads are being decoded; retry shortly",
                         defer=settings.decode_retry_after_seconds)
    limits = header_limits(settings)
    outcome: list[Reference[T]] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            decoded = decode_upload(data, max_seconds=settings.max_reference_seconds,
                                    limits=limits)
            report = check_reference(decoded, settings.min_reference_speech_seconds)
            outcome.append(Reference(decoded, report,
                                     analyse(decoded.samples, decoded.sample_rate)))
        except BaseException as exc:  # handed to the request thread below
            failure.append(exc)
        finally:
            _slots.give_back()

    worker = threading.Thread(target=work, name="reference-decode", daemon=True)
    try:
        worker.start()
    except BaseException:
        _slots.give_back()
        raise
    worker.join(settings.decode_timeout_seconds)
    if worker.is_alive():
        raise DecodeTimedOut(f"decoding, checking and analysing the recording took longer "
                             f"than {settings.decode_timeout_seconds:g} s")
    if failure:
        raise failure[0]
    return outcome[0]
