"""Encoding finished audio to the output formats a customer can ask for."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import BinaryIO

import lameenc
import numpy as np
import soundfile as sf

from voicereel.audio.io import resample_blocks

FORMATS = ("wav", "mp3", "flac", "ogg")
CONTENT_TYPES = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
}
EXTENSIONS = {"wav": ".wav", "mp3": ".mp3", "flac": ".flac", "ogg": ".ogg"}

MP3_BITRATE_KBPS = 128
MP3_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
_OGG_BLOCK = 1 << 16


def mp3_sample_rate(sample_rate: int) -> int:
    """The MPEG sample rate an MP3 of `sample_rate` audio is written at.

    The nearest supported rate at or above the requested one, or 48000 above that.
    """
    for rate in MP3_SAMPLE_RATES:
        if rate >= sample_rate:
            return rate
    return MP3_SAMPLE_RATES[-1]


def encode(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode float32 mono samples as `fmt` and return the file bytes (see `write_encoded`)."""
    buffer = io.BytesIO()
    write_encoded([samples], sample_rate, fmt, buffer)
    return buffer.getvalue()


def write_encoded(blocks: Iterable[np.ndarray], sample_rate: int, fmt: str,
                  out: BinaryIO) -> None:
    """Encode float32 mono audio, given a block at a time, as `fmt` (wav, mp3, flac or ogg)
    into the seekable file `out`, holding one block at a time.

    Samples are clipped to [-1, 1]. WAV and FLAC are 16-bit PCM and keep the exact sample count
    and rate. OGG is Vorbis. MP3 is mono CBR at 128 kbps; MPEG allows only 8000, 11025, 12000,
    16000, 22050, 24000, 32000, 44100 and 48000 Hz, so any other rate is first resampled to the
    nearest supported rate at or above it (48000 above that). MP3 is not sample-exact: the
    encoder adds delay and padding at both ends (about 1100 samples in all), so caption times
    against an MP3 are exact only to that tolerance.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    clipped = (np.clip(np.asarray(b, dtype=np.float32).reshape(-1), -1.0, 1.0) for b in blocks)
    if fmt == "mp3":
        _write_mp3(clipped, sample_rate, out)
        return
    subtype = "VORBIS" if fmt == "ogg" else "PCM_16"
    with sf.SoundFile(out, "w", samplerate=sample_rate, channels=1, format=fmt.upper(),
                      subtype=subtype) as f:
        for block in clipped:
            # libsndfile's Vorbis writer has crashed on very large single writes: small pieces
            for start in range(0, len(block), _OGG_BLOCK):
                f.write(block[start:start + _OGG_BLOCK])


def _write_mp3(blocks: Iterable[np.ndarray], sample_rate: int, out: BinaryIO) -> None:
    rate = mp3_sample_rate(sample_rate)
    enc = lameenc.Encoder()
    enc.set_bit_rate(MP3_BITRATE_KBPS)
    enc.set_in_sample_rate(rate)
    enc.set_out_sample_rate(rate)
    enc.set_channels(1)
    enc.set_quality(2)
    for block in resample_blocks(blocks, sample_rate, rate):
        pcm = np.round(np.clip(block, -1.0, 1.0) * 32767.0).astype("<i2")
        out.write(bytes(enc.encode(pcm.tobytes())))
    out.write(bytes(enc.flush()))
