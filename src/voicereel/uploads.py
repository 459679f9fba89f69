"""Hostile uploads: decoding and checking a reference recording under a time limit.

Everything else about uploads is bounded elsewhere: the body size while it arrives
(api/body_guard.py), the format by content and the duration from the header (audio/io.py).
A decoder may still be slow on a crafted file, so the work runs on a thread of its own and the
request is answered 422 when it passes `decode_timeout_seconds`. The thread cannot be killed,
but `decode_upload` never decodes more than `max_reference_seconds`, so it ends by itself.
"""

from __future__ import annotations

import threading

from voicereel.audio.io import DecodedAudio, SpeechReport, check_reference, decode_upload
from voicereel.errors import DecodeTimedOut
from voicereel.settings import Settings


def decode_reference(data: bytes, settings: Settings) -> tuple[DecodedAudio, SpeechReport]:
    """Decode and judge an uploaded reference; raises the audio errors or `DecodeTimedOut`."""
    outcome: list[tuple[DecodedAudio, SpeechReport]] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            decoded = decode_upload(data, max_seconds=settings.max_reference_seconds)
            outcome.append((decoded, check_reference(decoded,
                                                     settings.min_reference_speech_seconds)))
        except BaseException as exc:  # handed to the request thread below
            failure.append(exc)

    worker = threading.Thread(target=work, name="reference-decode", daemon=True)
    worker.start()
    worker.join(settings.decode_timeout_seconds)
    if worker.is_alive():
        raise DecodeTimedOut(f"decoding and checking the recording took longer than "
                             f"{settings.decode_timeout_seconds:g} s")
    if failure:
        raise failure[0]
    return outcome[0]
