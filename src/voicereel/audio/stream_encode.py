"""Encoders fed a stream of audio a piece at a time: each piece's bytes go out as it comes.

`pcm` and `wav` are exact (16-bit, every sample). A streamed WAV cannot know its length, so
its RIFF and data sizes are 0xFFFFFFFF, which readers (libsndfile, ffmpeg, browsers) take as
"read to the end". `mp3` is lameenc fed incrementally, with the settings of a whole-file MP3
(`encode.py`); `opus` is libsndfile's Ogg Opus writer, whose pages go out as they fill.
"""

from __future__ import annotations

import io
import struct
from typing import Protocol

import lameenc
import numpy as np
import soundfile as sf

from voicereel.audio.encode import MP3_BITRATE_KBPS, mp3_sample_rate

STREAMABLE = ("pcm", "wav", "mp3", "opus")
OPEN_ENDED = 0xFFFFFFFF


class StreamEncoder(Protocol):
    """Turns float32 mono pieces into the bytes of one file, in order."""

    def feed(self, audio: np.ndarray) -> bytes:
        """The bytes this piece completes (possibly none: encoders buffer whole frames)."""
        ...

    def finish(self) -> bytes:
        """The bytes left once the last piece was fed."""
        ...


def pcm16(audio: np.ndarray) -> bytes:
    """Raw 16-bit little-endian samples, clipped to [-1, 1]."""
    clipped = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
    return bytes(np.round(clipped * 32767.0).astype("<i2").tobytes())


def wav_stream_header(sample_rate: int) -> bytes:
    """A 16-bit mono PCM WAV header of unknown length."""
    return (b"RIFF" + struct.pack("<I", OPEN_ENDED) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", OPEN_ENDED))


class _Pcm:
    def __init__(self, header: bytes = b"") -> None:
        self._header = header

    def feed(self, audio: np.ndarray) -> bytes:
        out, self._header = self._header + pcm16(audio), b""
        return out

    def finish(self) -> bytes:
        out, self._header = self._header, b""
        return out


class _Mp3:
    def __init__(self, sample_rate: int) -> None:
        if mp3_sample_rate(sample_rate) != sample_rate:
            raise ValueError(f"{sample_rate} Hz is not an MPEG sample rate")
        self._encoder = lameenc.Encoder()
        self._encoder.set_bit_rate(MP3_BITRATE_KBPS)
        self._encoder.set_in_sample_rate(sample_rate)
        self._encoder.set_out_sample_rate(sample_rate)
        self._encoder.set_channels(1)
        self._encoder.set_quality(2)

    def feed(self, audio: np.ndarray) -> bytes:
        return bytes(self._encoder.encode(pcm16(audio)))

    def finish(self) -> bytes:
        return bytes(self._encoder.flush())


class _Sink(io.RawIOBase):
    """A write-only file for libsndfile that hands out what was written since last asked.

    libsndfile's Ogg writer only appends; a seek elsewhere would mean bytes already sent must
    change, so it fails loudly instead."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = offset if whence == io.SEEK_SET else self._position + offset
        if target != self._position:
            raise OSError("the streamed Ogg writer tried to rewrite bytes already sent")
        return self._position

    def read(self, size: int = -1) -> bytes:
        return b""

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class _Opus:
    def __init__(self, sample_rate: int) -> None:
        self._sink = _Sink()
        self._file = sf.SoundFile(self._sink, "w", samplerate=sample_rate, channels=1,
                                  format="OGG", subtype="OPUS")

    def feed(self, audio: np.ndarray) -> bytes:
        self._file.write(np.clip(np.asarray(audio, np.float32), -1.0, 1.0))
        return self._sink.take()

    def finish(self) -> bytes:
        self._file.close()
        return self._sink.take()


def stream_encoder(fmt: str, sample_rate: int) -> StreamEncoder:
    """An encoder for one of STREAMABLE."""
    if fmt == "pcm":
        return _Pcm()
    if fmt == "wav":
        return _Pcm(wav_stream_header(sample_rate))
    if fmt == "mp3":
        return _Mp3(sample_rate)
    if fmt == "opus":
        return _Opus(sample_rate)
    raise ValueError(f"{fmt} cannot be streamed; streamable: {', '.join(STREAMABLE)}")
