"""Encoding finished audio to the output formats a customer can ask for."""

from __future__ import annotations

import io

import lameenc
import numpy as np
import soundfile as sf

from voicereel.audio.io import resample

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
    """Encode float32 mono samples as `fmt` (wav, mp3, flac or ogg) and return the file bytes.

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
    x = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
    if fmt == "mp3":
        return _encode_mp3(x, sample_rate)
    buf = io.BytesIO()
    if fmt == "ogg":
        # libsndfile's Vorbis writer has crashed on very large single writes; feed it in blocks
        with sf.SoundFile(buf, "w", samplerate=sample_rate, channels=1, format="OGG",
                          subtype="VORBIS") as f:
            for start in range(0, len(x), _OGG_BLOCK):
                f.write(x[start : start + _OGG_BLOCK])
    else:
        sf.write(buf, x, sample_rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


def _encode_mp3(x: np.ndarray, sample_rate: int) -> bytes:
    rate = mp3_sample_rate(sample_rate)
    if rate != sample_rate:
        x = np.clip(resample(x, sample_rate, rate), -1.0, 1.0)
    pcm = np.round(x * 32767.0).astype("<i2")
    enc = lameenc.Encoder()
    enc.set_bit_rate(MP3_BITRATE_KBPS)
    enc.set_in_sample_rate(rate)
    enc.set_out_sample_rate(rate)
    enc.set_channels(1)
    enc.set_quality(2)
    return bytes(enc.encode(pcm.tobytes())) + bytes(enc.flush())
