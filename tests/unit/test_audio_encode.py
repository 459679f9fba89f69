"""Encoding output audio: every format decodes back, WAV and FLAC to the exact sample."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from voicereel.audio import encode as enc
from voicereel.audio.io import decode_upload, resample, resample_blocks, sniff_format
from voicereel.settings import Settings
from voicereel.uploads import header_limits

LIMITS = header_limits(Settings())


def chirp(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (0.6 * np.sin(2 * np.pi * (200 + 400 * t) * t)).astype(np.float32)


def test_format_tables_agree() -> None:
    assert set(enc.FORMATS) == {"wav", "mp3", "flac", "ogg"}
    assert set(enc.CONTENT_TYPES) == set(enc.FORMATS) == set(enc.EXTENSIONS)
    assert enc.CONTENT_TYPES["mp3"] == "audio/mpeg"
    assert all(enc.EXTENSIONS[f] == "." + f for f in enc.FORMATS)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
@pytest.mark.parametrize("rate", [8000, 22050, 24000, 44100, 48000])
@pytest.mark.parametrize("n", [1, 1001, 24001])
def test_lossless_formats_keep_every_sample(fmt: str, rate: int, n: int) -> None:
    x = chirp(n / rate, rate)[:n]
    data = enc.encode(x, rate, fmt)
    y, sr = sf.read(io.BytesIO(data), dtype="float32")
    assert sr == rate
    assert len(y) == n
    assert np.max(np.abs(y - x)) <= 1.0 / 32767 + 1e-7
    assert sf.info(io.BytesIO(data)).subtype == "PCM_16"


@pytest.mark.parametrize("fmt", enc.FORMATS)
def test_every_format_decodes_back(fmt: str) -> None:
    x = chirp(2.0, 24000)
    data = enc.encode(x, 24000, fmt)
    assert sniff_format(data) == fmt
    audio = decode_upload(data, max_seconds=60, limits=LIMITS)
    assert audio.sample_rate == 24000
    assert len(audio.samples) >= len(x)
    assert len(audio.samples) - len(x) < (3000 if fmt == "mp3" else 1)


def test_ogg_is_vorbis_and_close_to_the_input() -> None:
    x = chirp(2.0, 24000)
    data = enc.encode(x, 24000, "ogg")
    assert sf.info(io.BytesIO(data)).subtype == "VORBIS"
    y, _ = sf.read(io.BytesIO(data), dtype="float32")
    assert np.corrcoef(x, y[: len(x)])[0, 1] > 0.99


def test_mp3_is_128_kbps_mono_and_roughly_the_input() -> None:
    x = chirp(4.0, 24000)
    data = enc.encode(x, 24000, "mp3")
    # 128 kbps for 4 s is 64 kB, give or take the frame padding and delay
    assert 60_000 < len(data) < 70_000
    info = sf.info(io.BytesIO(data))
    assert info.channels == 1 and info.samplerate == 24000
    y, _ = sf.read(io.BytesIO(data), dtype="float32")
    # find the encoder delay, then compare the aligned signals
    lag = int(np.argmax(np.correlate(y[:6000], x[:3000], mode="valid")))
    assert lag < 3000
    assert np.corrcoef(x, y[lag : lag + len(x)])[0, 1] > 0.98


@pytest.mark.parametrize(("asked", "written"), [
    (8000, 8000), (16000, 16000), (22050, 22050), (24000, 24000), (44100, 44100),
    (48000, 48000), (17000, 22050), (30000, 32000), (96000, 48000), (4000, 8000),
])
def test_mp3_sample_rate_rounds_up_to_a_supported_rate(asked: int, written: int) -> None:
    assert enc.mp3_sample_rate(asked) == written
    data = enc.encode(chirp(0.5, asked), asked, "mp3")
    assert sf.info(io.BytesIO(data)).samplerate == written


def test_samples_are_clipped_not_wrapped() -> None:
    x = np.array([2.0, -2.0, 1.0, -1.0, 0.5], np.float32)
    y, _ = sf.read(io.BytesIO(enc.encode(x, 16000, "wav")), dtype="int16")
    # libsndfile scales by 32768 and saturates: full scale, never a wrap to the other sign
    assert y.tolist() == [32767, -32768, 32767, -32768, 16384]


def test_unknown_format_and_bad_rate_are_refused() -> None:
    with pytest.raises(ValueError):
        enc.encode(np.zeros(10, np.float32), 16000, "aac")
    with pytest.raises(ValueError):
        enc.encode(np.zeros(10, np.float32), 0, "wav")


@pytest.mark.parametrize(("rate_from", "rate_to"), [(30000, 32000), (9000, 11025),
                                                    (24000, 44100), (48000, 8000)])
def test_resampling_a_piece_at_a_time_equals_resampling_whole(rate_from: int,
                                                              rate_to: int) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal(700_001).astype(np.float32)
    pieces = np.split(x, np.cumsum(rng.integers(1, 90_000, 40))[:30])
    streamed = np.concatenate(list(resample_blocks(pieces, rate_from, rate_to, step=50_000)))
    whole = resample(x, rate_from, rate_to)
    assert len(streamed) == len(whole)
    assert np.abs(streamed - whole).max() < 1e-5


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_a_lossless_file_written_block_by_block_is_the_file_written_whole(fmt: str) -> None:
    x = (np.random.default_rng(4).standard_normal(3 * 24000) * 0.2).astype(np.float32)
    blocks = io.BytesIO()
    enc.write_encoded(np.array_split(x, 7), 24000, fmt, blocks)
    assert blocks.getvalue() == enc.encode(x, 24000, fmt)


@pytest.mark.parametrize(("fmt", "rate"), [("ogg", 24000), ("mp3", 24000), ("mp3", 30000)])
def test_a_lossy_file_written_block_by_block_decodes_to_the_same_length(fmt: str,
                                                                        rate: int) -> None:
    x = (np.random.default_rng(4).standard_normal(3 * rate) * 0.2).astype(np.float32)
    blocks = io.BytesIO()
    enc.write_encoded(np.array_split(x, 7), rate, fmt, blocks)
    streamed = decode_upload(blocks.getvalue(), max_seconds=60, limits=LIMITS)
    whole = decode_upload(enc.encode(x, rate, fmt), max_seconds=60, limits=LIMITS)
    written = enc.mp3_sample_rate(rate) if fmt == "mp3" else rate
    assert streamed.sample_rate == whole.sample_rate == written
    assert len(streamed.samples) == len(whole.samples)
